//! One file per command. Each exposes an `Args` (clap) and `run(Args) -> anyhow::Result<Outcome>`.

use clap::{Parser, Subcommand};

pub mod candidate;
pub mod compare;
pub mod extract;
pub mod gate;
pub mod hf;
pub mod inspect;
pub mod isolate;
pub mod make_model;
pub mod matrix;
mod pipeline;
pub mod progress;
pub mod quantize;
pub mod reference;
pub mod run;
pub mod threeway;

/// What a command concluded, when it did not fail outright (errors are exit code 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Pass,
    /// Exit code 1: a checkpoint failed its tolerance, was missing or had the wrong shape.
    Fail,
}

#[derive(Debug, Parser)]
#[command(
    name = "llorch-diff",
    version,
    about = "Layer-by-layer differential validation of LLM inference against llama.cpp"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract and reference in one go, then compare and report (default model: built-in tiny-llama).
    Run(run::Args),
    /// Run llama.cpp on a model and prompt and dump every catalogued checkpoint.
    Extract(extract::Args),
    /// Run the Rust reference forward pass and dump the same checkpoints.
    Reference(reference::Args),
    /// Run HF transformers on the same GGUF (f32, eager attention) and dump its checkpoints.
    Hf(hf::Args),
    /// Compare two dump folders (.bin or .npy) checkpoint by checkpoint.
    Compare(compare::Args),
    /// Compare a fresh run against a stored baseline (CI regression gate).
    Gate(gate::Args),
    /// Show a GGUF file's architecture, hyperparameters, tokenizer and tensors.
    Inspect(inspect::Args),
    /// Write a synthetic GGUF model from a preset.
    MakeModel(make_model::Args),
    /// The zero-false-alarm matrix: models × types × prompt lengths × KV types × threads, every
    /// checkpoint byte-identical between llama.cpp and the reference in ggml mode.
    Matrix(matrix::Args),
    /// Quantize a GGUF with llama.cpp's own quantizer (Q4_K_M, IQ4_XS, BF16, ...).
    Quantize(quantize::Args),
    /// llama.cpp's side of an extract, in a child process (see `isolate`).
    #[command(name = "__extract-child", hide = true)]
    ExtractChild(isolate::ChildArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Reference(a) => reference::run(a),
        Command::Hf(a) => hf::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Gate(a) => gate::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::MakeModel(a) => make_model::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Matrix(a) => matrix::run(a),
        Command::ExtractChild(a) => isolate::run_child(a),
    }
}
