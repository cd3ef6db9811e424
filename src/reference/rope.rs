//! Rotary position embedding as llama.cpp applies it with `ggml_rope_ext`: a base frequency
//! per rotated pair, optionally divided by a per-pair frequency factor (`rope_freqs.weight`,
//! Llama 3.x), linear interpolation (`freq_scale`), YaRN (a ramp between interpolated and
//! extrapolated angles over the correction dimensions, and a magnitude scale), and
//! `attn_factor` multiplying every cos and sin.
//!
//! The context-level values come from llama.cpp's `llama_context` constructor
//! (src/llama-context.cpp): `freq_scale = 1/factor` (1 for scaling type `none` or no factor),
//! `ext_factor = 1` for YaRN and 0 otherwise, and for YaRN
//! `attn_factor = get_mscale(factor) / (1 + 0.1 ln factor)` before it is multiplied by the
//! file's `rope.scaling.attn_factor`; `beta_fast = 32`, `beta_slow = 1` (llama.cpp's defaults;
//! the llama and qwen loaders read no key for them).
//!
//! `ggml` mode mirrors the f32 arithmetic of ggml-cpu/ops.cpp (`ggml_rope_cache_init`,
//! `rope_yarn`, `rope_yarn_ramp`) and ggml.c (`ggml_rope_yarn_corr_dims`), with the
//! multiply-adds GCC contracts into FMAs; `exact` computes the same formulas in f64.

use super::numerics::{Mode, Numerics};
use super::ops::RopeStyle;
use crate::gguf::{ModelParams, RopeScaling, RopeScalingType};

/// llama.cpp's `yarn_beta_fast` and `yarn_beta_slow` defaults (llama-hparams.h).
const BETA_FAST: f32 = 32.0;
const BETA_SLOW: f32 = 1.0;

/// Everything one RoPE application needs, fixed for a model.
#[derive(Debug, Clone)]
pub struct Rope {
    /// Rotated dimensions per head.
    pub n_dims: usize,
    pub base: f32,
    pub style: RopeStyle,
    pub scaling: RopeScaling,
    /// `rope_freqs.weight`: one divisor per rotated pair.
    pub freq_factors: Option<Vec<f32>>,
}

impl Rope {
    pub fn new(p: &ModelParams, style: RopeStyle, freq_factors: Option<Vec<f32>>) -> Rope {
        Rope {
            n_dims: p.rope_dim,
            base: p.rope_freq_base,
            style,
            scaling: p.rope_scaling.clone(),
            freq_factors,
        }
    }

    /// Rotates the first `n_dims` elements of every head of `x` (`[t, n_heads, head_dim]`),
    /// token `i` at position `positions[i]`.
    pub fn apply(&self, num: &Numerics, x: &mut [f32], head_dim: usize, positions: &[usize]) {
        let per_token = x.len() / positions.len();
        let half = self.n_dims / 2;
        for (tok, &pos) in x.chunks_exact_mut(per_token).zip(positions) {
            let angles = self.angles(num.mode, pos);
            for head in tok.chunks_exact_mut(head_dim) {
                for (i, &cs) in angles.iter().enumerate() {
                    let (a, b) = match self.style {
                        RopeStyle::Normal => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    (head[a], head[b]) = num.rotate(head[a], head[b], cs);
                }
            }
        }
    }

    /// `(cos, sin)` of every rotated pair at `pos`, times the magnitude scale.
    pub fn angles(&self, mode: Mode, pos: usize) -> Vec<(f32, f32)> {
        match mode {
            Mode::Ggml => self.angles_ggml(pos),
            Mode::Exact => self.angles_exact(pos),
        }
    }

    fn factor(&self, i: usize) -> f32 {
        self.freq_factors.as_ref().map_or(1.0, |f| f[i])
    }

    /// `ggml_rope_cache_init` and `rope_yarn` in f32.
    fn angles_ggml(&self, pos: usize) -> Vec<(f32, f32)> {
        let c = ContextF32::new(&self.scaling);
        let n_dims = self.n_dims;
        let theta_scale = self.base.powf(-2.0 / n_dims as f32);
        let corr = corr_dims_f32(n_dims, self.scaling.n_ctx_orig, self.base);
        let mut theta = pos as f32;
        (0..n_dims / 2)
            .map(|i| {
                let theta_extrap = theta / self.factor(i);
                let theta_interp = c.freq_scale * theta_extrap;
                let mut mscale = c.attn_factor;
                let angle = if c.ext_factor != 0.0 {
                    let ramp_mix = ramp_f32(corr, 2 * i) * c.ext_factor;
                    // `theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix`, contracted.
                    let t = theta_interp.mul_add(1.0 - ramp_mix, theta_extrap * ramp_mix);
                    // `mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale)`, contracted.
                    mscale *= 0.1f32.mul_add((1.0 / c.freq_scale).ln(), 1.0);
                    t
                } else {
                    theta_interp
                };
                theta *= theta_scale;
                (angle.cos() * mscale, angle.sin() * mscale)
            })
            .collect()
    }

    /// The same formulas in f64.
    fn angles_exact(&self, pos: usize) -> Vec<(f32, f32)> {
        let s = &self.scaling;
        let n_dims = self.n_dims;
        let (factor, ext_factor) = context_scale(s);
        let freq_scale = factor.map_or(1.0, |f| 1.0 / f64::from(f));
        let mut attn_factor = 1.0f64;
        if ext_factor {
            let factor = 1.0 / freq_scale;
            let mscale = if factor <= 1.0 {
                1.0
            } else {
                0.1 * factor.ln() + 1.0
            };
            attn_factor = mscale / (1.0 + 0.1 * factor.ln());
        }
        attn_factor *= f64::from(s.attn_factor);
        let base = f64::from(self.base);
        let corr = corr_dims_f64(n_dims, s.n_ctx_orig, base);
        (0..n_dims / 2)
            .map(|i| {
                let theta_extrap = pos as f64 * base.powf(-2.0 * i as f64 / n_dims as f64)
                    / f64::from(self.factor(i));
                let theta_interp = freq_scale * theta_extrap;
                let mut mscale = attn_factor;
                let angle = if ext_factor {
                    let y = (i as f64 - corr[0]) / (corr[1] - corr[0]).max(0.001);
                    let ramp_mix = 1.0 - y.clamp(0.0, 1.0);
                    mscale *= 1.0 + 0.1 * (1.0 / freq_scale).ln();
                    theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix
                } else {
                    theta_interp
                };
                ((angle.cos() * mscale) as f32, (angle.sin() * mscale) as f32)
            })
            .collect()
    }
}

/// The scaling factor (`freq_scale = 1/factor`; None for no scaling) and whether YaRN's
/// extrapolation mix is on, as `llama_context` sets them from the file.
fn context_scale(s: &RopeScaling) -> (Option<f32>, bool) {
    let scaled = s.kind != RopeScalingType::None && s.factor != 0.0;
    (scaled.then_some(s.factor), s.kind == RopeScalingType::Yarn)
}

/// The context-level RoPE values in llama.cpp's f32 arithmetic.
struct ContextF32 {
    freq_scale: f32,
    ext_factor: f32,
    attn_factor: f32,
}

impl ContextF32 {
    fn new(s: &RopeScaling) -> ContextF32 {
        let (factor, yarn) = context_scale(s);
        // hparams.rope_freq_scale_train = 1.0f/ropescale.
        let freq_scale = factor.map_or(1.0, |f| 1.0 / f);
        let ext_factor = if yarn { 1.0f32 } else { 0.0 };
        let mut attn_factor = 1.0f32;
        if ext_factor != 0.0 {
            let factor = 1.0 / freq_scale;
            // get_mscale(factor, 1.0f): `0.1f * mscale * logf(scale) + 1.0f`, contracted.
            attn_factor = if factor <= 1.0 {
                1.0
            } else {
                (0.1f32 * 1.0).mul_add(factor.ln(), 1.0)
            };
            attn_factor *= 1.0 / 0.1f32.mul_add(factor.ln(), 1.0);
        }
        attn_factor *= s.attn_factor;
        ContextF32 {
            freq_scale,
            ext_factor,
            attn_factor,
        }
    }
}

/// `ggml_rope_yarn_corr_dim` in f32.
fn corr_dim_f32(n_dims: usize, n_ctx_orig: usize, n_rot: f32, base: f32) -> f32 {
    n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
        / (2.0 * base.ln())
}

/// `ggml_rope_yarn_corr_dims` in f32.
fn corr_dims_f32(n_dims: usize, n_ctx_orig: usize, base: f32) -> [f32; 2] {
    let start = corr_dim_f32(n_dims, n_ctx_orig, BETA_FAST, base).floor();
    let end = corr_dim_f32(n_dims, n_ctx_orig, BETA_SLOW, base).ceil();
    [start.max(0.0), end.min(n_dims as f32 - 1.0)]
}

fn corr_dims_f64(n_dims: usize, n_ctx_orig: usize, base: f64) -> [f64; 2] {
    let dim = |beta: f32| {
        n_dims as f64 * (n_ctx_orig as f64 / (f64::from(beta) * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    [
        dim(BETA_FAST).floor().max(0.0),
        dim(BETA_SLOW).ceil().min(n_dims as f64 - 1.0),
    ]
}

/// `rope_yarn_ramp(low, high, i0)`: `i0 / 2` in integers, the rest in f32.
fn ramp_f32([low, high]: [f32; 2], i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling, factors: Option<Vec<f32>>) -> Rope {
        Rope {
            n_dims: 64,
            base: 10000.0,
            style: RopeStyle::Normal,
            scaling,
            freq_factors: factors,
        }
    }

    #[test]
    fn unscaled_rope_is_the_plain_formula_in_both_modes() {
        let r = rope(RopeScaling::unscaled(4096), None);
        for mode in [Mode::Ggml, Mode::Exact] {
            let a = r.angles(mode, 7);
            for (i, &(c, s)) in a.iter().enumerate() {
                let theta = 7.0 * 10000f64.powf(-2.0 * i as f64 / 64.0);
                assert!((f64::from(c) - theta.cos()).abs() < 1e-5, "{mode:?} {i}");
                assert!((f64::from(s) - theta.sin()).abs() < 1e-5, "{mode:?} {i}");
            }
        }
    }

    #[test]
    fn factors_and_linear_scaling_divide_the_angle() {
        let mut s = RopeScaling::unscaled(4096);
        s.factor = 4.0;
        let linear = rope(s, None).angles(Mode::Exact, 40);
        let factors =
            rope(RopeScaling::unscaled(4096), Some(vec![4.0; 32])).angles(Mode::Exact, 40);
        let plain = rope(RopeScaling::unscaled(4096), None).angles(Mode::Exact, 10);
        for i in 0..32 {
            assert!((linear[i].0 - plain[i].0).abs() < 1e-6);
            assert!((factors[i].1 - plain[i].1).abs() < 1e-6);
        }
    }

    #[test]
    fn yarn_modes_agree_and_keep_high_frequencies() {
        let s = RopeScaling {
            kind: RopeScalingType::Yarn,
            factor: 4.0,
            attn_factor: 1.0,
            n_ctx_orig: 4096,
        };
        let r = rope(s, None);
        let (g, e) = (r.angles(Mode::Ggml, 33), r.angles(Mode::Exact, 33));
        for (a, b) in g.iter().zip(&e) {
            assert!((a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4);
        }
        // Pair 0 is below the correction range: extrapolated (the plain angle), scaled by
        // 1 + 0.1 ln 4.
        let m = 1.0 + 0.1 * 4f64.ln();
        let c = (33f64).cos() * m;
        assert!((f64::from(e[0].0) - c).abs() < 1e-6);
    }
}
