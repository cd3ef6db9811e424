//! `llorch-diff reference MODEL.gguf "PROMPT" --out DIR`: the Rust reference's side of a
//! comparison.

use std::path::PathBuf;

use anyhow::Context;

use super::extract::parse_filter;
use super::Outcome;
use crate::checkpoint::KvType;
use crate::reference::{Fault, Mode, ReferenceOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// GGUF model file.
    pub model: PathBuf,
    /// Prompt text (evaluated as one batch at step 0).
    pub prompt: String,
    /// Output dump folder (replaced if it is a dump folder; never anything else).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub config: Config,
    /// Only checkpoints whose name matches this glob, e.g. 'blk.*.l_out'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Evaluate these prompt token ids (comma-separated) instead of tokenizing the prompt.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ID,ID,...",
        conflicts_with = "follow"
    )]
    pub token_ids: Option<Vec<i32>>,
    /// Evaluate exactly the inputs of this dump folder (its prompt token ids, and its generated
    /// tokens as the decode inputs), e.g. llama.cpp's, so that a greedy choice that differs does
    /// not change what later steps compare.
    #[arg(long, value_name = "DIR")]
    pub follow: Option<PathBuf>,
}

/// The settings the reference shares with `run` and `gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Numeric mode: `ggml` mirrors llama.cpp's CPU arithmetic, `exact` computes the mathematics.
    #[arg(long, value_enum, default_value_t = Mode::Ggml)]
    pub mode: Mode,
    /// Greedy decode steps after the prompt.
    #[arg(long, default_value_t = 0)]
    pub steps: u32,
    /// KV cache type (llama.cpp's cache; emulated by the reference in ggml mode).
    #[arg(long, value_enum, default_value_t = KvType::F32)]
    pub kv_type: KvType,
    /// CPU threads (default: 1 for llama.cpp, one per core for the reference). Results do not
    /// depend on it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// llama.cpp without its repacked weight layouts (as its own `--no-repack`); the reference
    /// in ggml mode emulates whichever is chosen.
    #[arg(long)]
    pub no_repack: bool,
    /// Inject a deliberate fault into the reference (validation of the validator).
    #[arg(long, value_enum, hide = true, value_name = "FAULT")]
    pub inject_fault: Option<Fault>,
}

impl Config {
    pub fn reference_options(&self, filter: Option<crate::glob::Glob>) -> ReferenceOptions {
        ReferenceOptions {
            mode: self.mode,
            steps: self.steps,
            kv_type: self.kv_type,
            cpu: crate::cpu_config::CpuConfig::from_env(!self.no_repack),
            threads: self.threads.unwrap_or(0) as usize,
            filter,
            fault: self.inject_fault,
            token_ids: None,
            decode_tokens: None,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut opts = args
        .config
        .reference_options(parse_filter(args.filter.as_deref())?);
    opts.token_ids = args.token_ids;
    if let Some(dir) = &args.follow {
        let (prompt, decode) = followed_inputs(dir)?;
        opts.token_ids = Some(prompt);
        opts.decode_tokens = Some(decode);
        if let Some(cpu) = followed_cpu_config(dir)? {
            opts.cpu = cpu;
        }
    }
    if let Some(f) = opts.fault {
        eprintln!("warning: fault {} injected into the reference", f.name());
    }
    let started = std::time::Instant::now();
    let bar = super::progress::spinner("reference: loading the model");
    let s = crate::reference::reference_with_progress(
        &args.model,
        &args.prompt,
        &args.out,
        &opts,
        &mut |p| {
            if let Some(pb) = &bar {
                match p {
                    crate::reference::Progress::Loaded { steps } => {
                        super::progress::steps(pb, u64::from(steps) + 1, "reference")
                    }
                    crate::reference::Progress::Step { step } => {
                        pb.set_position(u64::from(step) + 1)
                    }
                }
            }
        },
    )
    .context("reference")?;
    super::progress::done(bar);
    eprintln!(
        "wrote {} checkpoints for {} prompt tokens + {} steps to {} in {:.2} s (mode {}, generated {:?})",
        s.checkpoints,
        s.prompt_tokens.len(),
        opts.steps,
        s.folder.display(),
        started.elapsed().as_secs_f64(),
        opts.mode.as_str(),
        s.generated_tokens
    );
    Ok(Outcome::Pass)
}

/// The CPU backend configuration a dump folder's manifest records (llama.cpp's, or a ggml-mode
/// reference's), so that following a run also follows the kernels it ran.
pub fn followed_cpu_config(
    dir: &std::path::Path,
) -> anyhow::Result<Option<crate::cpu_config::CpuConfig>> {
    let folder = crate::checkpoint::DumpFolder::open(dir)
        .with_context(|| format!("--follow {}", dir.display()))?;
    Ok(folder
        .manifest
        .and_then(|m| crate::cpu_config::CpuConfig::from_record(&m.producer_detail)))
}

/// The prompt token ids and generated tokens recorded in a dump folder's manifest.
pub fn followed_inputs(dir: &std::path::Path) -> anyhow::Result<(Vec<i32>, Vec<i32>)> {
    let folder = crate::checkpoint::DumpFolder::open(dir)
        .with_context(|| format!("--follow {}", dir.display()))?;
    let m = folder.manifest.with_context(|| {
        format!(
            "--follow {}: the folder has no manifest.json to take inputs from",
            dir.display()
        )
    })?;
    anyhow::ensure!(
        !m.prompt_tokens.is_empty(),
        "--follow {}: the manifest records no prompt tokens",
        dir.display()
    );
    Ok((m.prompt_tokens, m.generated_tokens))
}
