//! The CPU backend's activation quantizers (`type_traits_cpu[ty].from_float`) as compiled for
//! x86-64-v3, i.e. the AVX2 paths of ggml-cpu/arch/x86/quants.c and ggml-cpu.c.
//!
//! They differ from the `_ref` quantizers in ways that change bits: the block maximum is a
//! tree of `maxps` (NaN handling follows the operand order), the scale is `127/max` rather than
//! `1/(max/127)`, rounding is `_mm256_round_ps` (ties to even, not `roundf`'s ties away), the
//! int conversion saturates through `packs` (NaN becomes -128), and Q8_1's `s` sums the
//! 32-bit values before saturation.

use super::fp::{cvtt_i32, f32_to_f16_ggml, f32_to_f16_hw, maxps};

/// max |x| over a 32-float block, reduced in the lane order of the AVX code.
#[inline(always)]
fn block_absmax(x: &[f32]) -> f32 {
    let x = &x[..32];
    let mut m = [0f32; 8];
    for l in 0..8 {
        let mut a = x[l].abs();
        a = maxps(a, x[8 + l].abs());
        a = maxps(a, x[16 + l].abs());
        a = maxps(a, x[24 + l].abs());
        m[l] = a;
    }
    let m4 = [
        maxps(m[4], m[0]),
        maxps(m[5], m[1]),
        maxps(m[6], m[2]),
        maxps(m[7], m[3]),
    ];
    let m2 = [maxps(m4[0], m4[2]), maxps(m4[1], m4[3])];
    maxps(m2[0], m2[1])
}

/// Scales, rounds and converts one block: returns the 32-bit integers before saturation.
#[inline(always)]
fn block_ints(x: &[f32], id: f32) -> [i32; 32] {
    let mut q = [0i32; 32];
    for (o, &v) in q.iter_mut().zip(&x[..32]) {
        *o = cvtt_i32((v * id).round_ties_even());
    }
    q
}

/// `packs_epi32` then `packs_epi16`: saturation to i8.
#[inline(always)]
fn sat_i8(v: i32) -> u8 {
    v.clamp(-128, 127) as i8 as u8
}

/// `quantize_row_q8_0`, AVX2 path.
#[inline(always)]
pub(crate) fn q8_0(x: &[f32], y: &mut [u8]) {
    let y = &mut y[..34];
    let max = block_absmax(x);
    let d = max / 127.0;
    y[0..2].copy_from_slice(&f32_to_f16_ggml(d).to_le_bytes());
    let id = if max != 0.0 { 127.0 / max } else { 0.0 };
    let q = block_ints(x, id);
    for j in 0..32 {
        y[2 + j] = sat_i8(q[j]);
    }
}

/// `quantize_row_q8_1`, AVX2 path.
#[inline(always)]
pub(crate) fn q8_1(x: &[f32], y: &mut [u8]) {
    let y = &mut y[..36];
    let max = block_absmax(x);
    let d = max / 127.0;
    y[0..2].copy_from_slice(&f32_to_f16_ggml(d).to_le_bytes());
    let id = if max != 0.0 { 127.0 / max } else { 0.0 };
    let q = block_ints(x, id);
    let sum = q.iter().fold(0i32, |a, &v| a.wrapping_add(v));
    y[2..4].copy_from_slice(&f32_to_f16_ggml(d * sum as f32).to_le_bytes());
    for j in 0..32 {
        y[4 + j] = sat_i8(q[j]);
    }
}

/// `ggml_cpu_fp32_to_fp16`: F16C for every whole group of four, the portable conversion for
/// the tail.
pub(crate) fn row_f16(x: &[f32], y: &mut [u8]) {
    let vec_len = x.len() / 4 * 4;
    for (i, (v, out)) in x.iter().zip(y.chunks_exact_mut(2)).enumerate() {
        let h = if i < vec_len {
            f32_to_f16_hw(*v)
        } else {
            f32_to_f16_ggml(*v)
        };
        out.copy_from_slice(&h.to_le_bytes());
    }
}
