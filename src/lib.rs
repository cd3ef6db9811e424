//! llorch-diff: layer-by-layer differential validation of LLM forward passes.
//!
//! Two producers of checkpoints, [`llamacpp`] (llama.cpp through our extractor shim) and
//! [`reference`] (an independent Rust forward pass), and one judge, [`compare`], that knows
//! only the dump folders described in [`checkpoint`]. [`report`] renders the judge's verdicts.
//! Both producers share the model substrate: [`gguf`], [`quant`] and [`tokenizer`], and the
//! description of llama.cpp's CPU backend configuration, [`cpu_config`].

pub mod checkpoint;
#[cfg(feature = "llama")]
pub mod cli;
pub mod compare;
pub mod cpu_config;
pub mod gguf;
pub mod glob;
pub mod hf;
#[cfg(feature = "llama")]
pub mod llamacpp;
pub mod quant;
pub mod reference;
pub mod report;
pub mod staging;
pub mod tokenizer;
