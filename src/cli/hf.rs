//! `llorch-diff hf MODEL.gguf "PROMPT" --out DIR`: HF transformers' side of a comparison (see
//! [`crate::hf`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::reference::followed_inputs;
use super::Outcome;
use crate::gguf::GgufFile;
use crate::hf::{produce, HfOptions};
use crate::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// GGUF model file (any architecture transformers loads from GGUF).
    pub model: PathBuf,
    /// Prompt text, tokenized with the project's tokenizer unless token ids are given.
    pub prompt: String,
    /// Output dump folder (replaced if it is a dump folder; never anything else).
    #[arg(long)]
    pub out: PathBuf,
    /// Greedy decode steps after the prompt.
    #[arg(long, default_value_t = 0)]
    pub steps: u32,
    /// Evaluate these prompt token ids (comma-separated) instead of tokenizing the prompt.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ID,ID,...",
        conflicts_with = "follow"
    )]
    pub token_ids: Option<Vec<i32>>,
    /// Evaluate exactly the inputs of this dump folder (its prompt token ids, and its generated
    /// tokens as the decode inputs).
    #[arg(long, value_name = "DIR")]
    pub follow: Option<PathBuf>,
    /// Torch threads [default: torch's own].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
}

/// The prompt's token ids by the project's tokenizer.
pub fn tokenize(model: &Path, prompt: &str) -> anyhow::Result<Vec<i32>> {
    let file = GgufFile::open(model).with_context(|| format!("opening {}", model.display()))?;
    let ids = Tokenizer::from_gguf(&file)
        .and_then(|t| t.encode(prompt))
        .context("tokenizing the prompt (give --token-ids or --follow instead)")?;
    anyhow::ensure!(!ids.is_empty(), "the prompt tokenizes to no tokens");
    Ok(ids)
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let py = crate::hf::check_installed()?;
    let mut opts = HfOptions {
        steps: args.steps,
        prompt: args.prompt.clone(),
        threads: args.threads.unwrap_or(0),
        ..HfOptions::default()
    };
    if let Some(dir) = &args.follow {
        let (prompt, decode) = followed_inputs(dir)?;
        anyhow::ensure!(
            decode.len() >= args.steps as usize,
            "--follow {}: {} steps need {} generated tokens, the folder has {}",
            dir.display(),
            args.steps,
            args.steps,
            decode.len()
        );
        opts.prompt_tokens = prompt;
        opts.decode_tokens = Some(decode);
    } else {
        opts.prompt_tokens = match args.token_ids {
            Some(ids) => ids,
            None => tokenize(&args.model, &args.prompt)?,
        };
    }
    anyhow::ensure!(!opts.prompt_tokens.is_empty(), "no prompt token ids");
    let started = std::time::Instant::now();
    let s = produce(&args.model, &args.out, &opts).context("hf")?;
    eprintln!(
        "wrote {} checkpoints for {} prompt tokens + {} steps to {} in {:.2} s ({}, {}, generated {:?})",
        s.checkpoints,
        opts.prompt_tokens.len(),
        opts.steps,
        s.folder.display(),
        started.elapsed().as_secs_f64(),
        s.versions,
        py.display(),
        s.generated_tokens
    );
    Ok(Outcome::Pass)
}
