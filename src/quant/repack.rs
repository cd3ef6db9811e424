//! ggml's repacked GEMM and GEMV (ggml-cpu/repack.cpp, arch/x86/repack.cpp) for one output
//! element: the kernels llama.cpp's CPU backend runs for weights it loads into its repack buffer.
//!
//! What the pinned tree does on x86-64-v3 (AVX2, FMA, F16C, no AVX512):
//!
//! - `ggml_repack_get_optimal_repack_type` gives Q4_0 the `q4_0_8x8_q8_0` layout and Q4_K the
//!   `q4_K_8x8_q8_K` layout when the weight has a multiple of 8 rows (`ne[1] % 8 == 0`); IQ4_NL
//!   (`iq4_nl_8x8_q8_0`) and MXFP4 (`mxfp4_8x8_q8_0`) likewise, but those types are not
//!   handled here yet (see the notes at the end of this comment). Q2_K's layout needs AVX512,
//!   the others need NEON, SVE or RISC-V.
//! - `tensor_traits::forward_mul_mat` quantizes the activation rows of a plane in groups of
//!   four with `ggml_quantize_mat_t<8, PARAM_TYPE>` (the rows before `ne11 - ne11 % 4`) and the
//!   rest with `from_float`; `forward_mul_mat_one_chunk` runs `gemm` on the first
//!   `nrows - nrows % 4` rows when `nrows > 3` and `gemv` on each remaining row, `nrows` being
//!   all of the plane's activation rows (src1 is chunked by whole planes only). Threads split
//!   the weight rows into chunks aligned to 8; every output is computed by one kernel call
//!   with the same arithmetic, so results do not depend on the thread count.
//! - `ggml_quantize_mat_q8_0_4x8` computes the same scales and quants as `quantize_row_q8_0`
//!   (AVX2), only interleaved. `ggml_quantize_mat_q8_K_4x8` differs from `quantize_row_q8_K`
//!   (= `quantize_row_q8_K_ref`) in one case: when a block's largest magnitude occurs both as
//!   `+m` and `-m`, the reference takes the sign of the first occurrence, the 4x8 code takes
//!   `+m` (scale `-127/m`) whenever any lane holds `+m`. [`quantize_mat_row`] reproduces that.
//! - Q4_0 (`gemv_q4_b32_8x8_q8_0_lut_avx`, `gemm_q4_b32_8x8_q8_0_lut_avx`): per 32-element
//!   block the integer dot `Σ (q-8)·a` (exact in int32), then
//!   `acc = fma(float(isum), d_w * d_a, acc)` from `acc = 0`, blocks in order; GEMV and both
//!   GEMM tiles (16 and 4 rows) do the same per output.
//! - Q4_K GEMV (`ggml_gemv_q4_K_8x8_q8_K`): per 256-element super-block the exact integers
//!   `Σ_k sc_k·dot_k` and `Σ_k m_k·(bsums[2k] + bsums[2k+1])`, then
//!   `acc = fma(float(isum), d_w * d_a, acc)` and `acc_min = fma(float(imin), dmin_w * d_a,
//!   acc_min)`; the result is `acc - acc_min`.
//! - Q4_K GEMM (`ggml_gemm_q4_K_8x8_q8_K`, AVX2 path): the same, but the two FMAs are taken per
//!   pair of 32-element sub-blocks (four times per super-block), not once per super-block.
//!
//! - IQ4_NL (`ggml_gemv_iq4_nl_8x8_q8_0`, `ggml_gemm_iq4_nl_8x8_q8_0`) and MXFP4
//!   (`ggml_gemv_mxfp4_8x8_q8_0`, `ggml_gemm_mxfp4_8x8_q8_0`) run the same two templates as
//!   Q4_0 with another `signextendlut`: the nibble `q` becomes `kvalues_iq4nl[q]` or
//!   `kvalues_mxfp4[q]` instead of `q - 8` (`make_block_iq4_nlx8` and `make_block_mxfp4x8`
//!   only interleave the bytes, nibbles unchanged). The column scale is the f16 `d` for
//!   IQ4_NL and `GGML_CPU_E8M0_TO_FP32_HALF(e)` for MXFP4 (the table holds doubled FP4
//!   values); per 32-element block `acc = fma(float(isum), scale_w * d_a, acc)`. The integer
//!   sums stay exact: `maddubs` sees `|a| <= 127` against `|v| <= 127`, so a pair never
//!   exceeds the i16 range.
//! - All three take Q8_0 activations, whose 4x8 quantization equals `from_float`.

use super::dequant_iq::e8m0_half;
use super::fp::{cvtt_i32, h, le_f32, le_i16, maxps};
use super::tables::{KVALUES_FP4, KVALUES_IQ4NL};
use super::{GgmlType, QuantError};

const Q4_0_BYTES: usize = 18;
const IQ4_NL_BYTES: usize = 18;
const MXFP4_BYTES: usize = 17;
const Q8_0_BYTES: usize = 34;
const Q4_K_BYTES: usize = 144;
const Q8_K_BYTES: usize = 292;

/// Whether `ggml_repack_get_optimal_repack_type` (x86-64-v3) has a layout for an `n_out`-row
/// weight of `ty`.
pub fn has_layout(ty: GgmlType, n_out: usize) -> bool {
    supported(ty) && n_out.is_multiple_of(8)
}

/// The types with an x86-64-v3 layout: `q4_0_8x8_q8_0`, `q4_K_8x8_q8_K`, `iq4_nl_8x8_q8_0`,
/// `mxfp4_8x8_q8_0`.
fn supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q4K | GgmlType::IQ4NL | GgmlType::MXFP4
    )
}

/// Checks the lengths of one weight row and one activation row for a repacked kernel.
fn check(ty: GgmlType, w: &[u8], a: &[u8], n: usize, op: &'static str) -> Result<(), QuantError> {
    if !supported(ty) {
        return Err(QuantError::Unsupported { ty, op });
    }
    super::check_bytes(ty, "weight row", n, w.len())?;
    let act_ty = super::vec_dot_type(ty);
    super::check_bytes(act_ty, "activation row", n, a.len())
}

/// One output of the repacked GEMM (activation rows in whole groups of four, quantized by
/// [`quantize_mat_row`]).
pub fn gemm_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    check(ty, w, a, n, "repacked GEMM")?;
    Ok(per_output(ty, w, a, true))
}

/// One output of the repacked GEMV (an activation row quantized by `from_float`).
pub fn gemv_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    check(ty, w, a, n, "repacked GEMV")?;
    Ok(per_output(ty, w, a, false))
}

/// One output of the GEMM (`gemm == true`) or GEMV of a checked, supported type.
fn per_output(ty: GgmlType, w: &[u8], a: &[u8], gemm: bool) -> f32 {
    /// `q - 8`: `make_block_q4_0x8` flips bit 3 of each nibble (`^ 0x88`) and the Q4_0
    /// `signextendlut` sign-extends the result.
    const Q4_0_LUT: [i8; 16] = [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7];
    match ty {
        GgmlType::Q4K => q4_k(w, a, gemm),
        GgmlType::IQ4NL => b32_lut::<IQ4_NL_BYTES>(w, a, &KVALUES_IQ4NL, |b| h(b, 0)),
        GgmlType::MXFP4 => b32_lut::<MXFP4_BYTES>(w, a, &KVALUES_FP4, |b| e8m0_half(b[0])),
        _ => b32_lut::<Q4_0_BYTES>(w, a, &Q4_0_LUT, |b| h(b, 0)),
    }
}

/// `gemv_q4_b32_8x8_q8_0_lut_avx` / `gemm_q4_b32_8x8_q8_0_lut_avx` for one output: blocks of
/// `BYTES` bytes whose last 16 hold the nibbles (element `j` low, `j + 16` high), each looked
/// up in `lut` (`signextendlut`), the column scale read by `scale` from the block.
fn b32_lut<const BYTES: usize>(
    w: &[u8],
    a: &[u8],
    lut: &[i8; 16],
    scale: impl Fn(&[u8]) -> f32,
) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BYTES).zip(a.chunks_exact(Q8_0_BYTES)) {
        let qs = &wb[BYTES - 16..];
        let mut isum = 0i32;
        for j in 0..16 {
            let lo = i32::from(lut[usize::from(qs[j] & 0x0F)]);
            let hi = i32::from(lut[usize::from(qs[j] >> 4)]);
            isum += lo * i32::from(ab[2 + j] as i8) + hi * i32::from(ab[18 + j] as i8);
        }
        acc = (isum as f32).mul_add(scale(wb) * h(ab, 0), acc);
    }
    acc
}

/// Scale and min of sub-block `j` of a Q4_K block's 12 packed bytes (`get_scale_min_k4`).
#[inline(always)]
fn scale_min(j: usize, q: &[u8]) -> (i32, i32) {
    let (s, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (i32::from(s), i32::from(m))
}

/// `ggml_gemv_q4_K_8x8_q8_K` (`per_pair == false`) and `ggml_gemm_q4_K_8x8_q8_K`
/// (`per_pair == true`) for one output.
fn q4_k(w: &[u8], a: &[u8], per_pair: bool) -> f32 {
    let mut acc = 0f32;
    let mut acc_min = 0f32;
    for (wb, ab) in w.chunks_exact(Q4_K_BYTES).zip(a.chunks_exact(Q8_K_BYTES)) {
        let d = h(wb, 0);
        let dmin = h(wb, 2);
        let scales = &wb[4..16];
        let qs = &wb[16..144];
        let da = le_f32(ab, 0);
        let aq = &ab[4..260];
        let (mut isum, mut imin) = (0i32, 0i32);
        // Two 32-element sub-blocks per 64 elements: the low nibbles of 32 bytes, then the
        // high nibbles.
        for pair in 0..4 {
            let (mut psum, mut pmin) = (0i32, 0i32);
            for half in 0..2 {
                let k = 2 * pair + half;
                let (sc, m) = scale_min(k, scales);
                let mut dot = 0i32;
                for l in 0..32 {
                    let byte = qs[32 * pair + l];
                    let q = if half == 0 { byte & 0x0F } else { byte >> 4 };
                    dot += i32::from(q) * i32::from(aq[32 * k + l] as i8);
                }
                let bsum = i32::from(le_i16(ab, 260 + 4 * k)) + i32::from(le_i16(ab, 262 + 4 * k));
                psum += sc * dot;
                pmin += m * bsum;
            }
            if per_pair {
                acc = (psum as f32).mul_add(d * da, acc);
                acc_min = (pmin as f32).mul_add(dmin * da, acc_min);
            } else {
                isum += psum;
                imin += pmin;
            }
        }
        if !per_pair {
            acc = (isum as f32).mul_add(d * da, acc);
            acc_min = (imin as f32).mul_add(dmin * da, acc_min);
        }
    }
    acc - acc_min
}

/// One activation row as `ggml_quantize_mat_t<8, ty>` (`ggml_quantize_mat_q8_0_4x8`,
/// `ggml_quantize_mat_q8_K_4x8`, AVX2) quantizes it inside a group of four, written in the
/// plain `block_q8_0` / `block_q8_K` layout: the rows the repacked GEMM reads.
pub fn quantize_mat_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    match ty {
        // Same scales and quants as from_float (ggml-cpu/arch/x86/quants.c quantize_row_q8_0).
        GgmlType::Q8_0 => super::quantize_activation(ty, src, dst),
        GgmlType::Q8K => {
            super::check_bytes(ty, "destination row", src.len(), dst.len())?;
            for (x, y) in src.chunks_exact(256).zip(dst.chunks_exact_mut(Q8_K_BYTES)) {
                q8_k_4x8(x, y);
            }
            Ok(())
        }
        _ => Err(QuantError::Unsupported {
            ty,
            op: "repacked activation quantization",
        }),
    }
}

/// One 256-element block of `ggml_quantize_mat_q8_K_4x8` (AVX2) for one of its four rows.
fn q8_k_4x8(x: &[f32], y: &mut [u8]) {
    // Lane l of the eight-float registers sees elements 32*sb + 8*j + l (j = 0..4).
    let mut max_abs = [0f32; 8];
    let mut pos = [false; 8];
    for l in 0..8 {
        let v = |sb: usize, j: usize| x[32 * sb + 8 * j + l];
        let mut m = maxps(v(0, 0).abs(), v(0, 1).abs());
        m = maxps(m, v(0, 2).abs());
        m = maxps(m, v(0, 3).abs());
        let mut p = (0..4).any(|j| m == v(0, j));
        for sb in 1..8 {
            let prev = m;
            for j in 0..4 {
                m = maxps(m, v(sb, j).abs());
            }
            p = (p && prev == m) || (0..4).any(|j| m == v(sb, j));
        }
        max_abs[l] = m;
        pos[l] = p;
    }
    let m4 = [
        maxps(max_abs[4], max_abs[0]),
        maxps(max_abs[5], max_abs[1]),
        maxps(max_abs[6], max_abs[2]),
        maxps(max_abs[7], max_abs[3]),
    ];
    let m2 = [maxps(m4[0], m4[2]), maxps(m4[1], m4[3])];
    let max = maxps(m2[0], m2[1]);
    let positive = (0..8).any(|l| pos[l] && max == max_abs[l]);
    let iscale = if max == 0.0 {
        0.0
    } else if positive {
        -127.0 / max
    } else {
        127.0 / max
    };
    // `maxScalar ? 1/iscale : 0`: a NaN maximum counts as true.
    let d = if max != 0.0 { 1.0 / iscale } else { 0.0 };
    y[0..4].copy_from_slice(&d.to_le_bytes());
    let mut qs = [0i8; 256];
    for (q, &v) in qs.iter_mut().zip(x) {
        // round, cvtps (NaN and overflow give INT_MIN), packs saturation to i8.
        *q = cvtt_i32((v * iscale).round_ties_even()).clamp(-128, 127) as i8;
    }
    for (o, q) in y[4..260].iter_mut().zip(&qs) {
        *o = *q as u8;
    }
    for j in 0..16 {
        let sum: i16 = qs[16 * j..16 * j + 16].iter().map(|&q| i16::from(q)).sum();
        y[260 + 2 * j..262 + 2 * j].copy_from_slice(&sum.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_need_eight_rows() {
        assert!(has_layout(GgmlType::Q4_0, 8));
        assert!(has_layout(GgmlType::Q4K, 576));
        assert!(!has_layout(GgmlType::Q4_0, 12));
        assert!(!has_layout(GgmlType::Q4_1, 8));
        assert!(!has_layout(GgmlType::Q8_0, 8));
        assert!(has_layout(GgmlType::IQ4NL, 64));
        assert!(has_layout(GgmlType::MXFP4, 64));
        assert!(!has_layout(GgmlType::IQ4NL, 60));
        assert!(!has_layout(GgmlType::IQ4XS, 64));
    }

    #[test]
    fn q8_k_4x8_takes_the_positive_maximum_on_a_tie() {
        let mut x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 60.0)
            .collect();
        x[3] = -2.0;
        x[200] = 2.0;
        let mut plain = vec![0u8; Q8_K_BYTES];
        let mut mat = vec![0u8; Q8_K_BYTES];
        crate::quant::quantize_activation(GgmlType::Q8K, &x, &mut plain).unwrap();
        quantize_mat_row(GgmlType::Q8K, &x, &mut mat).unwrap();
        // The reference takes the first occurrence (-2, positive d); the 4x8 code +2.
        assert!(le_f32(&plain, 0) > 0.0);
        assert!(le_f32(&mat, 0) < 0.0);
        // Without a tie they agree.
        x[3] = -1.0;
        crate::quant::quantize_activation(GgmlType::Q8K, &x, &mut plain).unwrap();
        quantize_mat_row(GgmlType::Q8K, &x, &mut mat).unwrap();
        assert_eq!(plain, mat);
    }
}
