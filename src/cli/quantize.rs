//! `llorch-diff quantize IN.gguf OUT.gguf TYPE`: llama.cpp's own quantizer, so that the files
//! users ship (Q4_K_M, IQ4_XS, ...) can be made from any GGUF and validated.

use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::llamacpp::extract::check_model_file;
use crate::llamacpp::quantize::{quantize_model, FileType};
use crate::llamacpp::set_verbose;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model to quantize (any type; requantizing is allowed).
    pub input: PathBuf,
    /// The file to write (written atomically: nothing is left on failure).
    pub output: PathBuf,
    /// llama.cpp's file type name, e.g. Q4_K_M, Q6_K, IQ4_XS, BF16 (case-insensitive).
    /// IQ1_*, IQ2_*, IQ3_XXS, IQ3_XS and Q2_K_S need an importance matrix: they get a uniform
    /// one (every column weighted 1).
    #[arg(value_name = "TYPE")]
    pub ftype: String,
    /// Quantizer threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,
    /// Show llama.cpp's own log.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    set_verbose(args.verbose);
    let ftype = FileType::parse(&args.ftype).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown file type '{}' (one of {})",
            args.ftype,
            FileType::names()
        )
    })?;
    check_model_file(&args.input).context("quantize")?;
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    anyhow::ensure!(
        !same(&args.input, &args.output),
        "quantize: the output {} is the input",
        args.output.display()
    );
    let dir = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    anyhow::ensure!(
        dir.is_dir(),
        "quantize: the output folder {} does not exist",
        dir.display()
    );
    let name = args
        .output
        .file_name()
        .with_context(|| format!("quantize: {} names no file", args.output.display()))?;
    let staging = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let started = std::time::Instant::now();
    crate::staging::register(&staging);
    let result = quantize_model(&args.input, &staging, ftype, args.threads as usize)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            std::fs::rename(&staging, &args.output)
                .with_context(|| format!("renaming into {}", args.output.display()))
        });
    crate::staging::unregister(&staging);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&staging);
        return Err(e.context(format!(
            "quantize {} to {}",
            args.input.display(),
            ftype.name
        )));
    }
    let size = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "wrote {} ({}): {size} bytes in {:.1} s",
        args.output.display(),
        ftype.name,
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome::Pass)
}
