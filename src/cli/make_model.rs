//! `llorch-diff make-model`: write a synthetic GGUF model from a preset.

use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::gguf::presets::{self, Preset};
use crate::quant::GgmlType;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// tiny-llama, tiny-gpt2, tiny-qwen2, tiny-qwen3, tiny-gemma3 or llama2-7b-shape.
    #[arg(long)]
    pub preset: String,
    /// Type of the 2-D weight matrices (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K..q6_K,
    /// iq4_nl, iq4_xs, mxfp4, iq3_s, iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s, tq2_0,
    /// tq1_0); norms and biases stay f32. The I-quants, ternary and FP4 types are written by
    /// ggml's own quantizer (ggml_quantize_chunk); iq2_xxs, iq2_xs and iq1_s, which ggml only
    /// quantizes with an importance matrix, get a synthetic one with every weight 1. A matrix
    /// whose row length is not a whole number of blocks takes llama.cpp's fallback type
    /// (256-element I-quants: iq4_nl; q2_K, q3_K, tq1_0, tq2_0: q4_0; q4_K: q5_0; q5_K: q5_1;
    /// q6_K: q8_0), or f16 when that does not fit either.
    #[arg(long, default_value = "q8_0")]
    pub quant: String,
    /// Seed of the weight generator; the same seed gives the same file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// A weight type name as `--quant` takes it.
pub fn parse_quant(name: &str) -> anyhow::Result<GgmlType> {
    GgmlType::parse_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown tensor type '{name}' (try f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, mxfp4, iq3_s, iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s, tq2_0, tq1_0)"
        )
    })
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let preset = Preset::parse(&args.preset)?;
    let quant = parse_quant(&args.quant)?;
    let start = std::time::Instant::now();
    presets::write_preset(preset, quant, args.seed, &args.out).with_context(|| {
        format!(
            "writing {} ({preset}, {quant}, seed {})",
            args.out.display(),
            args.seed
        )
    })?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({preset}, {quant}, seed {}): {size} bytes in {:.1} s",
        args.out.display(),
        args.seed,
        start.elapsed().as_secs_f64()
    );
    Ok(Outcome::Pass)
}
