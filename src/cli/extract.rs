//! `llorch-diff extract MODEL.gguf "PROMPT" --out DIR`: llama.cpp's side of a comparison.

use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::glob::Glob;
use crate::llamacpp::extract::ExtractOptions;
use crate::llamacpp::{set_verbose, KvType};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// GGUF model file.
    pub model: PathBuf,
    /// Prompt text (evaluated as one batch at step 0).
    pub prompt: String,
    /// Output dump folder (replaced if it is a dump folder; never anything else).
    #[arg(long)]
    pub out: PathBuf,
    /// Greedy decode steps after the prompt.
    #[arg(long, default_value_t = 0)]
    pub steps: u32,
    /// Only checkpoints whose name matches this glob, e.g. 'blk.*.l_out'.
    #[arg(long)]
    pub filter: Option<String>,
    /// KV cache type.
    #[arg(long, value_enum, default_value_t = KvType::F32)]
    pub kv_type: KvType,
    /// CPU threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Keep weights in plain CPU buffers instead of the repacked layouts llama.cpp uses by
    /// default (as llama.cpp's own `--no-repack`).
    #[arg(long)]
    pub no_repack: bool,
    /// Dump every node of every step's graph besides the checkpoints, named
    /// `node.{index}.{name}.{op}` (graph order; the manifest records each node's ggml op).
    #[arg(long)]
    pub all_nodes: bool,
    /// Print every node of the prompt's graph (name, op, ne) instead of dumping: catalogue work.
    #[arg(long, hide = true)]
    pub list_nodes: bool,
    /// Show llama.cpp's own log.
    #[arg(long)]
    pub verbose: bool,
}

pub fn parse_filter(filter: Option<&str>) -> anyhow::Result<Option<Glob>> {
    filter
        .map(|f| Glob::new(f).context("bad --filter"))
        .transpose()
}

impl Args {
    /// The library's options for these arguments.
    pub fn options(&self) -> anyhow::Result<ExtractOptions> {
        Ok(ExtractOptions {
            steps: self.steps,
            kv_type: self.kv_type,
            threads: self.threads,
            repack: !self.no_repack,
            filter: parse_filter(self.filter.as_deref())?,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    set_verbose(args.verbose);
    anyhow::ensure!(args.threads >= 1, "--threads must be at least 1");
    if args.list_nodes {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (name, op, ne) in
            crate::llamacpp::extract::survey(&args.model, &args.prompt, args.kv_type)?
        {
            // A closed pipe (e.g. `| head`) just ends the listing.
            if writeln!(out, "{name:<28} {op:<10} {ne:?}").is_err() {
                break;
            }
        }
        return Ok(Outcome::Pass);
    }
    let opts = args.options()?;
    let started = std::time::Instant::now();
    let s = super::isolate::extract(
        &args.model,
        &args.prompt,
        &args.out,
        &opts,
        args.all_nodes,
        args.verbose,
    )
    .context("extract")?;
    eprintln!(
        "wrote {} checkpoints for {} prompt tokens + {} steps to {} in {:.2} s (generated {:?})",
        s.checkpoints,
        s.prompt_tokens.len(),
        args.steps,
        s.folder.display(),
        started.elapsed().as_secs_f64(),
        s.generated_tokens
    );
    Ok(Outcome::Pass)
}
