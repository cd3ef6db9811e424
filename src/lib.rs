//! llorch-diff: layer-by-layer differential validation of LLM forward passes.
//!
//! Two producers of checkpoints, [`llamacpp`] (llama.cpp through our extractor shim) and
//! [`reference`] (an independent Rust forward pass), and one judge, [`compare`], that knows
//! only the dump folders described in [`checkpoint`].

pub mod checkpoint;
pub mod llamacpp;
