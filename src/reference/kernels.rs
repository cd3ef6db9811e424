//! The attention products of ggml mode (K·Q and V·P over f32 rows) with AVX2/FMA instructions.
//!
//! Each output is summed exactly as [`Numerics::attn_dot`](super::numerics::Numerics::attn_dot)
//! sums it: the same fused multiply-adds into the same lanes in the same order, and the same
//! horizontal sums. Speed comes from vector registers holding the lanes ggml's own code holds in
//! them, and from several independent outputs computed side by side; no sum is reordered, so the
//! results are the same bits.

use super::numerics::AttnKernel;
use crate::quant::GgmlType;

/// How one attention product is summed in ggml mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sum {
    /// llamafile's tinyBLAS: one 8-lane accumulator, then `hsum`.
    Tinyblas,
    /// `ggml_vec_dot_f32`: four 8-lane accumulators over steps of 32, an FMA tail.
    VecF32,
    /// `ggml_vec_dot_f16` on values that are exactly f16: as f32 over steps of 32, the tail in
    /// double.
    VecF16,
}

impl Sum {
    /// The summation of a ggml-mode attention kernel (`None` for exact mode).
    pub fn of(kernel: AttnKernel) -> Option<Sum> {
        match kernel {
            AttnKernel::ExactF64 => None,
            AttnKernel::Sgemm => Some(Sum::Tinyblas),
            AttnKernel::VecDot {
                ty: GgmlType::F16, ..
            } => Some(Sum::VecF16),
            AttnKernel::VecDot {
                ty: GgmlType::F32, ..
            } => Some(Sum::VecF32),
            AttnKernel::VecDot { .. } => None,
        }
    }
}

/// Whether the AVX2/FMA/F16C kernels can run on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
pub use avx2::{scores_row, softmax_row, swiglu_row, weighted_row};

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Sum;
    use crate::reference::numerics::{softmax_ggml, swiglu_ggml};
    use std::arch::x86_64::*;

    /// `hsum_float_8`: high half plus low half, then `(0 + 2) + (1 + 3)`. The reductions below
    /// are those of `quant::vecdot` (`hsum8`, `reduce4x8`), in registers where no scalar tail
    /// comes after them.
    #[inline(always)]
    fn hsum8(a: &[f32; 8]) -> f32 {
        let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
        (r[0] + r[2]) + (r[1] + r[3])
    }

    #[inline(always)]
    unsafe fn lanes(v: __m256) -> [f32; 8] {
        let mut a = [0f32; 8];
        _mm256_storeu_ps(a.as_mut_ptr(), v);
        a
    }

    /// [`hsum8`] in registers: `hi + lo`, then `(0 + 2) + (1 + 3)`, the same additions.
    #[inline(always)]
    unsafe fn hsum8_v(a: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
        let m = _mm_add_ps(r, _mm_movehl_ps(r, r));
        _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
    }

    /// `reduce4x8` in registers: `(s0 + s2) + (s1 + s3)`, `lo + hi`, then two `hadd`s (as
    /// `GGML_F32x8_REDUCE` itself), the same additions.
    #[inline(always)]
    unsafe fn reduce4x8_v(s: &[__m256; 4]) -> f32 {
        let v = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let h = _mm_hadd_ps(t0, t0);
        _mm_cvtss_f32(_mm_hadd_ps(h, h))
    }

    /// tinyBLAS for one output: `acc[i % 8] = fma(x[i], y[i], acc[i % 8])`, then `hsum8`.
    #[inline(always)]
    unsafe fn tinyblas(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let whole = n / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < whole {
            let a = _mm256_loadu_ps(x.as_ptr().add(i));
            let b = _mm256_loadu_ps(y.as_ptr().add(i));
            acc = _mm256_fmadd_ps(a, b, acc);
            i += 8;
        }
        if whole == n {
            return hsum8_v(acc);
        }
        let mut acc = lanes(acc);
        for i in whole..n {
            acc[i - whole] = x[i].mul_add(y[i], acc[i - whole]);
        }
        hsum8(&acc)
    }

    /// tinyBLAS for eight outputs sharing `x`: `ys` holds eight rows of `len` at a stride of
    /// `len`. Each output as [`tinyblas`].
    #[inline(always)]
    unsafe fn tinyblas8(x: &[f32], ys: &[f32], len: usize) -> [f32; 8] {
        let n = x.len().min(len);
        let whole = n / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 8];
        let base = ys.as_ptr();
        let mut i = 0;
        while i < whole {
            let a = _mm256_loadu_ps(x.as_ptr().add(i));
            for (k, acc) in acc.iter_mut().enumerate() {
                let b = _mm256_loadu_ps(base.add(k * len + i));
                *acc = _mm256_fmadd_ps(a, b, *acc);
            }
            i += 8;
        }
        let mut out = [0f32; 8];
        for (k, o) in out.iter_mut().enumerate() {
            let mut l = lanes(acc[k]);
            let y = &ys[k * len..][..len];
            for i in whole..n {
                l[i - whole] = x[i].mul_add(y[i], l[i - whole]);
            }
            *o = hsum8(&l);
        }
        out
    }

    /// The four 8-lane accumulators of `ggml_vec_dot_f32/f16` over the whole steps of 32.
    #[inline(always)]
    unsafe fn chunks32(x: &[f32], y: &[f32], np: usize) -> [__m256; 4] {
        let mut s = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < np {
            for (j, s) in s.iter_mut().enumerate() {
                let a = _mm256_loadu_ps(x.as_ptr().add(i + 8 * j));
                let b = _mm256_loadu_ps(y.as_ptr().add(i + 8 * j));
                *s = _mm256_fmadd_ps(a, b, *s);
            }
            i += 32;
        }
        s
    }

    #[inline(always)]
    unsafe fn vec_f32(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len();
        let np = n & !31;
        let mut sumf = reduce4x8_v(&chunks32(x, y, np));
        for i in np..n {
            sumf = x[i].mul_add(y[i], sumf);
        }
        sumf
    }

    #[inline(always)]
    unsafe fn vec_f16(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len();
        let np = n & !31;
        let mut sumf = reduce4x8_v(&chunks32(x, y, np)) as f64;
        for i in np..n {
            sumf += (x[i] * y[i]) as f64;
        }
        sumf as f32
    }

    #[inline(always)]
    unsafe fn dot(sum: Sum, x: &[f32], y: &[f32]) -> f32 {
        match sum {
            Sum::Tinyblas => tinyblas(x, y),
            Sum::VecF32 => vec_f32(x, y),
            Sum::VecF16 => vec_f16(x, y),
        }
    }

    /// `scores[f] = query · key(f)` for the first `scores.len()` cells, key `f` being
    /// `keys[f * stride + offset..][..query.len()]`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`super::available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scores_row(
        sum: Sum,
        query: &[f32],
        keys: &[f32],
        stride: usize,
        offset: usize,
        scores: &mut [f32],
    ) {
        let d = query.len();
        for (f, s) in scores.iter_mut().enumerate() {
            *s = dot(sum, query, &keys[f * stride + offset..][..d]);
        }
    }

    /// `out[j] = p · columns[j]` for the `out.len()` rows of `columns` (each `p.len()` long,
    /// back to back).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`super::available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn weighted_row(sum: Sum, p: &[f32], columns: &[f32], out: &mut [f32]) {
        let len = p.len();
        let mut j = 0;
        if sum == Sum::Tinyblas {
            while j + 8 <= out.len() {
                let r = tinyblas8(p, &columns[j * len..][..8 * len], len);
                out[j..j + 8].copy_from_slice(&r);
                j += 8;
            }
        }
        while j < out.len() {
            out[j] = dot(sum, p, &columns[j * len..][..len]);
            j += 1;
        }
    }

    /// ggml's softmax of one row (`Numerics::softmax_masked` in ggml mode).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`super::available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn softmax_row(row: &mut [f32], visible: usize, scale: f32) {
        softmax_ggml(row, visible, scale);
    }

    /// ggml's SwiGLU of one row (`Numerics::swiglu_row` in ggml mode).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`super::available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn swiglu_row(gate: &[f32], up: &[f32], out: &mut [f32]) {
        swiglu_ggml(gate, up, out);
    }
}
