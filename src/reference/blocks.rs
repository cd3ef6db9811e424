//! The pieces the llama-style decoders (llama, qwen2, qwen3) share, each tapping the
//! checkpoints it computes: the Q/K/V projections with their optional biases, the SwiGLU
//! feed-forward block, and the output head. Each family's module strings them together in
//! its own order, so that it reads like its graph builder in llama.cpp.

use super::numerics::Numerics;
use super::ops::{self, Matrix};
use super::support::Weights;
use super::{Fault, ReferenceError, Run, Taps};
use crate::checkpoint::{CheckpointName, Kind};
use crate::gguf::ModelParams;

fn blk(layer: usize, kind: Kind) -> CheckpointName {
    CheckpointName::layer(layer as u32, kind)
}

/// RMSNorm of every row of `x` (rows of `weight.len()`), times `weight`.
pub fn norm_rows(num: &Numerics, x: &[f32], eps: f32, weight: &[f32]) -> Vec<f32> {
    let n = weight.len();
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        num.rms_norm(src, eps, weight, dst);
    }
    out
}

/// RMSNorm of every head vector of `x`, times the head-sized `weight`: the per-head Q/K norm of
/// qwen3 and gemma3 (skipped under the `skip-qk-norm` fault).
pub fn head_norm(run: &Run, x: Vec<f32>, eps: f32, weight: &[f32]) -> Vec<f32> {
    if run.has(Fault::SkipQkNorm) {
        x
    } else {
        norm_rows(&run.numerics, &x, eps, weight)
    }
}

/// The separate Q, K and V projections of one layer and their biases
/// (llama.cpp's `llm_graph_context::build_qkv`, separate path). llama.cpp's
/// `create_tensor_qkv` loads each bias when the file has it, for every family that uses it
/// (qwen2's published models have all three), and so does this.
pub struct Qkv<'f> {
    wq: Matrix<'f>,
    wk: Matrix<'f>,
    wv: Matrix<'f>,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
}

impl<'f> Qkv<'f> {
    pub fn load(
        w: &mut Weights<'f>,
        layer: usize,
        p: &ModelParams,
    ) -> Result<Self, ReferenceError> {
        let n = |s: &str| format!("blk.{layer}.{s}");
        let e = p.n_embd;
        let q_dim = p.n_head * p.head_dim;
        let kv_dim = p.n_head_kv * p.head_dim;
        let (bq, bk, bv) = (
            w.opt_vector(&n("attn_q.bias"), q_dim)?,
            w.opt_vector(&n("attn_k.bias"), kv_dim)?,
            w.opt_vector(&n("attn_v.bias"), kv_dim)?,
        );
        Ok(Qkv {
            wq: w.matrix(&n("attn_q.weight"), e, q_dim)?,
            wk: w.matrix(&n("attn_k.weight"), e, kv_dim)?,
            wv: w.matrix(&n("attn_v.weight"), e, kv_dim)?,
            bq,
            bk,
            bv,
        })
    }

    /// `Q = Wq·x + bq`, `K = Wk·x + bk`, `V = Wv·x + bv` for the `t` rows of `cur`, tapped as
    /// `Qcur`, `Kcur`, `Vcur` (`[t, heads, head_dim]`).
    pub fn apply(
        &self,
        run: &Run,
        p: &ModelParams,
        cur: &[f32],
        layer: usize,
        taps: &mut Taps<'_>,
    ) -> Result<[Vec<f32>; 3], ReferenceError> {
        let num = &run.numerics;
        let (t, d) = (cur.len() / p.n_embd, p.head_dim);
        let drop_qk_bias = run.has(Fault::NoQkBias);
        let project = |w: &Matrix<'_>, b: &Option<Vec<f32>>, keep_bias: bool| {
            let mut y = ops::matmul(num, w, cur, t)?;
            if let (Some(b), true) = (b, keep_bias) {
                ops::add_bias(&mut y, b);
            }
            Ok::<_, ReferenceError>(y)
        };
        let q = project(&self.wq, &self.bq, !drop_qk_bias)?;
        taps.put(blk(layer, Kind::Qcur), &[t, p.n_head, d], &q)?;
        let k = project(&self.wk, &self.bk, !drop_qk_bias)?;
        taps.put(blk(layer, Kind::Kcur), &[t, p.n_head_kv, d], &k)?;
        let v = project(&self.wv, &self.bv, true)?;
        taps.put(blk(layer, Kind::Vcur), &[t, p.n_head_kv, d], &v)?;
        Ok([q, k, v])
    }
}

/// The pre-norm SwiGLU feed-forward block (`build_norm` + `build_ffn` with `LLM_FFN_SILU`,
/// `LLM_FFN_PAR`).
pub struct SwiGlu<'f> {
    norm: Vec<f32>,
    gate: Matrix<'f>,
    up: Matrix<'f>,
    down: Matrix<'f>,
}

impl<'f> SwiGlu<'f> {
    pub fn load(
        w: &mut Weights<'f>,
        layer: usize,
        p: &ModelParams,
    ) -> Result<Self, ReferenceError> {
        let n = |s: &str| format!("blk.{layer}.{s}");
        let (e, ff) = (p.n_embd, p.n_ff);
        Ok(SwiGlu {
            norm: w.vector(&n("ffn_norm.weight"), e)?,
            gate: w.matrix(&n("ffn_gate.weight"), e, ff)?,
            up: w.matrix(&n("ffn_up.weight"), e, ff)?,
            down: w.matrix(&n("ffn_down.weight"), ff, e)?,
        })
    }

    /// `down(silu(gate(norm(x))) * up(norm(x)))`, tapping `ffn_norm` to `ffn_out`.
    pub fn apply(
        &self,
        run: &Run,
        p: &ModelParams,
        x: &[f32],
        layer: usize,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let num = &run.numerics;
        let (t, e, ff) = (x.len() / p.n_embd, p.n_embd, p.n_ff);
        let cur = norm_rows(num, x, run.norm_eps(p), &self.norm);
        taps.put(blk(layer, Kind::FfnNorm), &[t, e], &cur)?;
        let (wg, wu) = if run.has(Fault::GateUpSwap) {
            (&self.up, &self.gate)
        } else {
            (&self.gate, &self.up)
        };
        let gate = ops::matmul(num, wg, &cur, t)?;
        taps.put(blk(layer, Kind::FfnGate), &[t, ff], &gate)?;
        let up = ops::matmul(num, wu, &cur, t)?;
        taps.put(blk(layer, Kind::FfnUp), &[t, ff], &up)?;
        let act = ops::swiglu(num, &gate, &up, ff);
        taps.put(blk(layer, Kind::FfnSwiglu), &[t, ff], &act)?;
        let down = ops::matmul(num, &self.down, &act, t)?;
        taps.put(blk(layer, Kind::FfnOut), &[t, e], &down)?;
        Ok(down)
    }
}

/// Token embedding, final RMSNorm and output matrix (tied to the embedding when the file has
/// no `output.weight`).
pub struct EmbedHead<'f> {
    token_embd: Matrix<'f>,
    output_norm: Vec<f32>,
    output: Matrix<'f>,
}

impl<'f> EmbedHead<'f> {
    pub fn load(w: &mut Weights<'f>, p: &ModelParams) -> Result<Self, ReferenceError> {
        let (e, v) = (p.n_embd, p.n_vocab);
        let token_embd = w.matrix("token_embd.weight", e, v)?;
        let output = if p.tied_output {
            token_embd
        } else {
            w.matrix("output.weight", e, v)?
        };
        Ok(EmbedHead {
            token_embd,
            output_norm: w.vector("output_norm.weight", e)?,
            output,
        })
    }

    /// The embedding rows of `tokens`, untapped.
    pub fn rows(&self, tokens: &[i32]) -> Result<Vec<f32>, ReferenceError> {
        ops::embedding_rows(&self.token_embd, tokens)
    }

    /// The embedding rows of `tokens`, tapped as `inp_embd`.
    pub fn embed(
        &self,
        p: &ModelParams,
        tokens: &[i32],
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let x = ops::embedding_rows(&self.token_embd, tokens)?;
        taps.put(CheckpointName::InpEmbd, &[tokens.len(), p.n_embd], &x)?;
        Ok(x)
    }

    /// The logits of the residual stream `x`, tapping `result_norm` and `result_output`.
    pub fn logits(
        &self,
        run: &Run,
        p: &ModelParams,
        x: &[f32],
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        self.logits_capped(run, p, x, None, taps)
    }

    /// [`EmbedHead::logits`], with `softcap` the final logit soft-capping
    /// `cap * tanh(logits / cap)` (ggml: a scale by `1/cap`, `tanhf`, a scale by `cap`).
    pub fn logits_capped(
        &self,
        run: &Run,
        p: &ModelParams,
        x: &[f32],
        softcap: Option<f32>,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let num = &run.numerics;
        let t = x.len() / p.n_embd;
        let norm = norm_rows(num, x, run.norm_eps(p), &self.output_norm);
        taps.put(CheckpointName::ResultNorm, &[t, p.n_embd], &norm)?;
        let mut logits = ops::matmul(num, &self.output, &norm, t)?;
        if let Some(cap) = softcap {
            let inv = 1.0 / cap;
            for v in &mut logits {
                *v = match num.mode {
                    super::Mode::Ggml => (*v * inv).tanh() * cap,
                    super::Mode::Exact => {
                        ((f64::from(*v) / f64::from(cap)).tanh() * f64::from(cap)) as f32
                    }
                };
            }
        }
        taps.put(CheckpointName::ResultOutput, &[t, p.n_vocab], &logits)?;
        Ok(logits)
    }
}
