//! What the reference refuses rather than computing another model than the file describes.
//!
//! * Tensors: every tensor in the file must be one the architecture's forward pass reads.
//!   [`Weights`] records each tensor a module loads; [`Weights::finish`] refuses the first one
//!   left over. There is no list of tensors to ignore: llama.cpp itself refuses a file with a
//!   tensor its loader does not create (`llama_model_loader::done_getting_tensors`, "wrong
//!   number of tensors"), so any tensor llama.cpp accepts changes its computation.
//! * Hyperparameters: every `{arch}.*` metadata key must be one the reference implements, one
//!   that does not change llama.cpp's logits, or one at the value that leaves it inert
//!   ([`check_keys`]). Anything else is refused by name: a key llama.cpp reads but the
//!   reference does not would make the two compute different models; a key it does not know
//!   is one neither can be trusted to honour.
//!
//! `general.*` keys are descriptive and `tokenizer.*` keys belong to the tokenizer, which
//! refuses what it does not mirror itself.

use std::collections::BTreeSet;

use super::ops::{self, Matrix};
use super::ReferenceError;
use crate::gguf::{Arch, GgufFile, MetaValue};

/// The tensors of one file, recording which ones the forward pass loads.
pub struct Weights<'f> {
    pub file: &'f GgufFile,
    arch: Arch,
    used: BTreeSet<String>,
}

impl<'f> Weights<'f> {
    pub fn new(file: &'f GgufFile, arch: Arch) -> Self {
        Weights {
            file,
            arch,
            used: BTreeSet::new(),
        }
    }

    /// A weight matrix `[n_in, n_out]` (see [`ops::matrix`]).
    pub fn matrix(
        &mut self,
        name: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Matrix<'f>, ReferenceError> {
        self.used.insert(name.to_string());
        ops::matrix(self.file, name, n_in, n_out)
    }

    /// A vector of `n` elements (norm weight, bias), decoded.
    pub fn vector(&mut self, name: &str, n: usize) -> Result<Vec<f32>, ReferenceError> {
        self.used.insert(name.to_string());
        ops::vector(self.file, name, n)
    }

    /// An optional vector: `None` when the file does not have it.
    pub fn opt_vector(&mut self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ReferenceError> {
        if self.file.has_tensor(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional F32 vector (ggml's RoPE reads its frequency factors only as F32).
    pub fn opt_f32_vector(
        &mut self,
        name: &str,
        n: usize,
    ) -> Result<Option<Vec<f32>>, ReferenceError> {
        if let Ok(view) = self.file.tensor(name) {
            if view.info.ggml_type != crate::quant::GgmlType::F32 {
                return Err(ReferenceError::Tensor {
                    name: name.to_string(),
                    reason: format!(
                        "has type {}, but ggml's RoPE reads frequency factors as F32 only",
                        view.info.ggml_type
                    ),
                });
            }
        }
        self.opt_vector(name, n)
    }

    /// Refuses the first tensor of the file that was not loaded.
    pub fn finish(self) -> Result<(), ReferenceError> {
        match self
            .file
            .tensors()
            .iter()
            .find(|t| !self.used.contains(&t.name))
        {
            Some(t) => Err(ReferenceError::Unsupported(format!(
                "tensor '{}' is not implemented by the reference for {}",
                t.name,
                self.arch.name()
            ))),
            None => Ok(()),
        }
    }
}

/// How the reference treats one `{arch}.*` key.
#[derive(Debug, Clone, Copy)]
enum KeyRule {
    /// Read by `ModelParams` and implemented.
    Implemented,
    /// Read by llama.cpp but without effect on the logits.
    NoEffect,
    /// Accepted only at the value that leaves llama.cpp's graph as the reference computes it.
    Inert(Inert),
}

#[derive(Debug, Clone, Copy)]
enum Inert {
    /// A number (or per-layer array of numbers) equal to zero.
    Zero,
    /// A boolean that is true.
    True,
}

/// Keys llama.cpp's generic loader reads for every architecture with attention, that the
/// reference implements or that are inert at their defaults.
const COMMON_KEYS: &[(&str, KeyRule)] = &[
    ("context_length", KeyRule::Implemented),
    ("embedding_length", KeyRule::Implemented),
    ("block_count", KeyRule::Implemented),
    ("feed_forward_length", KeyRule::Implemented),
    ("attention.head_count", KeyRule::Implemented),
    ("attention.head_count_kv", KeyRule::Implemented),
    ("attention.key_length", KeyRule::Implemented),
    ("attention.value_length", KeyRule::Implemented),
    // The token list gives n_vocab; llama.cpp's llama loader reads this only to name the size.
    ("vocab_size", KeyRule::NoEffect),
    // Pooling applies to embeddings output, not to the logits.
    ("pooling_type", KeyRule::NoEffect),
    // Non-causal attention, mixture of experts and next-token-prediction layers: not
    // implemented, accepted at the values that switch them off.
    ("attention.causal", KeyRule::Inert(Inert::True)),
    ("expert_count", KeyRule::Inert(Inert::Zero)),
    ("expert_used_count", KeyRule::Inert(Inert::Zero)),
    ("expert_group_count", KeyRule::Inert(Inert::Zero)),
    ("expert_group_used_count", KeyRule::Inert(Inert::Zero)),
    ("nextn_predict_layers", KeyRule::Inert(Inert::Zero)),
];

/// RoPE keys (architectures with RoPE).
const ROPE_KEYS: &[(&str, KeyRule)] = &[
    ("rope.dimension_count", KeyRule::Implemented),
    ("rope.freq_base", KeyRule::Implemented),
    ("rope.scaling.type", KeyRule::Implemented),
    ("rope.scaling.factor", KeyRule::Implemented),
    ("rope.scale_linear", KeyRule::Implemented),
    ("rope.scaling.attn_factor", KeyRule::Implemented),
    ("rope.scaling.original_context_length", KeyRule::Implemented),
    // Recorded by llama.cpp, never used in a graph.
    ("rope.scaling.finetuned", KeyRule::NoEffect),
];

fn arch_keys(arch: Arch) -> Vec<(&'static str, KeyRule)> {
    let mut v = COMMON_KEYS.to_vec();
    match arch {
        Arch::Llama | Arch::Qwen2 | Arch::Qwen3 => {
            v.push(("attention.layer_norm_rms_epsilon", KeyRule::Implemented));
            v.extend_from_slice(ROPE_KEYS);
        }
        Arch::Gemma3 => {
            v.push(("attention.layer_norm_rms_epsilon", KeyRule::Implemented));
            v.extend_from_slice(ROPE_KEYS);
            v.extend_from_slice(&[
                ("attention.sliding_window", KeyRule::Implemented),
                ("attention.sliding_window_pattern", KeyRule::Implemented),
                ("rope.freq_base_swa", KeyRule::Implemented),
                ("final_logit_softcapping", KeyRule::Implemented),
            ]);
        }
        Arch::Gpt2 => v.push(("attention.layer_norm_epsilon", KeyRule::Implemented)),
    }
    v
}

fn is_zero(v: &MetaValue) -> bool {
    match v {
        MetaValue::Array(items) => items.iter().all(is_zero),
        _ => v.as_i64() == Some(0),
    }
}

/// Refuses the first `{arch}.*` key the reference does not implement (see the module doc).
pub fn check_keys(file: &GgufFile, arch: Arch) -> Result<(), ReferenceError> {
    let rules = arch_keys(arch);
    let prefix = format!("{}.", arch.name());
    for (key, value) in file.metadata() {
        let Some(suffix) = key.strip_prefix(&prefix) else {
            continue;
        };
        let refuse = |what: String| {
            Err(ReferenceError::Unsupported(format!(
                "metadata key '{key}'{what} is not implemented by the reference for {}",
                arch.name()
            )))
        };
        match rules.iter().find(|(k, _)| *k == suffix).map(|(_, r)| *r) {
            None => return refuse(String::new()),
            Some(KeyRule::Implemented | KeyRule::NoEffect) => {}
            Some(KeyRule::Inert(Inert::Zero)) if !is_zero(value) => {
                return refuse(format!(" = {value}"))
            }
            Some(KeyRule::Inert(Inert::True)) if value.as_bool() != Some(true) => {
                return refuse(format!(" = {value}"))
            }
            Some(KeyRule::Inert(_)) => {}
        }
    }
    Ok(())
}
