//! The exact dot product of a stored weight row with f32 activations.
//!
//! Weights are dequantized one block at a time into a stack buffer (bit-identical to ggml's
//! `to_float`), and each product `w * x` is formed in f64, where it is exact (24 + 24 bits of
//! significand, and the exponent range of f32 squared fits). The products are summed in
//! sixteen interleaved f64 partial sums (element `i` goes to sum `i % 16`), combined pairwise
//! at the end; the only roundings before the final conversion to f32 are those of the f64
//! additions. Because every product is exact, a fused multiply-add gives the same bits as a
//! multiply then an add, so the AVX2 accumulator below and the portable one agree exactly.

use super::dequant::{scalar_row, Block};
use super::fp::{bf16_to_f32, block_boundary, f16_to_f32};

const LANES: usize = 16;

#[inline(always)]
fn combine(a: &[f64; LANES]) -> f64 {
    let mut v = *a;
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            v[i] += v[i + width];
        }
        width /= 2;
    }
    v[0]
}

/// Adds `w[i] * x[i]` into partial sum `i % 16`; `w.len()` is a multiple of 16.
pub(crate) trait Accumulate {
    fn run(acc: &mut [f64; LANES], w: &[f32], x: &[f32]);
}

pub(crate) struct Portable;

impl Accumulate for Portable {
    #[inline(always)]
    fn run(acc: &mut [f64; LANES], w: &[f32], x: &[f32]) {
        for (wc, xc) in w.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += wc[l] as f64 * xc[l] as f64;
            }
        }
    }
}

/// The same sums with explicit AVX/FMA: four `__m256d` of four lanes each.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Accumulate for Avx2 {
    #[inline(always)]
    fn run(acc: &mut [f64; LANES], w: &[f32], x: &[f32]) {
        use std::arch::x86_64::*;
        let n = w.len().min(x.len()) / LANES * LANES;
        // SAFETY: only reached from functions compiled with AVX2 and FMA enabled (the `v3`
        // copy of the dispatcher, taken after a CPU feature check); every load reads 4 floats
        // at an offset below `n`, which is within both slices.
        unsafe {
            let mut a = [
                _mm256_loadu_pd(acc.as_ptr()),
                _mm256_loadu_pd(acc.as_ptr().add(4)),
                _mm256_loadu_pd(acc.as_ptr().add(8)),
                _mm256_loadu_pd(acc.as_ptr().add(12)),
            ];
            let (wp, xp) = (w.as_ptr(), x.as_ptr());
            let mut i = 0;
            while i < n {
                for (k, ak) in a.iter_mut().enumerate() {
                    let wv = _mm256_cvtps_pd(_mm_loadu_ps(wp.add(i + 4 * k)));
                    let xv = _mm256_cvtps_pd(_mm_loadu_ps(xp.add(i + 4 * k)));
                    *ak = _mm256_fmadd_pd(wv, xv, *ak);
                }
                i += LANES;
            }
            for (k, ak) in a.iter().enumerate() {
                _mm256_storeu_pd(acc.as_mut_ptr().add(4 * k), *ak);
            }
        }
    }
}

#[inline(always)]
pub(crate) fn blocks<B: Block, A: Accumulate>(w: &[u8], x: &[f32]) -> f64 {
    let mut buf = [0f32; 256];
    let mut acc = [0f64; LANES];
    for (b, xs) in w.chunks_exact(B::BYTES).zip(x.chunks_exact(B::QK)) {
        block_boundary();
        B::dequant(b, &mut buf);
        A::run(&mut acc, &buf[..B::QK], xs);
    }
    combine(&acc)
}

/// Rows of plain scalars (F32, F16, BF16), decoded by `get` in chunks of 64 elements.
#[inline(always)]
fn scalars<const W: usize, A: Accumulate>(
    w: &[u8],
    x: &[f32],
    get: impl Fn([u8; W]) -> f32 + Copy,
) -> f64 {
    let mut buf = [0f32; 64];
    let mut acc = [0f64; LANES];
    let full = x.len() / 64 * 64;
    for (wc, xc) in w[..full * W]
        .chunks_exact(64 * W)
        .zip(x[..full].chunks_exact(64))
    {
        scalar_row::<W>(wc, &mut buf, get);
        A::run(&mut acc, &buf, xc);
    }
    let rest = x.len() - full;
    scalar_row::<W>(&w[full * W..], &mut buf[..rest], get);
    for (i, (&wv, &xv)) in buf[..rest].iter().zip(&x[full..]).enumerate() {
        acc[i % LANES] += wv as f64 * xv as f64;
    }
    combine(&acc)
}

#[inline(always)]
pub(crate) fn f32_row<A: Accumulate>(w: &[u8], x: &[f32]) -> f64 {
    scalars::<4, A>(w, x, f32::from_le_bytes)
}

#[inline(always)]
pub(crate) fn f16_row<A: Accumulate>(w: &[u8], x: &[f32]) -> f64 {
    scalars::<2, A>(w, x, |b| f16_to_f32(u16::from_le_bytes(b)))
}

#[inline(always)]
pub(crate) fn bf16_row<A: Accumulate>(w: &[u8], x: &[f32]) -> f64 {
    scalars::<2, A>(w, x, |b| bf16_to_f32(u16::from_le_bytes(b)))
}
