//! Qwen3 (llama.cpp's `src/models/qwen3.cpp`): the llama layer with a per-head RMSNorm of Q
//! and of K (each with its own `[head_dim]` weight) between the projection and RoPE, RoPE in
//! NeoX mode, and no Q/K/V biases in the published models (llama.cpp loads them when present,
//! and so does this). The head size may differ from `n_embd / n_head`
//! (`attention.key_length`). Each checkpoint is tapped at the line that computes it.

use super::blocks::{head_norm, norm_rows, EmbedHead, Qkv, SwiGlu};
use super::ops::{self, Heads, KvCache, Matrix, RopeStyle};
use super::rope::Rope;
use super::support::Weights;
use super::{Forward, ReferenceError, Run, Taps};
use crate::checkpoint::{CheckpointName, Kind};
use crate::gguf::{GgufFile, ModelParams};

struct Layer<'f> {
    attn_norm: Vec<f32>,
    qkv: Qkv<'f>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Matrix<'f>,
    ffn: SwiGlu<'f>,
}

pub struct Qwen3<'f> {
    p: ModelParams,
    rope: Rope,
    io: EmbedHead<'f>,
    layers: Vec<Layer<'f>>,
    cache: Vec<KvCache>,
}

impl<'f> Qwen3<'f> {
    pub fn load(file: &'f GgufFile, p: &ModelParams) -> Result<Self, ReferenceError> {
        let mut w = Weights::new(file, p.arch);
        let (e, d) = (p.n_embd, p.head_dim);
        let q_dim = p.n_head * d;
        let layers = (0..p.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}");
                Ok(Layer {
                    attn_norm: w.vector(&n("attn_norm.weight"), e)?,
                    qkv: Qkv::load(&mut w, i, p)?,
                    q_norm: w.vector(&n("attn_q_norm.weight"), d)?,
                    k_norm: w.vector(&n("attn_k_norm.weight"), d)?,
                    wo: w.matrix(&n("attn_output.weight"), q_dim, e)?,
                    ffn: SwiGlu::load(&mut w, i, p)?,
                })
            })
            .collect::<Result<Vec<_>, ReferenceError>>()?;
        let io = EmbedHead::load(&mut w, p)?;
        w.finish()?;
        Ok(Qwen3 {
            p: p.clone(),
            rope: Rope::new(p, RopeStyle::Neox, None),
            io,
            layers,
            cache: vec![KvCache::default(); p.n_layer],
        })
    }
}

impl Forward for Qwen3<'_> {
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
        let rope = run.rope(&self.rope);
        let positions = run.positions(pos0, t);
        let blk = |layer: usize, kind: Kind| CheckpointName::layer(layer as u32, kind);

        let mut x = self.io.embed(p, tokens, taps)?;

        for (l, w) in self.layers.iter().enumerate() {
            let cur = norm_rows(num, &x, eps, &w.attn_norm);
            taps.put(blk(l, Kind::AttnNorm), &[t, e], &cur)?;

            let [q, k, v] = w.qkv.apply(run, p, &cur, l, taps)?;
            let mut q = head_norm(run, q, eps, &w.q_norm);
            taps.put(blk(l, Kind::QcurNormed), &[t, p.n_head, d], &q)?;
            rope.apply(num, &mut q, d, &positions);
            taps.put(blk(l, Kind::QcurRope), &[t, p.n_head, d], &q)?;
            let mut k = head_norm(run, k, eps, &w.k_norm);
            taps.put(blk(l, Kind::KcurNormed), &[t, p.n_head_kv, d], &k)?;
            rope.apply(num, &mut k, d, &positions);
            taps.put(blk(l, Kind::KcurRope), &[t, p.n_head_kv, d], &k)?;

            let kqv = run.attend(l, &mut self.cache[l], [&q, &k, &v], pos0, heads, taps)?;

            let attn_out = ops::matmul(num, &w.wo, &kqv, t)?;
            taps.put(blk(l, Kind::AttnOut), &[t, e], &attn_out)?;
            let ffn_inp = ops::add(&attn_out, &x);
            taps.put(blk(l, Kind::FfnInp), &[t, e], &ffn_inp)?;

            let ffn_out = w.ffn.apply(run, p, &ffn_inp, l, taps)?;
            x = ops::add(&ffn_out, &ffn_inp);
            taps.put(blk(l, Kind::LOut), &[t, e], &x)?;
        }

        self.io.logits(run, p, &x, taps)
    }
}
