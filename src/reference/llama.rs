//! The llama family (llama.cpp's `src/models/llama.cpp`): RMSNorm, Q/K/V projections (with
//! biases when the file has them), RoPE in normal (adjacent-pair) mode with the file's
//! frequency factors (`rope_freqs.weight`, Llama 3.x) and scaling (linear, YaRN),
//! grouped-query attention over a KV cache, SwiGLU FFN, tied or separate output matrix. Each
//! checkpoint is tapped at the line that computes it.

use super::blocks::{norm_rows, EmbedHead, Qkv, SwiGlu};
use super::ops::{self, Heads, KvCache, Matrix, RopeStyle};
use super::rope::Rope;
use super::support::Weights;
use super::{Forward, ReferenceError, Run, Taps};
use crate::checkpoint::{CheckpointName, Kind};
use crate::gguf::{GgufFile, ModelParams};

struct Layer<'f> {
    attn_norm: Vec<f32>,
    qkv: Qkv<'f>,
    wo: Matrix<'f>,
    ffn: SwiGlu<'f>,
}

pub struct Llama<'f> {
    p: ModelParams,
    rope: Rope,
    io: EmbedHead<'f>,
    layers: Vec<Layer<'f>>,
    cache: Vec<KvCache>,
}

impl<'f> Llama<'f> {
    pub fn load(file: &'f GgufFile, p: &ModelParams) -> Result<Self, ReferenceError> {
        let mut w = Weights::new(file, p.arch);
        let e = p.n_embd;
        let q_dim = p.n_head * p.head_dim;
        let layers = (0..p.n_layer)
            .map(|i| {
                Ok(Layer {
                    attn_norm: w.vector(&format!("blk.{i}.attn_norm.weight"), e)?,
                    qkv: Qkv::load(&mut w, i, p)?,
                    wo: w.matrix(&format!("blk.{i}.attn_output.weight"), q_dim, e)?,
                    ffn: SwiGlu::load(&mut w, i, p)?,
                })
            })
            .collect::<Result<Vec<_>, ReferenceError>>()?;
        // One tensor for every layer (llama.cpp duplicates it per layer).
        let freq_factors = w.opt_f32_vector("rope_freqs.weight", p.rope_dim / 2)?;
        let io = EmbedHead::load(&mut w, p)?;
        w.finish()?;
        Ok(Llama {
            p: p.clone(),
            rope: Rope::new(p, RopeStyle::Normal, freq_factors),
            io,
            layers,
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
        let rope = run.rope(&self.rope);
        let positions = run.positions(pos0, t);
        let blk = |layer: usize, kind: Kind| CheckpointName::layer(layer as u32, kind);

        let mut x = self.io.embed(p, tokens, taps)?;

        for (l, w) in self.layers.iter().enumerate() {
            let cur = norm_rows(num, &x, eps, &w.attn_norm);
            taps.put(blk(l, Kind::AttnNorm), &[t, e], &cur)?;

            let [mut q, mut k, v] = w.qkv.apply(run, p, &cur, l, taps)?;
            rope.apply(num, &mut q, d, &positions);
            taps.put(blk(l, Kind::QcurRope), &[t, p.n_head, d], &q)?;
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
