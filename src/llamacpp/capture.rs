//! Which llama.cpp graph node stands for each catalogued checkpoint, and how its data is
//! rearranged into the catalogue's shape.
//!
//! llama.cpp names nodes `NAME-LAYER` and gives one name to several nodes (`Qcur-0` is the
//! projection, its reshape and the RoPE result), so each checkpoint names the op it takes.
//! Observed orders of nodes per layer are in the README's catalogue section.

use crate::checkpoint::{CheckpointName, Kind, Tensor};

use super::{Capture, CaptureView};

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
    /// ggml op name of the node to take among those that share the name; empty for the last
    /// node of that name whatever its op.
    pub op: &'static str,
    pub layout: Layout,
}

/// The llama.cpp architectures with a catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFamily {
    Llama,
    Gpt2,
    Qwen2,
    Qwen3,
    Gemma3,
}

/// One per-layer checkpoint of a family's graph: the kind, the node's name with `{L}` for the
/// layer, the op to take among the nodes of that name, the layout.
#[derive(Debug, Clone, Copy)]
struct Row(Kind, &'static str, &'static str, Layout);

/// Where one family's checkpoints are in llama.cpp's graph (its `src/models/FAMILY.cpp`).
struct FamilyGraph {
    /// `inp_embd`'s node and op.
    embd: (&'static str, &'static str),
    /// The per-layer checkpoints in graph order, as consecutive runs of rows.
    layer: &'static [&'static [Row]],
    /// The op of the final norm's node (`result_norm`).
    result_norm_op: &'static str,
    /// The op of the logits' node (`result_output`): the output MUL_MAT, or empty for the last
    /// node of that name (gemma3's soft-capping ends in a SCALE named `result_output`).
    result_output_op: &'static str,
}

use Layout::{CacheK as CK, CacheVTransposed as CV, Direct, SoftMax as SM};
const D2: Layout = Direct { rank: 2 };
const D3: Layout = Direct { rank: 3 };

/// RMSNorm times its weight: the MUL of `build_norm`.
const RMS_ATTN_NORM: &[Row] = &[Row(Kind::AttnNorm, "attn_norm-{L}", "MUL", D2)];

/// `build_qkv`'s separate projections: `Qcur-L` names the projection, its bias ADD (when there
/// is one) and the reshape to heads; the RESHAPE carries the biased values. `Qcur-L` is also
/// the name of the ROPE.
const QK_ROPE_V: &[Row] = &[
    Row(Kind::Qcur, "Qcur-{L}", "RESHAPE", D3),
    Row(Kind::QcurRope, "Qcur-{L}", "ROPE", D3),
    Row(Kind::Kcur, "Kcur-{L}", "RESHAPE", D3),
    Row(Kind::KcurRope, "Kcur-{L}", "ROPE", D3),
    Row(Kind::Vcur, "Vcur-{L}", "RESHAPE", D3),
];

/// qwen3: each of Q and K RMS-normed per head (`Qcur_normed-L`, the weight's MUL) before RoPE.
const QK_NORM_ROPE_V: &[Row] = &[
    Row(Kind::Qcur, "Qcur-{L}", "RESHAPE", D3),
    Row(Kind::QcurNormed, "Qcur_normed-{L}", "MUL", D3),
    Row(Kind::QcurRope, "Qcur-{L}", "ROPE", D3),
    Row(Kind::Kcur, "Kcur-{L}", "RESHAPE", D3),
    Row(Kind::KcurNormed, "Kcur_normed-{L}", "MUL", D3),
    Row(Kind::KcurRope, "Kcur-{L}", "ROPE", D3),
    Row(Kind::Vcur, "Vcur-{L}", "RESHAPE", D3),
];

/// `build_attn` with a KV cache: the cache views after the store, the probabilities, the
/// weighted values.
const ATTENTION: &[Row] = &[
    Row(Kind::CacheK, "cache_k_l{L} (view)", "VIEW", CK),
    Row(Kind::CacheV, "cache_v_l{L} (view)", "VIEW", CV),
    Row(Kind::KqSoftMax, "kq_soft_max-{L}", "SOFT_MAX", SM),
    Row(Kind::KqvOut, "kqv_out-{L}", "CONT", D2),
];

/// llama names the output projection `attn_out-L`.
const ATTN_OUT_NAMED: &[Row] = &[Row(Kind::AttnOut, "attn_out-{L}", "MUL_MAT", D2)];

/// qwen2 and qwen3 leave it unnamed: the MUL_MAT whose source is the output weight.
const ATTN_OUT_BY_WEIGHT: &[Row] = &[Row(
    Kind::AttnOut,
    "src:blk.{L}.attn_output.weight",
    "MUL_MAT",
    D2,
)];

/// The residual, the pre-norm SwiGLU FFN (`build_ffn` with `LLM_FFN_SILU, LLM_FFN_PAR`; the
/// down projection is named `ffn_out-L`) and the second residual.
const SWIGLU_FFN: &[Row] = &[
    Row(Kind::FfnInp, "ffn_inp-{L}", "ADD", D2),
    Row(Kind::FfnNorm, "ffn_norm-{L}", "MUL", D2),
    Row(Kind::FfnGate, "ffn_gate-{L}", "MUL_MAT", D2),
    Row(Kind::FfnUp, "ffn_up-{L}", "MUL_MAT", D2),
    Row(Kind::FfnSwiglu, "ffn_swiglu-{L}", "GLU", D2),
    Row(Kind::FfnOut, "ffn_out-{L}", "MUL_MAT", D2),
    Row(Kind::LOut, "l_out-{L}", "ADD", D2),
];

/// src/models/llama.cpp.
const LLAMA: FamilyGraph = FamilyGraph {
    embd: ("embd", "GET_ROWS"),
    layer: &[
        RMS_ATTN_NORM,
        QK_ROPE_V,
        ATTENTION,
        ATTN_OUT_NAMED,
        SWIGLU_FFN,
    ],
    result_norm_op: "MUL",
    result_output_op: "MUL_MAT",
};

/// src/models/qwen2.cpp.
const QWEN2: FamilyGraph = FamilyGraph {
    embd: ("embd", "GET_ROWS"),
    layer: &[
        RMS_ATTN_NORM,
        QK_ROPE_V,
        ATTENTION,
        ATTN_OUT_BY_WEIGHT,
        SWIGLU_FFN,
    ],
    result_norm_op: "MUL",
    result_output_op: "MUL_MAT",
};

/// src/models/qwen3.cpp.
const QWEN3: FamilyGraph = FamilyGraph {
    embd: ("embd", "GET_ROWS"),
    layer: &[
        RMS_ATTN_NORM,
        QK_NORM_ROPE_V,
        ATTENTION,
        ATTN_OUT_BY_WEIGHT,
        SWIGLU_FFN,
    ],
    result_norm_op: "MUL",
    result_output_op: "MUL_MAT",
};

/// src/models/gemma3.cpp: the embedding rows times sqrt(n_embd) are `inp_scaled` (the MUL);
/// qwen3's normed Q and K (the query's SCALE by `1/sqrt(head_dim)` after RoPE is unnamed and
/// not a checkpoint); the attention output's norm (`attn_post_norm-L`), the residual
/// (`sa_out-L`), the GELU-gated FFN (`build_ffn` with `LLM_FFN_GELU, LLM_FFN_PAR`: a GLU), the
/// FFN output's norm (`ffn_post_norm-L`) and the second residual.
const GEMMA3: FamilyGraph = FamilyGraph {
    embd: ("inp_scaled", "MUL"),
    layer: &[
        RMS_ATTN_NORM,
        QK_NORM_ROPE_V,
        ATTENTION,
        ATTN_OUT_BY_WEIGHT,
        &[
            Row(Kind::AttnPostNorm, "attn_post_norm-{L}", "MUL", D2),
            Row(Kind::FfnInp, "sa_out-{L}", "ADD", D2),
            Row(Kind::FfnNorm, "ffn_norm-{L}", "MUL", D2),
            Row(Kind::FfnGate, "ffn_gate-{L}", "MUL_MAT", D2),
            Row(Kind::FfnUp, "ffn_up-{L}", "MUL_MAT", D2),
            Row(Kind::FfnGeglu, "ffn_geglu-{L}", "GLU", D2),
            Row(Kind::FfnOut, "ffn_out-{L}", "MUL_MAT", D2),
            Row(Kind::FfnPostNorm, "ffn_post_norm-{L}", "MUL", D2),
            Row(Kind::LOut, "l_out-{L}", "ADD", D2),
        ],
    ],
    result_norm_op: "MUL",
    result_output_op: "",
};

/// src/models/gpt2.cpp: LayerNorm with bias (the ADD), Q, K and V as strided VIEWs of the fused
/// projection, unnamed output projection plus bias (the ADD of its bias), GELU FFN with biases.
const GPT2: FamilyGraph = FamilyGraph {
    embd: ("inpL", "ADD"),
    layer: &[
        &[
            Row(Kind::AttnNorm, "attn_norm-{L}", "ADD", D2),
            Row(Kind::Qkv, "wqkv_b-{L}", "ADD", D2),
            Row(Kind::Qcur, "Qcur-{L}", "VIEW", D3),
            Row(Kind::Kcur, "Kcur-{L}", "VIEW", D3),
            Row(Kind::Vcur, "Vcur-{L}", "VIEW", D3),
        ],
        ATTENTION,
        &[
            Row(Kind::AttnOut, "src:blk.{L}.attn_output.bias", "ADD", D2),
            Row(Kind::FfnInp, "ffn_inp-{L}", "ADD", D2),
            Row(Kind::FfnNorm, "ffn_norm-{L}", "ADD", D2),
            Row(Kind::FfnUp, "ffn_up_b-{L}", "ADD", D2),
            Row(Kind::FfnGelu, "ffn_gelu-{L}", "UNARY", D2),
            Row(Kind::FfnOut, "ffn_out-{L}", "ADD", D2),
            Row(Kind::LOut, "l_out-{L}", "ADD", D2),
        ],
    ],
    result_norm_op: "ADD",
    result_output_op: "MUL_MAT",
};

impl GraphFamily {
    pub fn from_architecture(arch: &str) -> Option<Self> {
        match arch {
            "llama" => Some(GraphFamily::Llama),
            "gpt2" => Some(GraphFamily::Gpt2),
            "qwen2" => Some(GraphFamily::Qwen2),
            "qwen3" => Some(GraphFamily::Qwen3),
            "gemma3" => Some(GraphFamily::Gemma3),
            _ => None,
        }
    }

    fn graph(self) -> &'static FamilyGraph {
        match self {
            GraphFamily::Llama => &LLAMA,
            GraphFamily::Gpt2 => &GPT2,
            GraphFamily::Qwen2 => &QWEN2,
            GraphFamily::Qwen3 => &QWEN3,
            GraphFamily::Gemma3 => &GEMMA3,
        }
    }

    /// The family's catalogue (`Kind::LLAMA`, `Kind::QWEN3`, ...).
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            GraphFamily::Llama => &Kind::LLAMA,
            GraphFamily::Gpt2 => &Kind::GPT2,
            GraphFamily::Qwen2 => &Kind::QWEN2,
            GraphFamily::Qwen3 => &Kind::QWEN3,
            GraphFamily::Gemma3 => &Kind::GEMMA3,
        }
    }

    fn rows(self) -> impl Iterator<Item = &'static Row> {
        self.graph().layer.iter().flat_map(|run| run.iter())
    }
}

/// Every node rule of one step, in graph order (the `tokens` checkpoint is not a node).
pub fn rules(family: GraphFamily, n_layer: u32) -> Vec<NodeRule> {
    let g = family.graph();
    let mut v = vec![NodeRule {
        name: CheckpointName::InpEmbd,
        node: g.embd.0.into(),
        op: g.embd.1,
        layout: Layout::Direct { rank: 2 },
    }];
    for layer in 0..n_layer {
        v.extend(family.rows().map(|&Row(kind, node, op, layout)| NodeRule {
            name: CheckpointName::layer(layer, kind),
            node: node.replace("{L}", &layer.to_string()),
            op,
            layout,
        }));
    }
    v.push(NodeRule {
        name: CheckpointName::ResultNorm,
        node: "result_norm".into(),
        op: g.result_norm_op,
        layout: Layout::Direct { rank: 2 },
    });
    v.push(NodeRule {
        name: CheckpointName::ResultOutput,
        node: "result_output".into(),
        op: g.result_output_op,
        layout: Layout::Direct { rank: 2 },
    });
    v
}

/// The checkpoints llama.cpp names the same way in every family's graph (`llm_graph_context`
/// and the graph builders' shared conventions), taken from the last node of each name: what
/// `extract` maps for an architecture without a catalogue. A family may lack some of them
/// (gemma3 has no `ffn_inp`); those are skipped.
pub fn universal_rules(n_layer: u32) -> Vec<NodeRule> {
    let rule = |name: CheckpointName, node: String| NodeRule {
        name,
        node,
        op: "",
        layout: Layout::Direct { rank: 2 },
    };
    let mut v = vec![rule(CheckpointName::InpEmbd, "embd".into())];
    for layer in 0..n_layer {
        for (kind, node) in [
            (Kind::AttnNorm, "attn_norm"),
            (Kind::KqvOut, "kqv_out"),
            (Kind::FfnInp, "ffn_inp"),
            (Kind::FfnNorm, "ffn_norm"),
            (Kind::FfnOut, "ffn_out"),
            (Kind::LOut, "l_out"),
        ] {
            v.push(rule(
                CheckpointName::layer(layer, kind),
                format!("{node}-{layer}"),
            ));
        }
    }
    v.push(rule(CheckpointName::ResultNorm, "result_norm".into()));
    v.push(rule(CheckpointName::ResultOutput, "result_output".into()));
    v
}

/// The checkpoint name of the `index`-th node of a step's graph (`extract --all-nodes`):
/// `node.{index}.{name}.{op}` with the index zero-padded so that names sort in graph order,
/// and every character of the node's name outside `[A-Za-z0-9_-]` (spaces, parentheses,
/// slashes, dots) replaced by `_`, so that the name is a safe file name on every file system
/// and unique even where the file system ignores case.
pub fn node_checkpoint(index: usize, name: &str, op: &str) -> CheckpointName {
    let safe = |s: &str, max: usize| -> String {
        let t: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect();
        if t.is_empty() {
            "unnamed".into()
        } else {
            t
        }
    };
    CheckpointName::Other(format!(
        "node.{index:05}.{}.{}",
        safe(name, 96),
        safe(op, 32)
    ))
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
        .find(|c| c.name == rule.node && (rule.op.is_empty() || c.op == rule.op))
        .ok_or_else(|| missing(rule))?;
    arrange(rule, &c.view(), filled)
}

/// The error for a rule whose node was not captured.
pub fn missing(rule: &NodeRule) -> CaptureError {
    CaptureError::Missing {
        name: rule.name.clone(),
        node: rule.node.clone(),
        op: rule.op,
    }
}

/// Rearranges the rule's captured node into the checkpoint's shape.
pub fn arrange(rule: &NodeRule, c: &CaptureView, filled: usize) -> Result<Tensor, CaptureError> {
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
            Ok(Tensor::new(rev[4 - rank..].to_vec(), c.data.to_vec()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_safe_file_names_in_graph_order() {
        let a = node_checkpoint(7, "cache_k_l0 (view)", "VIEW").to_string();
        assert_eq!(a, "node.00007.cache_k_l0__view_.VIEW");
        let b = node_checkpoint(12, "a/b\\c:d*?<>|.", "MUL_MAT").to_string();
        assert!(b
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        assert_eq!(
            node_checkpoint(3, "", "ADD").to_string(),
            "node.00003.unnamed.ADD"
        );
        let mut names = vec![b.clone(), a.clone()];
        names.sort();
        assert_eq!(names, [a, b]);
    }

    /// Each family's table lists exactly its catalogue, in catalogue order.
    #[test]
    fn tables_match_the_catalogues() {
        for f in [
            GraphFamily::Llama,
            GraphFamily::Gpt2,
            GraphFamily::Qwen2,
            GraphFamily::Qwen3,
            GraphFamily::Gemma3,
        ] {
            let kinds: Vec<Kind> = f.rows().map(|r| r.0).collect();
            assert_eq!(kinds, f.kinds(), "{f:?}");
            let mut sorted = kinds.clone();
            sorted.sort();
            assert_eq!(sorted, kinds, "{f:?}: not in catalogue order");
        }
    }
}
