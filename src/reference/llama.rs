//! The llama family (llama.cpp's `src/models/llama.cpp`): RMSNorm, Q/K/V projections, RoPE in
//! normal (adjacent-pair) mode, grouped-query attention over a KV cache, SwiGLU FFN, tied or
//! separate output matrix. Each checkpoint is tapped at the line that computes it.

use super::numerics::Numerics;
use super::ops::{self, Heads, KvCache, Matrix, RopeStyle};
use super::{Fault, Forward, ReferenceError, Run, Taps};
use crate::checkpoint::{CheckpointName, Kind};
use crate::gguf::{GgufFile, ModelParams};

struct Layer<'f> {
    attn_norm: Vec<f32>,
    wq: Matrix<'f>,
    wk: Matrix<'f>,
    wv: Matrix<'f>,
    wo: Matrix<'f>,
    ffn_norm: Vec<f32>,
    ffn_gate: Matrix<'f>,
    ffn_up: Matrix<'f>,
    ffn_down: Matrix<'f>,
}

pub struct Llama<'f> {
    p: ModelParams,
    token_embd: Matrix<'f>,
    layers: Vec<Layer<'f>>,
    output_norm: Vec<f32>,
    output: Matrix<'f>,
    cache: Vec<KvCache>,
}

impl<'f> Llama<'f> {
    pub fn load(file: &'f GgufFile, p: &ModelParams) -> Result<Self, ReferenceError> {
        let (e, ff, v) = (p.n_embd, p.n_ff, p.n_vocab);
        let q_dim = p.n_head * p.head_dim;
        let kv_dim = p.n_head_kv * p.head_dim;
        let layers = (0..p.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}");
                Ok(Layer {
                    attn_norm: ops::vector(file, &n("attn_norm.weight"), e)?,
                    wq: ops::matrix(file, &n("attn_q.weight"), e, q_dim)?,
                    wk: ops::matrix(file, &n("attn_k.weight"), e, kv_dim)?,
                    wv: ops::matrix(file, &n("attn_v.weight"), e, kv_dim)?,
                    wo: ops::matrix(file, &n("attn_output.weight"), q_dim, e)?,
                    ffn_norm: ops::vector(file, &n("ffn_norm.weight"), e)?,
                    ffn_gate: ops::matrix(file, &n("ffn_gate.weight"), e, ff)?,
                    ffn_up: ops::matrix(file, &n("ffn_up.weight"), e, ff)?,
                    ffn_down: ops::matrix(file, &n("ffn_down.weight"), ff, e)?,
                })
            })
            .collect::<Result<Vec<_>, ReferenceError>>()?;
        let token_embd = ops::matrix(file, "token_embd.weight", e, v)?;
        let output = if p.tied_output {
            token_embd
        } else {
            ops::matrix(file, "output.weight", e, v)?
        };
        Ok(Llama {
            p: p.clone(),
            token_embd,
            layers,
            output_norm: ops::vector(file, "output_norm.weight", e)?,
            output,
            cache: vec![KvCache::default(); p.n_layer],
        })
    }
}

impl Forward for Llama<'_> {
    fn step(
        &mut self,
        run: &Run,
        tokens: &[i32],
        pos0: usize,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let p = &self.p;
        let num = &run.numerics;
        let (t, e, d) = (tokens.len(), p.n_embd, p.head_dim);
        let heads = Heads::of(p);
        let eps = run.norm_eps(p);
        let rope_base = if run.has(Fault::RopeBase) {
            p.rope_freq_base / 10.0
        } else {
            p.rope_freq_base
        };
        let rope_style = if run.has(Fault::RopeNeox) {
            RopeStyle::Neox
        } else {
            RopeStyle::Normal
        };
        let positions = run.positions(pos0, t);
        let blk = |layer: usize, kind: Kind| CheckpointName::layer(layer as u32, kind);

        let mut x = ops::embedding_rows(&self.token_embd, tokens)?;
        taps.put(CheckpointName::InpEmbd, &[t, e], &x)?;

        for (l, w) in self.layers.iter().enumerate() {
            let cur = norm_rows(num, &x, e, eps, &w.attn_norm);
            taps.put(blk(l, Kind::AttnNorm), &[t, e], &cur)?;

            let mut q = ops::matmul(num, &w.wq, &cur, t)?;
            taps.put(blk(l, Kind::Qcur), &[t, p.n_head, d], &q)?;
            let mut k = ops::matmul(num, &w.wk, &cur, t)?;
            taps.put(blk(l, Kind::Kcur), &[t, p.n_head_kv, d], &k)?;
            let v = ops::matmul(num, &w.wv, &cur, t)?;
            taps.put(blk(l, Kind::Vcur), &[t, p.n_head_kv, d], &v)?;

            ops::rope(
                num, &mut q, d, p.rope_dim, rope_base, rope_style, &positions,
            );
            taps.put(blk(l, Kind::QcurRope), &[t, p.n_head, d], &q)?;
            ops::rope(
                num, &mut k, d, p.rope_dim, rope_base, rope_style, &positions,
            );
            taps.put(blk(l, Kind::KcurRope), &[t, p.n_head_kv, d], &k)?;

            let kqv = run.attend(l, &mut self.cache[l], [&q, &k, &v], pos0, heads, taps)?;

            let attn_out = ops::matmul(num, &w.wo, &kqv, t)?;
            taps.put(blk(l, Kind::AttnOut), &[t, e], &attn_out)?;
            let ffn_inp = ops::add(&attn_out, &x);
            taps.put(blk(l, Kind::FfnInp), &[t, e], &ffn_inp)?;

            let cur = norm_rows(num, &ffn_inp, e, eps, &w.ffn_norm);
            taps.put(blk(l, Kind::FfnNorm), &[t, e], &cur)?;
            let (wg, wu) = if run.has(Fault::GateUpSwap) {
                (&w.ffn_up, &w.ffn_gate)
            } else {
                (&w.ffn_gate, &w.ffn_up)
            };
            let gate = ops::matmul(num, wg, &cur, t)?;
            taps.put(blk(l, Kind::FfnGate), &[t, p.n_ff], &gate)?;
            let up = ops::matmul(num, wu, &cur, t)?;
            taps.put(blk(l, Kind::FfnUp), &[t, p.n_ff], &up)?;
            let act = ops::swiglu(num, &gate, &up, p.n_ff);
            taps.put(blk(l, Kind::FfnSwiglu), &[t, p.n_ff], &act)?;
            let down = ops::matmul(num, &w.ffn_down, &act, t)?;
            taps.put(blk(l, Kind::FfnOut), &[t, e], &down)?;

            x = ops::add(&down, &ffn_inp);
            taps.put(blk(l, Kind::LOut), &[t, e], &x)?;
        }

        let norm = norm_rows(num, &x, e, eps, &self.output_norm);
        taps.put(CheckpointName::ResultNorm, &[t, e], &norm)?;
        let logits = ops::matmul(num, &self.output, &norm, t)?;
        taps.put(CheckpointName::ResultOutput, &[t, p.n_vocab], &logits)?;
        Ok(logits)
    }
}

/// RMSNorm of every row of `x`, times `weight`.
fn norm_rows(num: &Numerics, x: &[f32], n: usize, eps: f32, weight: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        num.rms_norm(src, eps, weight, dst);
    }
    out
}
