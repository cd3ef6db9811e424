//! The exact dot product of a stored weight row with f32 activations.
//!
//! Weights are dequantized one block at a time into a stack buffer (bit-identical to ggml's
//! `to_float`), and each product `w * x` is formed in f64, where it is exact (24 + 24 bits of
//! significand). The products are summed in eight interleaved f64 partial sums (element `i`
//! goes to sum `i % 8`), combined pairwise at the end; the only rounding before the final
//! conversion to f32 is that of the f64 additions.

use super::dequant::Block;
use super::fp::f16_to_f32;

#[inline(always)]
fn combine(acc: &[f64; 8]) -> f64 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

#[inline(always)]
fn accumulate(acc: &mut [f64; 8], w: &[f32], x: &[f32]) {
    for (wc, xc) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += wc[l] as f64 * xc[l] as f64;
        }
    }
}

#[inline(always)]
pub(crate) fn blocks<B: Block>(w: &[u8], x: &[f32]) -> f64 {
    let mut buf = [0f32; 256];
    let mut acc = [0f64; 8];
    for (b, xs) in w.chunks_exact(B::BYTES).zip(x.chunks_exact(B::QK)) {
        B::dequant(b, &mut buf);
        accumulate(&mut acc, &buf[..B::QK], xs);
    }
    combine(&acc)
}

/// Rows of plain scalars (F32, F16, BF16), decoded by `get`, in chunks of 64 elements.
#[inline(always)]
fn scalars(w: &[u8], x: &[f32], width: usize, get: impl Fn(&[u8]) -> f32) -> f64 {
    let mut buf = [0f32; 64];
    let mut acc = [0f64; 8];
    let full = x.len() / 64 * 64;
    for (wc, xc) in w[..full * width]
        .chunks_exact(64 * width)
        .zip(x[..full].chunks_exact(64))
    {
        for (o, b) in buf.iter_mut().zip(wc.chunks_exact(width)) {
            *o = get(b);
        }
        accumulate(&mut acc, &buf, xc);
    }
    for (i, (b, &xv)) in w[full * width..]
        .chunks_exact(width)
        .zip(&x[full..])
        .enumerate()
    {
        acc[i % 8] += get(b) as f64 * xv as f64;
    }
    combine(&acc)
}

#[inline(always)]
pub(crate) fn f32_row(w: &[u8], x: &[f32]) -> f64 {
    scalars(w, x, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline(always)]
pub(crate) fn f16_row(w: &[u8], x: &[f32]) -> f64 {
    scalars(w, x, 2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
}

#[inline(always)]
pub(crate) fn bf16_row(w: &[u8], x: &[f32]) -> f64 {
    scalars(w, x, 2, |b| {
        f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
    })
}
