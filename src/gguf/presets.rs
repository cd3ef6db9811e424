//! Synthetic models, deterministic from a seed.
//!
//! Weights come from a splitmix64 stream (no dependency: the generator is ten lines and its
//! output is fixed forever) turned into normals by Box-Muller. Every row of every tensor has its
//! own stream, seeded from the model seed, the tensor name and the row index, so rows are made in
//! parallel and any tensor can be regenerated alone ([`tensor_values`]).
//!
//! Scales keep activations in a realistic range through all layers: projections are
//! N(0, 1/fan_in) so a unit-scale input gives unit-scale outputs; norm weights are 1 + N(0, 0.1²);
//! biases N(0, 0.1²); token embeddings N(0, 1). The output matrix (or the token embedding when
//! tied to it) is N(0, 4/n_embd), so the logits' standard deviation is near 2.
//!
//! Tensor types: every 2-D weight matrix is written in the requested type when its row length
//! is a whole number of that type's blocks; otherwise in the type llama.cpp's quantizer falls
//! back to (`tensor_type_fallback` in src/llama-quant.cpp: 256-element I-quants to IQ4_NL,
//! Q2_K/Q3_K/TQ1_0/TQ2_0 to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0), and in F16 when
//! that does not fit either (no preset needs a fallback today: all row lengths are multiples
//! of 256). Norm weights, biases and GPT-2's position
//! embedding are F32, as llama.cpp's own quantizer leaves them.

use std::path::Path;

use rayon::prelude::*;

use super::params::{Arch, ModelParams, RopeScaling};
use super::quantize;
use super::reader::{GgufError, MetaValue, TensorInfo};
use super::vocab;
use super::writer::GgufWriter;
use crate::quant::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// llama, 4 layers, 256 wide, 8 heads over 2 KV heads, SPM vocabulary of 512.
    TinyLlama,
    /// gpt2, 4 layers, 256 wide, 4 heads, biases, fused QKV, BPE vocabulary of 512, tied output.
    TinyGpt2,
    /// Llama-2-7B's shapes (32 layers, 4096 wide, 32 heads, FFN 11008, vocab 32000): ~7 GB in Q8_0.
    Llama2_7bShape,
    /// qwen2, 4 layers, 256 wide, 8 heads over 2 KV heads, Q/K/V biases, NeoX RoPE with base
    /// 1e6, tied output, BPE vocabulary of 512 with the `qwen2` pre-tokenizer.
    TinyQwen2,
    /// qwen3, 4 layers, 256 wide, 8 heads of 64 (wider than 256/8, so `key_length` is written)
    /// over 2 KV heads, per-head Q/K RMSNorm, NeoX RoPE with base 1e6, separate output, BPE
    /// vocabulary of 512 with the `qwen2` pre-tokenizer.
    TinyQwen3,
    /// gemma3, 6 layers (five sliding-window layers with a window of
    /// [`GEMMA3_SLIDING_WINDOW`] and RoPE base 10000, then one global layer with RoPE base 1e6
    /// and linear RoPE scaling by 8, as Gemma 3 4B and larger), 512 wide (an embedding scale
    /// sqrt(512) that is not a power of two), 4 heads of 64 over 2 KV heads, per-head Q/K
    /// RMSNorm, norms after attention and after the FFN, GELU-gated FFN of 1024, SentencePiece
    /// vocabulary of 512 with Gemma's special tokens and no space prefix. The output matrix is
    /// separate (the published models tie it to the embedding, which the reference also
    /// reads): tied to random embeddings scaled by sqrt(n_embd), the logits echo the input
    /// token, every decode step feeds the same token again, and attention over identical keys
    /// is near-uniform, where the probabilities' NMSE (normalized by their variance) measures
    /// noise rather than arithmetic.
    TinyGemma3,
}

/// tiny-gemma3's `attention.sliding_window`: shorter than the longest test prompt, so that
/// the window masks something.
pub const GEMMA3_SLIDING_WINDOW: usize = 16;
/// tiny-gemma3's `rope.scaling.factor` (linear, global layers only).
pub const GEMMA3_ROPE_SCALE: f32 = 8.0;

pub const ALL: [Preset; 6] = [
    Preset::TinyLlama,
    Preset::TinyGpt2,
    Preset::Llama2_7bShape,
    Preset::TinyQwen2,
    Preset::TinyQwen3,
    Preset::TinyGemma3,
];

impl Preset {
    /// `tiny-llama`, `tiny-gpt2`, `llama2-7b-shape`, `tiny-qwen2`, `tiny-qwen3`,
    /// `tiny-gemma3`.
    pub fn parse(s: &str) -> Result<Preset, GgufError> {
        ALL.iter()
            .copied()
            .find(|p| p.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                GgufError::Write(format!(
                    "unknown preset '{s}' (known: {})",
                    ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
                ))
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::TinyLlama => "tiny-llama",
            Preset::TinyGpt2 => "tiny-gpt2",
            Preset::Llama2_7bShape => "llama2-7b-shape",
            Preset::TinyQwen2 => "tiny-qwen2",
            Preset::TinyQwen3 => "tiny-qwen3",
            Preset::TinyGemma3 => "tiny-gemma3",
        }
    }

    /// The hyperparameters the preset writes.
    pub fn params(self) -> ModelParams {
        match self {
            Preset::TinyLlama => ModelParams {
                arch: Arch::Llama,
                n_layer: 4,
                n_embd: 256,
                n_head: 8,
                n_head_kv: 2,
                head_dim: 32,
                n_ff: 512,
                n_vocab: 512,
                n_ctx_train: 256,
                norm_eps: 1e-5,
                rope_freq_base: 10000.0,
                rope_dim: 32,
                rope_scaling: RopeScaling::unscaled(256),
                tied_output: false,
            },
            Preset::TinyGpt2 => ModelParams {
                arch: Arch::Gpt2,
                n_layer: 4,
                n_embd: 256,
                n_head: 4,
                n_head_kv: 4,
                head_dim: 64,
                n_ff: 1024,
                n_vocab: 512,
                n_ctx_train: 128,
                norm_eps: 1e-5,
                rope_freq_base: 10000.0,
                rope_dim: 0,
                rope_scaling: RopeScaling::unscaled(128),
                tied_output: true,
            },
            Preset::Llama2_7bShape => ModelParams {
                arch: Arch::Llama,
                n_layer: 32,
                n_embd: 4096,
                n_head: 32,
                n_head_kv: 32,
                head_dim: 128,
                n_ff: 11008,
                n_vocab: 32000,
                n_ctx_train: 4096,
                norm_eps: 1e-5,
                rope_freq_base: 10000.0,
                rope_dim: 128,
                rope_scaling: RopeScaling::unscaled(4096),
                tied_output: false,
            },
            Preset::TinyQwen2 => ModelParams {
                arch: Arch::Qwen2,
                n_layer: 4,
                n_embd: 256,
                n_head: 8,
                n_head_kv: 2,
                head_dim: 32,
                n_ff: 512,
                n_vocab: 512,
                n_ctx_train: 256,
                norm_eps: 1e-6,
                rope_freq_base: 1_000_000.0,
                rope_dim: 32,
                rope_scaling: RopeScaling::unscaled(256),
                tied_output: true,
            },
            Preset::TinyQwen3 => ModelParams {
                arch: Arch::Qwen3,
                n_layer: 4,
                n_embd: 256,
                n_head: 8,
                n_head_kv: 2,
                head_dim: 64,
                n_ff: 512,
                n_vocab: 512,
                n_ctx_train: 256,
                norm_eps: 1e-6,
                rope_freq_base: 1_000_000.0,
                rope_dim: 64,
                rope_scaling: RopeScaling::unscaled(256),
                tied_output: false,
            },
            Preset::TinyGemma3 => ModelParams {
                arch: Arch::Gemma3,
                n_layer: 6,
                n_embd: 512,
                n_head: 4,
                n_head_kv: 2,
                head_dim: 64,
                n_ff: 1024,
                n_vocab: 512,
                n_ctx_train: 1024,
                norm_eps: 1e-6,
                rope_freq_base: 1_000_000.0,
                rope_dim: 64,
                rope_scaling: RopeScaling {
                    factor: GEMMA3_ROPE_SCALE,
                    ..RopeScaling::unscaled(1024)
                },
                tied_output: false,
            },
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = GgufError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::parse(s)
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a tensor's values are drawn: `mean + std * N(0, 1)`.
#[derive(Debug, Clone, Copy)]
struct Init {
    mean: f32,
    std: f32,
}

#[derive(Debug, Clone)]
struct TensorSpec {
    name: String,
    dims: Vec<u64>,
    /// A weight matrix (takes the requested type) rather than a norm, bias or position table.
    matrix: bool,
    init: Init,
}

fn tensor_specs(p: &ModelParams) -> Vec<TensorSpec> {
    let (e, ff, v) = (p.n_embd as u64, p.n_ff as u64, p.n_vocab as u64);
    let q_dim = (p.n_head * p.head_dim) as u64;
    let kv_dim = (p.n_head_kv * p.head_dim) as u64;
    let mut out = Vec::new();
    let mut t = |name: String, dims: Vec<u64>, matrix: bool, mean: f32, std: f32| {
        out.push(TensorSpec {
            name,
            dims,
            matrix,
            init: Init { mean, std },
        })
    };
    let proj = |fan_in: u64| 1.0 / (fan_in as f32).sqrt();
    let (norm, bias) = ((1.0, 0.1), (0.0, 0.1));
    let emb_std = if p.tied_output {
        2.0 / (e as f32).sqrt()
    } else if p.arch == Arch::Gemma3 {
        // Times sqrt(n_embd) in the graph: unit scale in the residual stream.
        1.0 / (e as f32).sqrt()
    } else {
        1.0
    };
    t("token_embd.weight".into(), vec![e, v], true, 0.0, emb_std);
    match p.arch {
        Arch::Llama | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => {
            let d = p.head_dim as u64;
            for i in 0..p.n_layer {
                let b = |s: &str| format!("blk.{i}.{s}");
                t(b("attn_norm.weight"), vec![e], false, norm.0, norm.1);
                t(b("attn_q.weight"), vec![e, q_dim], true, 0.0, proj(e));
                t(b("attn_k.weight"), vec![e, kv_dim], true, 0.0, proj(e));
                t(b("attn_v.weight"), vec![e, kv_dim], true, 0.0, proj(e));
                if p.arch == Arch::Qwen2 {
                    t(b("attn_q.bias"), vec![q_dim], false, bias.0, bias.1);
                    t(b("attn_k.bias"), vec![kv_dim], false, bias.0, bias.1);
                    t(b("attn_v.bias"), vec![kv_dim], false, bias.0, bias.1);
                }
                if matches!(p.arch, Arch::Qwen3 | Arch::Gemma3) {
                    t(b("attn_q_norm.weight"), vec![d], false, norm.0, norm.1);
                    t(b("attn_k_norm.weight"), vec![d], false, norm.0, norm.1);
                }
                t(
                    b("attn_output.weight"),
                    vec![q_dim, e],
                    true,
                    0.0,
                    proj(q_dim),
                );
                if p.arch == Arch::Gemma3 {
                    // Stored with Gemma's `1 +` already added, as llama.cpp's converter does.
                    t(
                        b("post_attention_norm.weight"),
                        vec![e],
                        false,
                        norm.0,
                        norm.1,
                    );
                }
                t(b("ffn_norm.weight"), vec![e], false, norm.0, norm.1);
                t(b("ffn_gate.weight"), vec![e, ff], true, 0.0, proj(e));
                t(b("ffn_up.weight"), vec![e, ff], true, 0.0, proj(e));
                t(b("ffn_down.weight"), vec![ff, e], true, 0.0, proj(ff));
                if p.arch == Arch::Gemma3 {
                    t(b("post_ffw_norm.weight"), vec![e], false, norm.0, norm.1);
                }
            }
            t("output_norm.weight".into(), vec![e], false, norm.0, norm.1);
        }
        Arch::Gpt2 => {
            t(
                "position_embd.weight".into(),
                vec![e, p.n_ctx_train as u64],
                false,
                0.0,
                0.1,
            );
            for i in 0..p.n_layer {
                let b = |s: &str| format!("blk.{i}.{s}");
                t(b("attn_norm.weight"), vec![e], false, norm.0, norm.1);
                t(b("attn_norm.bias"), vec![e], false, bias.0, bias.1);
                t(
                    b("attn_qkv.weight"),
                    vec![e, q_dim + 2 * kv_dim],
                    true,
                    0.0,
                    proj(e),
                );
                t(
                    b("attn_qkv.bias"),
                    vec![q_dim + 2 * kv_dim],
                    false,
                    bias.0,
                    bias.1,
                );
                t(
                    b("attn_output.weight"),
                    vec![q_dim, e],
                    true,
                    0.0,
                    proj(q_dim),
                );
                t(b("attn_output.bias"), vec![e], false, bias.0, bias.1);
                t(b("ffn_norm.weight"), vec![e], false, norm.0, norm.1);
                t(b("ffn_norm.bias"), vec![e], false, bias.0, bias.1);
                t(b("ffn_up.weight"), vec![e, ff], true, 0.0, proj(e));
                t(b("ffn_up.bias"), vec![ff], false, bias.0, bias.1);
                t(b("ffn_down.weight"), vec![ff, e], true, 0.0, proj(ff));
                t(b("ffn_down.bias"), vec![e], false, bias.0, bias.1);
            }
            t("output_norm.weight".into(), vec![e], false, norm.0, norm.1);
            t("output_norm.bias".into(), vec![e], false, bias.0, bias.1);
        }
    }
    if !p.tied_output {
        t("output.weight".into(), vec![e, v], true, 0.0, 2.0 * proj(e));
    }
    out
}

/// The type a tensor is stored in for a requested quantization (see the module doc).
fn storage_type(spec: &TensorSpec, quant: GgmlType) -> GgmlType {
    if !spec.matrix {
        GgmlType::F32
    } else {
        let n = spec.dims[0] as usize;
        [quant, fallback_type(quant)]
            .into_iter()
            .find(|t| n.is_multiple_of(t.block_size()))
            .unwrap_or(GgmlType::F16)
    }
}

/// llama.cpp's `tensor_type_fallback`: the type a tensor whose rows do not fit `quant`'s blocks
/// is written in instead (itself for 32-element types, which then become F16).
fn fallback_type(quant: GgmlType) -> GgmlType {
    use GgmlType::*;
    match quant {
        IQ1S | IQ1M | IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ4XS => IQ4NL,
        Q2_0 | Q2K | Q3K | TQ1_0 | TQ2_0 => Q4_0,
        Q4K => Q5_0,
        Q5K => Q5_1,
        Q6K => Q8_0,
        other => other,
    }
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for a uniform quantization, where one exists.
fn file_type(quant: GgmlType) -> Option<u32> {
    Some(match quant {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q2K => 10,
        GgmlType::Q3K => 11,
        GgmlType::Q4K => 14,
        GgmlType::Q5K => 16,
        GgmlType::Q6K => 18,
        GgmlType::BF16 => 32,
        GgmlType::IQ2XXS => 19,
        GgmlType::IQ2XS => 20,
        GgmlType::IQ3XXS => 23,
        GgmlType::IQ1S => 24,
        GgmlType::IQ4NL => 25,
        GgmlType::IQ3S => 26,
        GgmlType::IQ2S => 28,
        GgmlType::IQ4XS => 30,
        GgmlType::IQ1M => 31,
        GgmlType::TQ1_0 => 36,
        GgmlType::TQ2_0 => 37,
        _ => return None,
    })
}

/// splitmix64 (Steele, Lea, Flood 2014): the stream behind every synthetic weight.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in (0, 1].
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// splitmix64's output function.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, to turn a tensor name into part of a seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Fills `out` with row `row` of a tensor.
fn gen_row(seed: u64, name_hash: u64, row: u64, init: Init, out: &mut [f32]) {
    let mut rng = SplitMix64::new(mix64(mix64(seed ^ name_hash) ^ row));
    for pair in out.chunks_mut(2) {
        // Box-Muller: two independent normals from two uniforms.
        let r = (-2.0 * rng.next_open01().ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * rng.next_open01();
        let z = [r * theta.cos(), r * theta.sin()];
        for (o, z) in pair.iter_mut().zip(z) {
            *o = init.mean + init.std * z as f32;
        }
    }
}

fn find_spec(preset: Preset, name: &str) -> Result<TensorSpec, GgufError> {
    tensor_specs(&preset.params())
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
}

/// A preset tensor's values before quantization, row-major (`dims[0]` is the row length).
pub fn tensor_values(preset: Preset, seed: u64, name: &str) -> Result<Vec<f32>, GgufError> {
    let spec = find_spec(preset, name)?;
    let row_len = spec.dims[0] as usize;
    let n: usize = spec.dims.iter().product::<u64>() as usize;
    let mut out = vec![0f32; n];
    let h = fnv1a(name);
    out.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(r, row)| gen_row(seed, h, r as u64, spec.init, row));
    Ok(out)
}

/// The type each preset tensor is stored in for a requested quantization.
pub fn tensor_types(preset: Preset, quant: GgmlType) -> Vec<(String, GgmlType)> {
    tensor_specs(&preset.params())
        .into_iter()
        .map(|s| (s.name.clone(), storage_type(&s, quant)))
        .collect()
}

fn u32_meta(v: usize) -> MetaValue {
    MetaValue::U32(v as u32)
}

/// Builds the metadata and tensor declarations of a preset.
fn writer_for(
    preset: Preset,
    quant: GgmlType,
    seed: u64,
) -> Result<(GgufWriter, Vec<TensorSpec>), GgufError> {
    let p = preset.params();
    let arch = p.arch.name();
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.add_meta("general.architecture", MetaValue::Str(arch.into()))?;
    w.add_meta(
        "general.name",
        MetaValue::Str(format!("{} (synthetic, seed {seed})", preset.name())),
    )?;
    if let Some(ft) = file_type(quant) {
        w.add_meta("general.file_type", MetaValue::U32(ft))?;
    }
    w.add_meta(k("context_length"), u32_meta(p.n_ctx_train))?;
    w.add_meta(k("embedding_length"), u32_meta(p.n_embd))?;
    w.add_meta(k("block_count"), u32_meta(p.n_layer))?;
    w.add_meta(k("feed_forward_length"), u32_meta(p.n_ff))?;
    w.add_meta(k("attention.head_count"), u32_meta(p.n_head))?;
    match p.arch {
        Arch::Llama | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => {
            w.add_meta(k("attention.head_count_kv"), u32_meta(p.n_head_kv))?;
            if p.head_dim * p.n_head != p.n_embd {
                w.add_meta(k("attention.key_length"), u32_meta(p.head_dim))?;
                w.add_meta(k("attention.value_length"), u32_meta(p.head_dim))?;
            }
            w.add_meta(k("rope.dimension_count"), u32_meta(p.rope_dim))?;
            w.add_meta(k("rope.freq_base"), MetaValue::F32(p.rope_freq_base))?;
            w.add_meta(
                k("attention.layer_norm_rms_epsilon"),
                MetaValue::F32(p.norm_eps),
            )?;
            if p.arch == Arch::Llama {
                w.add_meta(k("vocab_size"), u32_meta(p.n_vocab))?;
            }
            if p.arch == Arch::Gemma3 {
                // As published Gemma 3 files: the window, linear scaling of the global
                // layers' RoPE; no pattern key (llama.cpp's default: every sixth layer is
                // global) and no local base (llama.cpp's default 10000).
                w.add_meta(
                    k("attention.sliding_window"),
                    u32_meta(GEMMA3_SLIDING_WINDOW),
                )?;
                w.add_meta(k("rope.scaling.type"), MetaValue::Str("linear".into()))?;
                w.add_meta(
                    k("rope.scaling.factor"),
                    MetaValue::F32(p.rope_scaling.factor),
                )?;
            }
        }
        Arch::Gpt2 => {
            w.add_meta(
                k("attention.layer_norm_epsilon"),
                MetaValue::F32(p.norm_eps),
            )?;
        }
    }
    let tok = match p.arch {
        Arch::Llama => vocab::spm(p.n_vocab),
        Arch::Gpt2 => vocab::gpt2(p.n_vocab),
        Arch::Qwen2 | Arch::Qwen3 => vocab::qwen2(p.n_vocab),
        Arch::Gemma3 => vocab::gemma(p.n_vocab),
    };
    for (key, v) in tok {
        w.add_meta(key, v)?;
    }
    let specs = tensor_specs(&p);
    for s in &specs {
        let ty = storage_type(s, quant);
        if !quantize::supported(ty) {
            return Err(GgufError::Write(format!(
                "writing {ty} tensors is not supported (tensor '{}')",
                s.name
            )));
        }
        w.add_tensor(s.name.clone(), &s.dims, ty)?;
    }
    Ok((w, specs))
}

/// Writes a preset model to `out` (atomically; one tensor in memory at a time).
pub fn write_preset(
    preset: Preset,
    quant: GgmlType,
    seed: u64,
    out: &Path,
) -> Result<(), GgufError> {
    let (w, specs) = writer_for(preset, quant, seed)?;
    w.write(out, |info: &TensorInfo, buf: &mut [u8]| {
        let spec = specs
            .iter()
            .find(|s| s.name == info.name)
            .expect("declared above");
        let row_len = info.row_len();
        let row_bytes = info
            .ggml_type
            .row_size(row_len)
            .expect("validated by add_tensor");
        let h = fnv1a(&info.name);
        buf.par_chunks_mut(row_bytes.max(1))
            .enumerate()
            .try_for_each_init(
                || vec![0f32; row_len],
                |vals, (r, dst)| {
                    gen_row(seed, h, r as u64, spec.init, vals);
                    quantize::quantize_row(info.ggml_type, vals, dst)
                },
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(row_len: u64) -> TensorSpec {
        TensorSpec {
            name: "m".into(),
            dims: vec![row_len, 4],
            matrix: true,
            init: Init {
                mean: 0.0,
                std: 1.0,
            },
        }
    }

    #[test]
    fn rows_that_do_not_fit_take_llama_cpps_fallback_type() {
        use GgmlType::*;
        // 256-element I-quants fall back to IQ4_NL on rows of whole 32-blocks, to F16 otherwise.
        assert_eq!(storage_type(&matrix(512), IQ2XXS), IQ2XXS);
        assert_eq!(storage_type(&matrix(96), IQ2XXS), IQ4NL);
        assert_eq!(storage_type(&matrix(96), IQ4XS), IQ4NL);
        assert_eq!(storage_type(&matrix(100), IQ3S), F16);
        assert_eq!(storage_type(&matrix(96), TQ1_0), Q4_0);
        assert_eq!(storage_type(&matrix(96), Q4K), Q5_0);
        assert_eq!(storage_type(&matrix(96), Q6K), Q8_0);
        // 32-element types have nothing smaller to go to.
        assert_eq!(storage_type(&matrix(48), IQ4NL), F16);
        assert_eq!(storage_type(&matrix(48), MXFP4), F16);
    }
}
