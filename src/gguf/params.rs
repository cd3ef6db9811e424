//! Model hyperparameters from GGUF metadata, read the way llama.cpp's loader reads them
//! (src/llama-model.cpp `load_hparams`, src/models/{llama,gpt2}.cpp).

use super::reader::{GgufError, GgufFile, MetaValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Gpt2,
    Qwen2,
    Qwen3,
    Gemma3,
}

impl Arch {
    /// Every architecture the reference covers.
    pub const ALL: [Arch; 5] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Gemma3,
        Arch::Gpt2,
    ];

    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gpt2 => "gpt2",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }

    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "llama" => Some(Arch::Llama),
            "gpt2" => Some(Arch::Gpt2),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "gemma3" => Some(Arch::Gemma3),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelParams {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    /// RMS-norm epsilon (llama) or layer-norm epsilon (gpt2).
    #[serde(serialize_with = "short_f32")]
    pub norm_eps: f32,
    /// `rope.freq_base` (llama.cpp's default 10000 when absent).
    #[serde(serialize_with = "short_f32")]
    pub rope_freq_base: f32,
    /// Rotated dimensions per head; 0 for an architecture without RoPE (gpt2).
    pub rope_dim: usize,
    /// RoPE scaling as the file sets it (llama.cpp's training-time `hparams`).
    pub rope_scaling: RopeScaling,
    /// No `output.weight`: the logits use `token_embd.weight`.
    pub tied_output: bool,
}

/// `{arch}.rope.scaling.type`, as `llama_rope_scaling_type_from_string` knows it. `longrope`
/// (per-layer long and short factor tensors) is not supported; an unknown name is an error
/// here because llama.cpp aborts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeScalingType {
    None,
    Linear,
    Yarn,
}

/// The RoPE scaling hyperparameters llama.cpp reads for every architecture
/// (`llama_model_base::load_hparams`), before `llama_context` turns them into the
/// `freq_scale`, `ext_factor` and `attn_factor` of `ggml_rope_ext` (see
/// `reference::rope`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RopeScaling {
    /// `rope.scaling.type` (llama.cpp's default `linear`).
    pub kind: RopeScalingType,
    /// `rope.scaling.factor`, else the older `rope.scale_linear`; 0 when absent, which
    /// llama.cpp reads as no scaling (`freq_scale = 1`).
    #[serde(serialize_with = "short_f32")]
    pub factor: f32,
    /// `rope.scaling.attn_factor` (default 1): multiplies every cos and sin.
    #[serde(serialize_with = "short_f32")]
    pub attn_factor: f32,
    /// `rope.scaling.original_context_length`, else the training context: YaRN's
    /// correction dimensions depend on it.
    pub n_ctx_orig: usize,
}

impl RopeScaling {
    /// What a file without any scaling key gets.
    pub fn unscaled(n_ctx_train: usize) -> RopeScaling {
        RopeScaling {
            kind: RopeScalingType::Linear,
            factor: 0.0,
            attn_factor: 1.0,
            n_ctx_orig: n_ctx_train,
        }
    }

    /// True when RoPE is plain `pos * base^(-2i/n)` (no interpolation, no YaRN, no scale).
    pub fn is_identity(&self) -> bool {
        (self.kind == RopeScalingType::None || self.factor == 0.0 || self.factor == 1.0)
            && self.kind != RopeScalingType::Yarn
            && self.attn_factor == 1.0
    }
}

/// An f32 as the f64 nearest its shortest decimal form, so JSON shows 1e-5 rather than the
/// f32's exact binary value 9.999999747378752e-6.
fn short_f32<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(x.to_string().parse::<f64>().unwrap_or(f64::from(*x)))
}

fn bad(key: &str, msg: impl Into<String>) -> GgufError {
    GgufError::BadValue {
        key: key.to_string(),
        msg: msg.into(),
    }
}

/// A non-negative integer that fits usize; `None` when the key is absent.
fn opt_usize(f: &GgufFile, key: &str) -> Result<Option<usize>, GgufError> {
    let Some(v) = f.get(key) else { return Ok(None) };
    let n = v.as_u64().ok_or_else(|| {
        bad(
            key,
            format!(
                "expected a non-negative integer, found {} {v}",
                v.type_name()
            ),
        )
    })?;
    usize::try_from(n)
        .map(Some)
        .map_err(|_| bad(key, format!("{n} is too large")))
}

fn req_usize(f: &GgufFile, key: &str) -> Result<usize, GgufError> {
    opt_usize(f, key)?.ok_or_else(|| GgufError::MissingKey(key.to_string()))
}

/// llama.cpp's `get_key_or_arr`: a single integer, or a per-layer array. Per-layer values that
/// differ are not supported by the reference, so they are an error here.
fn opt_usize_or_arr(f: &GgufFile, key: &str, n_layer: usize) -> Result<Option<usize>, GgufError> {
    match f.get(key) {
        Some(MetaValue::Array(items)) => {
            if items.len() != n_layer {
                return Err(bad(
                    key,
                    format!(
                        "per-layer array has {} entries for {n_layer} layers",
                        items.len()
                    ),
                ));
            }
            let mut first = None;
            for v in items {
                let n = v
                    .as_u64()
                    .ok_or_else(|| bad(key, format!("array holds {} {v}", v.type_name())))?;
                match first {
                    None => first = Some(n),
                    Some(m) if m != n => {
                        return Err(bad(
                            key,
                            "per-layer values differ; only uniform layers are supported",
                        ))
                    }
                    _ => {}
                }
            }
            let n = first.ok_or_else(|| bad(key, "empty per-layer array"))?;
            usize::try_from(n)
                .map(Some)
                .map_err(|_| bad(key, format!("{n} is too large")))
        }
        _ => opt_usize(f, key),
    }
}

fn opt_f32(f: &GgufFile, key: &str) -> Result<Option<f32>, GgufError> {
    let Some(v) = f.get(key) else { return Ok(None) };
    let x = v.as_f32().ok_or_else(|| {
        bad(
            key,
            format!("expected a float, found {} {v}", v.type_name()),
        )
    })?;
    if !x.is_finite() {
        return Err(bad(key, format!("{x} is not finite")));
    }
    Ok(Some(x))
}

fn nonzero(key: &str, v: usize) -> Result<usize, GgufError> {
    if v == 0 {
        Err(bad(key, "must be greater than zero"))
    } else {
        Ok(v)
    }
}

impl ModelParams {
    pub fn from_gguf(f: &GgufFile) -> Result<ModelParams, GgufError> {
        let name = f.architecture()?;
        let arch = Arch::parse(name).ok_or_else(|| GgufError::UnsupportedArch(name.to_string()))?;
        let k = |suffix: &str| format!("{name}.{suffix}");

        let n_layer = nonzero(&k("block_count"), req_usize(f, &k("block_count"))?)?;
        let n_embd = nonzero(
            &k("embedding_length"),
            req_usize(f, &k("embedding_length"))?,
        )?;
        let n_ctx_train = req_usize(f, &k("context_length"))?;
        let key_head = k("attention.head_count");
        let n_head = opt_usize_or_arr(f, &key_head, n_layer)?
            .ok_or_else(|| GgufError::MissingKey(key_head.clone()))?;
        let n_head = nonzero(&key_head, n_head)?;
        let key_kv = k("attention.head_count_kv");
        let n_head_kv = nonzero(
            &key_kv,
            opt_usize_or_arr(f, &key_kv, n_layer)?.unwrap_or(n_head),
        )?;
        if n_head % n_head_kv != 0 {
            return Err(bad(
                &key_kv,
                format!("{n_head_kv} does not divide the {n_head} query heads"),
            ));
        }
        let key_ff = k("feed_forward_length");
        let n_ff = nonzero(
            &key_ff,
            opt_usize_or_arr(f, &key_ff, n_layer)?
                .ok_or_else(|| GgufError::MissingKey(key_ff.clone()))?,
        )?;

        let key_kl = k("attention.key_length");
        let head_dim = match opt_usize(f, &key_kl)? {
            Some(d) => nonzero(&key_kl, d)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(bad(
                        &key_head,
                        format!("{n_head} heads do not divide n_embd {n_embd}"),
                    ));
                }
                n_embd / n_head
            }
        };
        if let Some(vl) = opt_usize(f, &k("attention.value_length"))? {
            if vl != head_dim {
                return Err(bad(
                    &k("attention.value_length"),
                    format!("{vl} differs from the key length {head_dim}"),
                ));
            }
        }

        let eps_key = match arch {
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => {
                k("attention.layer_norm_rms_epsilon")
            }
            Arch::Gpt2 => k("attention.layer_norm_epsilon"),
        };
        let norm_eps =
            opt_f32(f, &eps_key)?.ok_or_else(|| GgufError::MissingKey(eps_key.clone()))?;
        let rope_freq_base = opt_f32(f, &k("rope.freq_base"))?.unwrap_or(10000.0);
        let rope_dim = match arch {
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => {
                let key = k("rope.dimension_count");
                let d = opt_usize(f, &key)?.unwrap_or(head_dim);
                // llama.cpp refuses a partial rotation for llama and asserts against one in
                // the qwen graphs.
                if d != head_dim {
                    return Err(bad(
                        &key,
                        format!("{d}, but {name} needs it equal to the head size {head_dim}"),
                    ));
                }
                d
            }
            Arch::Gpt2 => 0,
        };

        let rope_scaling = rope_scaling(f, &k, n_ctx_train)?;

        // llama.cpp's n_vocab is the token list's length; the tensor is the fallback.
        let n_vocab = match f.get("tokenizer.ggml.tokens") {
            Some(v) => v
                .as_array()
                .map(|a| a.len())
                .ok_or_else(|| bad("tokenizer.ggml.tokens", "expected an array"))?,
            None => match opt_usize(f, &k("vocab_size"))? {
                Some(n) => n,
                None => {
                    let t = f.tensor("token_embd.weight")?;
                    t.n_rows()
                }
            },
        };
        let n_vocab = nonzero("tokenizer.ggml.tokens", n_vocab)?;

        Ok(ModelParams {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            n_ctx_train,
            norm_eps,
            rope_freq_base,
            rope_dim,
            rope_scaling,
            tied_output: !f.has_tensor("output.weight"),
        })
    }
}

/// The RoPE scaling keys, read as `llama_model_base::load_hparams` reads them.
fn rope_scaling(
    f: &GgufFile,
    k: &dyn Fn(&str) -> String,
    n_ctx_train: usize,
) -> Result<RopeScaling, GgufError> {
    let key_type = k("rope.scaling.type");
    let kind = match f.get(&key_type) {
        None => RopeScalingType::Linear,
        Some(v) => match v.as_str() {
            Some("none") => RopeScalingType::None,
            Some("linear") => RopeScalingType::Linear,
            Some("yarn") => RopeScalingType::Yarn,
            Some("longrope") => {
                return Err(bad(
                    &key_type,
                    "'longrope' (per-layer long and short RoPE factors) is not supported",
                ))
            }
            Some(other) => {
                return Err(bad(
                    &key_type,
                    format!(
                        "'{other}' is not a RoPE scaling type (llama.cpp knows none, linear, yarn, \
                         longrope, and aborts on any other)"
                    ),
                ))
            }
            None => {
                return Err(bad(
                    &key_type,
                    format!("expected a string, found {} {v}", v.type_name()),
                ))
            }
        },
    };
    let factor = match opt_f32(f, &k("rope.scaling.factor"))? {
        Some(x) => Some((k("rope.scaling.factor"), x)),
        None => opt_f32(f, &k("rope.scale_linear"))?.map(|x| (k("rope.scale_linear"), x)),
    };
    let factor = match factor {
        Some((key, x)) if x < 0.0 => return Err(bad(&key, format!("{x} is negative"))),
        Some((_, x)) => x,
        None => 0.0,
    };
    let attn_key = k("rope.scaling.attn_factor");
    let attn_factor = opt_f32(f, &attn_key)?.unwrap_or(1.0);
    let orig_key = k("rope.scaling.original_context_length");
    let n_ctx_orig = opt_usize(f, &orig_key)?.unwrap_or(n_ctx_train);
    if kind == RopeScalingType::Yarn && n_ctx_orig == 0 {
        return Err(bad(
            &orig_key,
            "YaRN needs a context length greater than zero",
        ));
    }
    Ok(RopeScaling {
        kind,
        factor,
        attn_factor,
        n_ctx_orig,
    })
}
