//! GPT-2 (llama.cpp's `src/models/gpt2.cpp`): learned position embedding, LayerNorm with bias,
//! fused QKV projection with bias, multi-head attention over a KV cache, GELU FFN, biases
//! throughout, tied or separate output matrix. Each checkpoint is tapped at the line that
//! computes it.

use super::numerics::Numerics;
use super::ops::{self, Heads, KvCache, Matrix};
use super::support::Weights;
use super::{Forward, ReferenceError, Run, Taps};
use crate::checkpoint::{CheckpointName, Kind};
use crate::gguf::{GgufFile, ModelParams};

/// A LayerNorm's weight and bias.
struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    fn load(w: &mut Weights<'_>, prefix: &str, n: usize) -> Result<Norm, ReferenceError> {
        Ok(Norm {
            w: w.vector(&format!("{prefix}.weight"), n)?,
            b: w.vector(&format!("{prefix}.bias"), n)?,
        })
    }

    fn rows(&self, num: &Numerics, x: &[f32], eps: f32) -> Vec<f32> {
        let n = self.w.len();
        let mut out = vec![0f32; x.len()];
        for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            num.layer_norm(src, eps, &self.w, &self.b, dst);
        }
        out
    }
}

/// A projection with a bias.
struct Linear<'f> {
    w: Matrix<'f>,
    b: Vec<f32>,
}

impl<'f> Linear<'f> {
    fn load(
        w: &mut Weights<'f>,
        prefix: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Self, ReferenceError> {
        Ok(Linear {
            w: w.matrix(&format!("{prefix}.weight"), n_in, n_out)?,
            b: w.vector(&format!("{prefix}.bias"), n_out)?,
        })
    }

    fn apply(&self, num: &Numerics, x: &[f32], t: usize) -> Result<Vec<f32>, ReferenceError> {
        let mut y = ops::matmul(num, &self.w, x, t)?;
        ops::add_bias(&mut y, &self.b);
        Ok(y)
    }
}

struct Layer<'f> {
    attn_norm: Norm,
    qkv: Linear<'f>,
    attn_output: Linear<'f>,
    ffn_norm: Norm,
    ffn_up: Linear<'f>,
    ffn_down: Linear<'f>,
}

pub struct Gpt2<'f> {
    p: ModelParams,
    token_embd: Matrix<'f>,
    position_embd: Matrix<'f>,
    layers: Vec<Layer<'f>>,
    output_norm: Norm,
    output: Matrix<'f>,
    cache: Vec<KvCache>,
}

impl<'f> Gpt2<'f> {
    pub fn load(file: &'f GgufFile, p: &ModelParams) -> Result<Self, ReferenceError> {
        let mut w = Weights::new(file, p.arch);
        let (e, ff, v) = (p.n_embd, p.n_ff, p.n_vocab);
        let qkv_dim = p.n_head * p.head_dim + 2 * p.n_head_kv * p.head_dim;
        let layers = (0..p.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}");
                Ok(Layer {
                    attn_norm: Norm::load(&mut w, &n("attn_norm"), e)?,
                    qkv: Linear::load(&mut w, &n("attn_qkv"), e, qkv_dim)?,
                    attn_output: Linear::load(&mut w, &n("attn_output"), p.n_head * p.head_dim, e)?,
                    ffn_norm: Norm::load(&mut w, &n("ffn_norm"), e)?,
                    ffn_up: Linear::load(&mut w, &n("ffn_up"), e, ff)?,
                    ffn_down: Linear::load(&mut w, &n("ffn_down"), ff, e)?,
                })
            })
            .collect::<Result<Vec<_>, ReferenceError>>()?;
        let token_embd = w.matrix("token_embd.weight", e, v)?;
        let output = if p.tied_output {
            token_embd
        } else {
            w.matrix("output.weight", e, v)?
        };
        let position_embd = w.matrix("position_embd.weight", e, p.n_ctx_train)?;
        let output_norm = Norm::load(&mut w, "output_norm", e)?;
        w.finish()?;
        Ok(Gpt2 {
            p: p.clone(),
            token_embd,
            position_embd,
            layers,
            output_norm,
            output,
            cache: vec![KvCache::default(); p.n_layer],
        })
    }
}

impl Forward for Gpt2<'_> {
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
        let (q_dim, kv_dim) = (p.n_head * d, p.n_head_kv * d);
        let heads = Heads::of(p);
        let eps = run.norm_eps(p);
        let blk = |layer: usize, kind: Kind| CheckpointName::layer(layer as u32, kind);

        let positions = run.positions(pos0, t);
        if positions.last().is_some_and(|&last| last >= p.n_ctx_train) {
            return Err(ReferenceError::Context {
                tokens: pos0 + t,
                n_ctx: p.n_ctx_train,
            });
        }
        let positions: Vec<i32> = positions.iter().map(|&i| i as i32).collect();
        let x_tok = ops::embedding_rows(&self.token_embd, tokens)?;
        let x_pos = ops::embedding_rows(&self.position_embd, &positions)?;
        let mut x = ops::add(&x_tok, &x_pos);
        taps.put(CheckpointName::InpEmbd, &[t, e], &x)?;

        for (l, w) in self.layers.iter().enumerate() {
            let cur = w.attn_norm.rows(num, &x, eps);
            taps.put(blk(l, Kind::AttnNorm), &[t, e], &cur)?;

            let qkv = w.qkv.apply(num, &cur, t)?;
            taps.put(blk(l, Kind::Qkv), &[t, q_dim + 2 * kv_dim], &qkv)?;
            let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for row in qkv.chunks_exact(q_dim + 2 * kv_dim) {
                q.extend_from_slice(&row[..q_dim]);
                k.extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                v.extend_from_slice(&row[q_dim + kv_dim..]);
            }
            taps.put(blk(l, Kind::Qcur), &[t, p.n_head, d], &q)?;
            taps.put(blk(l, Kind::Kcur), &[t, p.n_head_kv, d], &k)?;
            taps.put(blk(l, Kind::Vcur), &[t, p.n_head_kv, d], &v)?;

            let kqv = run.attend(l, &mut self.cache[l], [&q, &k, &v], pos0, heads, taps)?;

            let attn_out = w.attn_output.apply(num, &kqv, t)?;
            taps.put(blk(l, Kind::AttnOut), &[t, e], &attn_out)?;
            let ffn_inp = ops::add(&attn_out, &x);
            taps.put(blk(l, Kind::FfnInp), &[t, e], &ffn_inp)?;

            let cur = w.ffn_norm.rows(num, &ffn_inp, eps);
            taps.put(blk(l, Kind::FfnNorm), &[t, e], &cur)?;
            let up = w.ffn_up.apply(num, &cur, t)?;
            taps.put(blk(l, Kind::FfnUp), &[t, p.n_ff], &up)?;
            let act: Vec<f32> = up.iter().map(|&u| num.gelu(u)).collect();
            taps.put(blk(l, Kind::FfnGelu), &[t, p.n_ff], &act)?;
            let down = w.ffn_down.apply(num, &act, t)?;
            taps.put(blk(l, Kind::FfnOut), &[t, e], &down)?;

            x = ops::add(&down, &ffn_inp);
            taps.put(blk(l, Kind::LOut), &[t, e], &x)?;
        }

        let norm = self.output_norm.rows(num, &x, eps);
        taps.put(CheckpointName::ResultNorm, &[t, e], &norm)?;
        let logits = ops::matmul(num, &self.output, &norm, t)?;
        taps.put(CheckpointName::ResultOutput, &[t, p.n_vocab], &logits)?;
        Ok(logits)
    }
}
