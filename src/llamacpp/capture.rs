//! Which llama.cpp graph node stands for each catalogued checkpoint, and how its data is
//! rearranged into the catalogue's shape.
//!
//! llama.cpp names nodes `NAME-LAYER` and gives one name to several nodes (`Qcur-0` is the
//! projection, its reshape and the RoPE result), so each checkpoint names the op it takes.
//! Observed orders of nodes per layer are in the README's catalogue section.

use crate::checkpoint::{CheckpointName, Kind, Tensor};

use super::Capture;

/// How a captured node becomes a checkpoint tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// ggml's `ne` reversed is already the catalogue shape (C order), with `rank` dimensions.
    Direct { rank: usize },
    /// The K cache view `[head_dim, n_head_kv, n_kv]`: keep the first `filled` cells.
    CacheK,
    /// The transposed V cache view `[n_kv, n_head_kv, head_dim]`: permute to
    /// `[filled, n_head_kv, head_dim]`.
    CacheVTransposed,
    /// Softmax `[n_kv, T, n_head]`: keep the first `filled` cells of each row.
    SoftMax,
}

/// The node a checkpoint is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRule {
    pub name: CheckpointName,
    /// Exact llama.cpp node name, e.g. `Qcur-3` or `cache_k_l3 (view)`.
    pub node: String,
    /// ggml op name of the node to take among those that share the name.
    pub op: &'static str,
    pub layout: Layout,
}

/// The llama.cpp architectures with a catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFamily {
    Llama,
    Gpt2,
}

impl GraphFamily {
    pub fn from_architecture(arch: &str) -> Option<Self> {
        match arch {
            "llama" => Some(GraphFamily::Llama),
            "gpt2" => Some(GraphFamily::Gpt2),
            _ => None,
        }
    }

    pub fn kinds(self) -> &'static [Kind] {
        match self {
            GraphFamily::Llama => &Kind::LLAMA,
            GraphFamily::Gpt2 => &Kind::GPT2,
        }
    }
}

fn layer_rule(family: GraphFamily, layer: u32, kind: Kind) -> NodeRule {
    use Layout::*;
    let l = layer;
    let (node, op, layout) = match (family, kind) {
        (_, Kind::AttnNorm) => (
            format!("attn_norm-{l}"),
            if family == GraphFamily::Llama {
                "MUL"
            } else {
                "ADD"
            },
            Direct { rank: 2 },
        ),
        (_, Kind::Qkv) => (format!("wqkv_b-{l}"), "ADD", Direct { rank: 2 }),
        // gpt2 slices Q, K and V out of the fused projection as strided views.
        (GraphFamily::Gpt2, Kind::Qcur) => (format!("Qcur-{l}"), "VIEW", Direct { rank: 3 }),
        (GraphFamily::Gpt2, Kind::Kcur) => (format!("Kcur-{l}"), "VIEW", Direct { rank: 3 }),
        (GraphFamily::Gpt2, Kind::Vcur) => (format!("Vcur-{l}"), "VIEW", Direct { rank: 3 }),
        (_, Kind::Qcur) => (format!("Qcur-{l}"), "RESHAPE", Direct { rank: 3 }),
        (_, Kind::QcurRope) => (format!("Qcur-{l}"), "ROPE", Direct { rank: 3 }),
        (_, Kind::Kcur) => (format!("Kcur-{l}"), "RESHAPE", Direct { rank: 3 }),
        (_, Kind::KcurRope) => (format!("Kcur-{l}"), "ROPE", Direct { rank: 3 }),
        (_, Kind::Vcur) => (format!("Vcur-{l}"), "RESHAPE", Direct { rank: 3 }),
        (_, Kind::CacheK) => (format!("cache_k_l{l} (view)"), "VIEW", CacheK),
        (_, Kind::CacheV) => (format!("cache_v_l{l} (view)"), "VIEW", CacheVTransposed),
        (_, Kind::KqSoftMax) => (format!("kq_soft_max-{l}"), "SOFT_MAX", SoftMax),
        (_, Kind::KqvOut) => (format!("kqv_out-{l}"), "CONT", Direct { rank: 2 }),
        (GraphFamily::Llama, Kind::AttnOut) => {
            (format!("attn_out-{l}"), "MUL_MAT", Direct { rank: 2 })
        }
        // llama.cpp leaves gpt2's projection-plus-bias unnamed: take the node that adds the bias.
        (GraphFamily::Gpt2, Kind::AttnOut) => (
            format!("src:blk.{l}.attn_output.bias"),
            "ADD",
            Direct { rank: 2 },
        ),
        (_, Kind::FfnInp) => (format!("ffn_inp-{l}"), "ADD", Direct { rank: 2 }),
        (GraphFamily::Llama, Kind::FfnNorm) => (format!("ffn_norm-{l}"), "MUL", Direct { rank: 2 }),
        (GraphFamily::Gpt2, Kind::FfnNorm) => (format!("ffn_norm-{l}"), "ADD", Direct { rank: 2 }),
        (_, Kind::FfnGate) => (format!("ffn_gate-{l}"), "MUL_MAT", Direct { rank: 2 }),
        (GraphFamily::Llama, Kind::FfnUp) => (format!("ffn_up-{l}"), "MUL_MAT", Direct { rank: 2 }),
        (GraphFamily::Gpt2, Kind::FfnUp) => (format!("ffn_up_b-{l}"), "ADD", Direct { rank: 2 }),
        (_, Kind::FfnSwiglu) => (format!("ffn_swiglu-{l}"), "GLU", Direct { rank: 2 }),
        (_, Kind::FfnGelu) => (format!("ffn_gelu-{l}"), "UNARY", Direct { rank: 2 }),
        (GraphFamily::Llama, Kind::FfnOut) => {
            (format!("ffn_out-{l}"), "MUL_MAT", Direct { rank: 2 })
        }
        (GraphFamily::Gpt2, Kind::FfnOut) => (format!("ffn_out-{l}"), "ADD", Direct { rank: 2 }),
        (_, Kind::LOut) => (format!("l_out-{l}"), "ADD", Direct { rank: 2 }),
    };
    NodeRule {
        name: CheckpointName::layer(layer, kind),
        node,
        op,
        layout,
    }
}

/// Every node rule of one step, in graph order (the `tokens` checkpoint is not a node).
pub fn rules(family: GraphFamily, n_layer: u32) -> Vec<NodeRule> {
    let mut v = vec![match family {
        GraphFamily::Llama => NodeRule {
            name: CheckpointName::InpEmbd,
            node: "embd".into(),
            op: "GET_ROWS",
            layout: Layout::Direct { rank: 2 },
        },
        GraphFamily::Gpt2 => NodeRule {
            name: CheckpointName::InpEmbd,
            node: "inpL".into(),
            op: "ADD",
            layout: Layout::Direct { rank: 2 },
        },
    }];
    for layer in 0..n_layer {
        v.extend(family.kinds().iter().map(|&k| layer_rule(family, layer, k)));
    }
    let norm_op = if family == GraphFamily::Llama {
        "MUL"
    } else {
        "ADD"
    };
    v.push(NodeRule {
        name: CheckpointName::ResultNorm,
        node: "result_norm".into(),
        op: norm_op,
        layout: Layout::Direct { rank: 2 },
    });
    v.push(NodeRule {
        name: CheckpointName::ResultOutput,
        node: "result_output".into(),
        op: "MUL_MAT",
        layout: Layout::Direct { rank: 2 },
    });
    v
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("llama.cpp produced no node {node:?} with op {op} for checkpoint {name}")]
    Missing {
        name: CheckpointName,
        node: String,
        op: &'static str,
    },
    #[error("node {node:?} has ne {ne:?}, which does not fit checkpoint {name} ({why})")]
    Layout {
        name: CheckpointName,
        node: String,
        ne: [usize; 4],
        why: String,
    },
}

/// Finds the rule's node among the captures (the last node with that name and op: a node
/// that is renamed twice is still one node) and rearranges it.
pub fn take(rule: &NodeRule, captures: &[Capture], filled: usize) -> Result<Tensor, CaptureError> {
    let c = captures
        .iter()
        .rev()
        .find(|c| c.name == rule.node && c.op == rule.op)
        .ok_or_else(|| CaptureError::Missing {
            name: rule.name.clone(),
            node: rule.node.clone(),
            op: rule.op,
        })?;
    let bad = |why: String| CaptureError::Layout {
        name: rule.name.clone(),
        node: rule.node.clone(),
        ne: c.ne,
        why,
    };
    let [ne0, ne1, ne2, ne3] = c.ne;
    match rule.layout {
        Layout::Direct { rank } => {
            let rev = [ne3, ne2, ne1, ne0];
            if rev[..4 - rank].iter().any(|&d| d != 1) {
                return Err(bad(format!("expected {rank} dimensions")));
            }
            Ok(Tensor::new(rev[4 - rank..].to_vec(), c.data.clone()))
        }
        Layout::CacheK => {
            if ne3 != 1 || filled > ne2 {
                return Err(bad(format!("{filled} filled cells")));
            }
            let n = filled * ne1 * ne0;
            Ok(Tensor::new(vec![filled, ne1, ne0], c.data[..n].to_vec()))
        }
        Layout::CacheVTransposed => {
            let (n_kv, heads, dim) = (ne0, ne1, ne2);
            if ne3 != 1 || filled > n_kv {
                return Err(bad(format!("{filled} filled cells")));
            }
            let mut out = Vec::with_capacity(filled * heads * dim);
            for cell in 0..filled {
                for h in 0..heads {
                    for d in 0..dim {
                        out.push(c.data[(d * heads + h) * n_kv + cell]);
                    }
                }
            }
            Ok(Tensor::new(vec![filled, heads, dim], out))
        }
        Layout::SoftMax => {
            let (n_kv, t, heads) = (ne0, ne1, ne2);
            if ne3 != 1 || filled > n_kv {
                return Err(bad(format!("{filled} filled cells")));
            }
            let mut out = Vec::with_capacity(heads * t * filled);
            for row in c.data.chunks_exact(n_kv) {
                out.extend_from_slice(&row[..filled]);
            }
            Ok(Tensor::new(vec![heads, t, filled], out))
        }
    }
}
