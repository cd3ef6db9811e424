//! Gemma 3 (llama.cpp's `src/models/gemma3.cpp`): token embeddings times sqrt(n_embd); per
//! layer an RMSNorm, Q/K/V projections, a per-head RMSNorm of Q and of K, RoPE in NeoX mode,
//! the query times `1/sqrt(head_dim)` before attention (Gemma's `query_pre_attn_scalar`; the
//! scores are not scaled again), an RMSNorm of the attention output before the residual, and a
//! GELU-gated FFN between an RMSNorm before it and one after it; final RMSNorm, the output
//! matrix (tied to the embedding in the published models, separate when the file has one), and
//! the final logit soft-capping when the file sets one.
//!
//! Layers alternate as llama.cpp's loader sets them (`load_swa_pattern`): with
//! `attention.sliding_window` set, a layer is a sliding-window one unless it is the last of
//! each group of `attention.sliding_window_pattern` layers (6 when absent; a per-layer array
//! of booleans replaces the rule). A sliding-window layer's query at position `p` sees the keys
//! at `p - window + 1 ..= p` (`is_masked_swa`), and its RoPE uses `rope.freq_base_swa` (10000
//! when absent) without the file's RoPE scaling (`rope_freq_scale_train_swa = 1`); a global
//! layer sees every earlier key and uses `rope.freq_base` with the file's scaling (linear by 8
//! in Gemma 3 4B and larger). llama.cpp's converter stores the norm weights with Gemma's `1 +`
//! already added, so every norm multiplies by its weight as stored.

use super::blocks::{head_norm, norm_rows, EmbedHead, Qkv};
use super::ops::{self, Heads, KvCache, Matrix, RopeStyle};
use super::rope::Rope;
use super::support::Weights;
use super::{Fault, Forward, ReferenceError, Run, Taps};
use crate::checkpoint::{CheckpointName, Kind};
use crate::gguf::{GgufFile, MetaValue, ModelParams, RopeScaling, RopeScalingType};

/// llama.cpp's default `attention.sliding_window_pattern` for gemma3.
const DEFAULT_PATTERN: usize = 6;
/// llama.cpp's `rope_freq_base_train_swa` default.
const DEFAULT_LOCAL_BASE: f32 = 10000.0;

/// The gemma3 hyperparameters beyond [`ModelParams`], read as `llama_model_gemma3` reads them.
#[derive(Debug, Clone)]
pub struct Gemma3Params {
    /// `attention.sliding_window`; `None` when absent or 0 (every layer global).
    pub window: Option<usize>,
    /// Per layer: a sliding-window layer.
    pub is_swa: Vec<bool>,
    /// `rope.freq_base_swa`.
    pub local_base: f32,
    /// `final_logit_softcapping`; `None` when absent or 0.
    pub softcap: Option<f32>,
    /// The query scale: `1/sqrt(head_dim)`, or `1/sqrt(n_embd / n_head)` for the 62-layer
    /// (27B) model, as llama.cpp decides it by the layer count.
    pub query_scale: f32,
}

impl Gemma3Params {
    pub fn from_gguf(file: &GgufFile, p: &ModelParams) -> Result<Self, ReferenceError> {
        let key = |s: &str| format!("gemma3.{s}");
        let bad = |k: String, what: &str| ReferenceError::Unsupported(format!("{k}: {what}"));
        let uint = |k: String| -> Result<Option<usize>, ReferenceError> {
            match file.get(&k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| bad(k, "expected a non-negative integer")),
            }
        };
        let float = |k: String| -> Result<Option<f32>, ReferenceError> {
            match file.get(&k) {
                None => Ok(None),
                Some(v) => v
                    .as_f32()
                    .filter(|x| x.is_finite())
                    .map(Some)
                    .ok_or_else(|| bad(k, "expected a finite float")),
            }
        };
        let window = uint(key("attention.sliding_window"))?.filter(|&w| w > 0);
        let pattern_key = key("attention.sliding_window_pattern");
        let is_swa = match (window, file.get(&pattern_key)) {
            (None, _) => vec![false; p.n_layer],
            (Some(_), Some(MetaValue::Array(items))) => {
                if items.len() != p.n_layer {
                    return Err(bad(pattern_key, "per-layer array of another length"));
                }
                items
                    .iter()
                    .map(|b| {
                        b.as_bool()
                            .ok_or_else(|| bad(pattern_key.clone(), "expected booleans"))
                    })
                    .collect::<Result<_, _>>()?
            }
            (Some(_), _) => {
                let n = uint(pattern_key)?.unwrap_or(DEFAULT_PATTERN);
                (0..p.n_layer).map(|il| n == 0 || il % n < n - 1).collect()
            }
        };
        let local_base = match window {
            Some(_) => float(key("rope.freq_base_swa"))?.unwrap_or(DEFAULT_LOCAL_BASE),
            None => DEFAULT_LOCAL_BASE,
        };
        let softcap = float(key("final_logit_softcapping"))?.filter(|&c| c != 0.0);
        if p.rope_scaling.kind == RopeScalingType::Yarn {
            return Err(ReferenceError::Unsupported(
                "metadata key 'gemma3.rope.scaling.type' = yarn is not implemented by the \
                 reference for gemma3"
                    .into(),
            ));
        }
        let query_scale = if p.n_layer == 62 {
            1.0 / ((p.n_embd / p.n_head) as f32).sqrt()
        } else {
            1.0 / (p.head_dim as f32).sqrt()
        };
        Ok(Gemma3Params {
            window,
            is_swa,
            local_base,
            softcap,
            query_scale,
        })
    }
}

struct Layer<'f> {
    attn_norm: Vec<f32>,
    qkv: Qkv<'f>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Matrix<'f>,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Matrix<'f>,
    up: Matrix<'f>,
    down: Matrix<'f>,
    post_ffn_norm: Vec<f32>,
}

pub struct Gemma3<'f> {
    p: ModelParams,
    g: Gemma3Params,
    /// The global layers' RoPE: `rope.freq_base` and the file's scaling.
    rope_global: Rope,
    /// The sliding-window layers' RoPE: `rope.freq_base_swa`, no scaling.
    rope_local: Rope,
    io: EmbedHead<'f>,
    layers: Vec<Layer<'f>>,
    cache: Vec<KvCache>,
}

impl<'f> Gemma3<'f> {
    pub fn load(file: &'f GgufFile, p: &ModelParams) -> Result<Self, ReferenceError> {
        let g = Gemma3Params::from_gguf(file, p)?;
        let mut w = Weights::new(file, p.arch);
        let (e, d, ff) = (p.n_embd, p.head_dim, p.n_ff);
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
                    post_attn_norm: w.vector(&n("post_attention_norm.weight"), e)?,
                    ffn_norm: w.vector(&n("ffn_norm.weight"), e)?,
                    gate: w.matrix(&n("ffn_gate.weight"), e, ff)?,
                    up: w.matrix(&n("ffn_up.weight"), e, ff)?,
                    down: w.matrix(&n("ffn_down.weight"), ff, e)?,
                    post_ffn_norm: w.vector(&n("post_ffw_norm.weight"), e)?,
                })
            })
            .collect::<Result<Vec<_>, ReferenceError>>()?;
        let io = EmbedHead::load(&mut w, p)?;
        w.finish()?;
        let rope_global = Rope::new(p, RopeStyle::Neox, None);
        let rope_local = Rope {
            base: g.local_base,
            // freq_scale 1; the context's attn_factor still applies.
            scaling: RopeScaling {
                factor: 0.0,
                ..p.rope_scaling.clone()
            },
            ..rope_global.clone()
        };
        Ok(Gemma3 {
            p: p.clone(),
            g,
            rope_global,
            rope_local,
            io,
            layers,
            cache: vec![KvCache::default(); p.n_layer],
        })
    }
}

impl Forward for Gemma3<'_> {
    fn step(
        &mut self,
        run: &Run,
        tokens: &[i32],
        pos0: usize,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let (p, g) = (&self.p, &self.g);
        let num = &run.numerics;
        let (t, e, d, ff) = (tokens.len(), p.n_embd, p.head_dim, p.n_ff);
        let heads = Heads::of(p);
        let eps = run.norm_eps(p);
        let positions = run.positions(pos0, t);
        let blk = |layer: usize, kind: Kind| CheckpointName::layer(layer as u32, kind);

        // The embedding rows times sqrt(n_embd), in f32 (a MUL by a per-row scale input).
        let mut x = self.io.rows(tokens)?;
        if !run.has(Fault::NoEmbdScale) {
            let scale = (e as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= scale);
        }
        taps.put(CheckpointName::InpEmbd, &[t, e], &x)?;

        for (l, w) in self.layers.iter().enumerate() {
            let swa = g.is_swa[l];
            let rope = if swa && !run.has(Fault::LocalRopeBase) {
                run.rope(&self.rope_local)
            } else {
                run.rope(&self.rope_global)
            };
            let window = match (swa, run.has(Fault::NoSwa), run.has(Fault::SwaEverywhere)) {
                (_, true, _) => None,
                (_, _, true) => g.window,
                (true, _, _) => g.window,
                (false, _, _) => None,
            };

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

            // The query scaled before the product (a ggml_scale); the scores are not.
            let scale = run.attn_scale_of(g.query_scale);
            q.iter_mut().for_each(|v| *v *= scale);
            let qkv = [&q[..], &k[..], &v[..]];
            let kqv =
                run.attend_with(l, &mut self.cache[l], qkv, pos0, heads, 1.0, window, taps)?;

            let attn_out = ops::matmul(num, &w.wo, &kqv, t)?;
            taps.put(blk(l, Kind::AttnOut), &[t, e], &attn_out)?;
            let attn_post = if run.has(Fault::SkipPostNorm) {
                attn_out
            } else {
                norm_rows(num, &attn_out, eps, &w.post_attn_norm)
            };
            taps.put(blk(l, Kind::AttnPostNorm), &[t, e], &attn_post)?;
            let sa_out = ops::add(&attn_post, &x);
            taps.put(blk(l, Kind::FfnInp), &[t, e], &sa_out)?;

            let cur = norm_rows(num, &sa_out, eps, &w.ffn_norm);
            taps.put(blk(l, Kind::FfnNorm), &[t, e], &cur)?;
            let (wg, wu) = if run.has(Fault::GateUpSwap) {
                (&w.up, &w.gate)
            } else {
                (&w.gate, &w.up)
            };
            let gate = ops::matmul(num, wg, &cur, t)?;
            taps.put(blk(l, Kind::FfnGate), &[t, ff], &gate)?;
            let up = ops::matmul(num, wu, &cur, t)?;
            taps.put(blk(l, Kind::FfnUp), &[t, ff], &up)?;
            let act = ops::geglu(num, &gate, &up);
            taps.put(blk(l, Kind::FfnGeglu), &[t, ff], &act)?;
            let down = ops::matmul(num, &w.down, &act, t)?;
            taps.put(blk(l, Kind::FfnOut), &[t, e], &down)?;
            let ffn_post = norm_rows(num, &down, eps, &w.post_ffn_norm);
            taps.put(blk(l, Kind::FfnPostNorm), &[t, e], &ffn_post)?;
            x = ops::add(&ffn_post, &sa_out);
            taps.put(blk(l, Kind::LOut), &[t, e], &x)?;
        }

        self.io.logits_capped(run, p, &x, g.softcap, taps)
    }
}
