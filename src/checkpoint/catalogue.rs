//! The checkpoint catalogue: canonical names and graph order. This is a public contract:
//! other engines write dumps under these names (see the README's catalogue section).
//!
//! A checkpoint name is `inp_embd`, `blk.{layer}.{kind}`, `result_norm`, `result_output` or
//! `tokens`. Within one step the graph order is: tokens, inp_embd, then every layer's kinds in
//! the order of [`Kind::ALL`], then result_norm, result_output.

use std::cmp::Ordering;
use std::fmt;

/// A per-layer checkpoint kind, in graph order. Shapes are outermost first; `T` is the number of
/// tokens evaluated in this step, `F` the number of filled cache positions after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `[T, n_embd]` input of attention after the norm (and its weight; plus bias for gpt2).
    AttnNorm,
    /// `[T, 3 * n_embd]` gpt2's fused QKV projection (with bias).
    Qkv,
    /// `[T, n_head, head_dim]` query projection (plus bias where the family has one), before
    /// RoPE.
    Qcur,
    /// `[T, n_head, head_dim]` query after the per-head RMSNorm and its weight (qwen3).
    QcurNormed,
    /// `[T, n_head, head_dim]` query after RoPE.
    QcurRope,
    /// `[T, n_head_kv, head_dim]` key projection (plus bias where the family has one), before
    /// RoPE.
    Kcur,
    /// `[T, n_head_kv, head_dim]` key after the per-head RMSNorm and its weight (qwen3).
    KcurNormed,
    /// `[T, n_head_kv, head_dim]` key after RoPE.
    KcurRope,
    /// `[T, n_head_kv, head_dim]` value projection.
    Vcur,
    /// `[F, n_head_kv, head_dim]` the key cache, filled positions only.
    CacheK,
    /// `[F, n_head_kv, head_dim]` the value cache, filled positions only.
    CacheV,
    /// `[n_head, T, F]` attention probabilities over the filled positions.
    KqSoftMax,
    /// `[T, n_head * head_dim]` attention-weighted values, heads concatenated.
    KqvOut,
    /// `[T, n_embd]` after the output projection.
    AttnOut,
    /// `[T, n_embd]` the attention output RMS-normed, times its weight (gemma3), before the
    /// residual.
    AttnPostNorm,
    /// `[T, n_embd]` residual stream after attention.
    FfnInp,
    /// `[T, n_embd]` input of the FFN after the norm.
    FfnNorm,
    /// `[T, n_ff]` gate projection (llama).
    FfnGate,
    /// `[T, n_ff]` up projection.
    FfnUp,
    /// `[T, n_ff]` silu(gate) * up (llama).
    FfnSwiglu,
    /// `[T, n_ff]` gelu(up) (gpt2).
    FfnGelu,
    /// `[T, n_ff]` gelu(gate) * up, GELU in its tanh form (gemma3).
    FfnGeglu,
    /// `[T, n_embd]` down projection.
    FfnOut,
    /// `[T, n_embd]` the FFN output RMS-normed, times its weight (gemma3), before the residual.
    FfnPostNorm,
    /// `[T, n_embd]` residual stream at the end of the layer.
    LOut,
}

impl Kind {
    pub const ALL: [Kind; 25] = [
        Kind::AttnNorm,
        Kind::Qkv,
        Kind::Qcur,
        Kind::QcurNormed,
        Kind::QcurRope,
        Kind::Kcur,
        Kind::KcurNormed,
        Kind::KcurRope,
        Kind::Vcur,
        Kind::CacheK,
        Kind::CacheV,
        Kind::KqSoftMax,
        Kind::KqvOut,
        Kind::AttnOut,
        Kind::AttnPostNorm,
        Kind::FfnInp,
        Kind::FfnNorm,
        Kind::FfnGate,
        Kind::FfnUp,
        Kind::FfnSwiglu,
        Kind::FfnGelu,
        Kind::FfnGeglu,
        Kind::FfnOut,
        Kind::FfnPostNorm,
        Kind::LOut,
    ];

    /// The llama-family catalogue, in graph order.
    pub const LLAMA: [Kind; 18] = [
        Kind::AttnNorm,
        Kind::Qcur,
        Kind::QcurRope,
        Kind::Kcur,
        Kind::KcurRope,
        Kind::Vcur,
        Kind::CacheK,
        Kind::CacheV,
        Kind::KqSoftMax,
        Kind::KqvOut,
        Kind::AttnOut,
        Kind::FfnInp,
        Kind::FfnNorm,
        Kind::FfnGate,
        Kind::FfnUp,
        Kind::FfnSwiglu,
        Kind::FfnOut,
        Kind::LOut,
    ];

    /// The qwen2 catalogue: the llama one (its Q/K/V projections include their biases).
    pub const QWEN2: [Kind; 18] = Kind::LLAMA;

    /// The qwen3 catalogue: the llama one with the per-head normed Q and K before RoPE.
    pub const QWEN3: [Kind; 20] = [
        Kind::AttnNorm,
        Kind::Qcur,
        Kind::QcurNormed,
        Kind::QcurRope,
        Kind::Kcur,
        Kind::KcurNormed,
        Kind::KcurRope,
        Kind::Vcur,
        Kind::CacheK,
        Kind::CacheV,
        Kind::KqSoftMax,
        Kind::KqvOut,
        Kind::AttnOut,
        Kind::FfnInp,
        Kind::FfnNorm,
        Kind::FfnGate,
        Kind::FfnUp,
        Kind::FfnSwiglu,
        Kind::FfnOut,
        Kind::LOut,
    ];

    /// The gemma3 catalogue: qwen3's attention (per-head normed Q and K), a norm after the
    /// attention output and after the FFN, a GELU-gated FFN. `ffn_inp` is the residual stream
    /// after attention (llama.cpp's `sa_out`).
    pub const GEMMA3: [Kind; 22] = [
        Kind::AttnNorm,
        Kind::Qcur,
        Kind::QcurNormed,
        Kind::QcurRope,
        Kind::Kcur,
        Kind::KcurNormed,
        Kind::KcurRope,
        Kind::Vcur,
        Kind::CacheK,
        Kind::CacheV,
        Kind::KqSoftMax,
        Kind::KqvOut,
        Kind::AttnOut,
        Kind::AttnPostNorm,
        Kind::FfnInp,
        Kind::FfnNorm,
        Kind::FfnGate,
        Kind::FfnUp,
        Kind::FfnGeglu,
        Kind::FfnOut,
        Kind::FfnPostNorm,
        Kind::LOut,
    ];

    /// The gpt2 catalogue, in graph order (no RoPE, fused QKV, GELU FFN without a gate).
    pub const GPT2: [Kind; 16] = [
        Kind::AttnNorm,
        Kind::Qkv,
        Kind::Qcur,
        Kind::Kcur,
        Kind::Vcur,
        Kind::CacheK,
        Kind::CacheV,
        Kind::KqSoftMax,
        Kind::KqvOut,
        Kind::AttnOut,
        Kind::FfnInp,
        Kind::FfnNorm,
        Kind::FfnUp,
        Kind::FfnGelu,
        Kind::FfnOut,
        Kind::LOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AttnNorm => "attn_norm",
            Kind::Qkv => "qkv",
            Kind::Qcur => "Qcur",
            Kind::QcurNormed => "Qcur_normed",
            Kind::QcurRope => "Qcur_rope",
            Kind::Kcur => "Kcur",
            Kind::KcurNormed => "Kcur_normed",
            Kind::KcurRope => "Kcur_rope",
            Kind::Vcur => "Vcur",
            Kind::CacheK => "cache_k",
            Kind::CacheV => "cache_v",
            Kind::KqSoftMax => "kq_soft_max",
            Kind::KqvOut => "kqv_out",
            Kind::AttnOut => "attn_out",
            Kind::AttnPostNorm => "attn_post_norm",
            Kind::FfnInp => "ffn_inp",
            Kind::FfnNorm => "ffn_norm",
            Kind::FfnGate => "ffn_gate",
            Kind::FfnUp => "ffn_up",
            Kind::FfnSwiglu => "ffn_swiglu",
            Kind::FfnGelu => "ffn_gelu",
            Kind::FfnGeglu => "ffn_geglu",
            Kind::FfnOut => "ffn_out",
            Kind::FfnPostNorm => "ffn_post_norm",
            Kind::LOut => "l_out",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    fn order(self) -> usize {
        Kind::ALL
            .iter()
            .position(|&k| k == self)
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checkpoint within one step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckpointName {
    /// `[T]` token ids fed in this step (as f32; exact below 2^24).
    Tokens,
    /// `[T, n_embd]` token embedding rows (plus position embedding for gpt2).
    InpEmbd,
    Layer {
        layer: u32,
        kind: Kind,
    },
    /// `[T, n_embd]` the final norm.
    ResultNorm,
    /// `[T, n_vocab]` the logits.
    ResultOutput,
    /// A name outside the catalogue (another engine's extra dump). Ordered last, by name.
    Other(String),
}

impl CheckpointName {
    pub fn layer(layer: u32, kind: Kind) -> Self {
        CheckpointName::Layer { layer, kind }
    }

    pub fn parse(s: &str) -> CheckpointName {
        match s {
            "tokens" => return CheckpointName::Tokens,
            "inp_embd" => return CheckpointName::InpEmbd,
            "result_norm" => return CheckpointName::ResultNorm,
            "result_output" => return CheckpointName::ResultOutput,
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("blk.") {
            if let Some((l, k)) = rest.split_once('.') {
                if let (Ok(layer), Some(kind)) = (l.parse::<u32>(), Kind::parse(k)) {
                    if l == layer.to_string() {
                        return CheckpointName::Layer { layer, kind };
                    }
                }
            }
        }
        CheckpointName::Other(s.to_string())
    }

    pub fn layer_index(&self) -> Option<u32> {
        match self {
            CheckpointName::Layer { layer, .. } => Some(*layer),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        match self {
            CheckpointName::Layer { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The kind as a string for per-kind tolerances: `attn_norm`, `result_output`, ...
    pub fn kind_str(&self) -> &str {
        match self {
            CheckpointName::Tokens => "tokens",
            CheckpointName::InpEmbd => "inp_embd",
            CheckpointName::Layer { kind, .. } => kind.as_str(),
            CheckpointName::ResultNorm => "result_norm",
            CheckpointName::ResultOutput => "result_output",
            CheckpointName::Other(s) => s,
        }
    }

    fn order_key(&self) -> (u8, u32, usize) {
        match self {
            CheckpointName::Tokens => (0, 0, 0),
            CheckpointName::InpEmbd => (1, 0, 0),
            CheckpointName::Layer { layer, kind } => (2, *layer, kind.order()),
            CheckpointName::ResultNorm => (3, 0, 0),
            CheckpointName::ResultOutput => (4, 0, 0),
            CheckpointName::Other(_) => (5, 0, 0),
        }
    }
}

impl Ord for CheckpointName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order_key()
            .cmp(&other.order_key())
            .then_with(|| match (self, other) {
                (CheckpointName::Other(a), CheckpointName::Other(b)) => a.cmp(b),
                _ => Ordering::Equal,
            })
    }
}

impl PartialOrd for CheckpointName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for CheckpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointName::Layer { layer, kind } => write!(f, "blk.{layer}.{kind}"),
            other => f.write_str(other.kind_str()),
        }
    }
}

/// A checkpoint at a step: the unit that is dumped, compared and reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointId {
    pub step: u32,
    pub name: CheckpointName,
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step{}/{}", self.step, self.name)
    }
}

/// Every checkpoint of one step for an architecture, in graph order.
pub fn step_checkpoints(kinds: &[Kind], n_layer: u32) -> Vec<CheckpointName> {
    let mut v = vec![CheckpointName::Tokens, CheckpointName::InpEmbd];
    for layer in 0..n_layer {
        v.extend(
            kinds
                .iter()
                .map(|&kind| CheckpointName::Layer { layer, kind }),
        );
    }
    v.push(CheckpointName::ResultNorm);
    v.push(CheckpointName::ResultOutput);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_graph_order() {
        let names = step_checkpoints(&Kind::LLAMA, 12);
        for n in &names {
            assert_eq!(&CheckpointName::parse(&n.to_string()), n);
        }
        let mut shuffled = names.clone();
        shuffled.reverse();
        shuffled.sort();
        assert_eq!(shuffled, names);
        assert_eq!(
            CheckpointName::parse("blk.01.l_out"),
            CheckpointName::Other("blk.01.l_out".into())
        );
        assert!(CheckpointName::parse("blk.2.l_out") < CheckpointName::parse("blk.10.attn_norm"));
    }
}
