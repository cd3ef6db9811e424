//! ggml's CPU dot products (`type_traits_cpu[ty].vec_dot`) as compiled for x86-64-v3.
//!
//! Each kernel mirrors the AVX2 branch of the named ggml function lane for lane: the integer
//! block dot is formed exactly as the `maddubs`/`madd` sequence forms it (including the
//! `_mm256_sign_epi8` trick, under which an activation of -128 facing a negative weight is
//! multiplied as -128, not +128), each 8-lane float accumulator is updated with a fused
//! multiply-add in the same order, and the final horizontal sums follow `hsum_float_8` and
//! friends. None of the integer sums can saturate for these formats (`maddubs` pairs stay far
//! below 2^15), so saturation is not modelled. With these choices the kernels reproduce ggml
//! bit for bit; the tests in tests/quant_ggml.rs check that on random rows.

use super::dequant::{q3k_scales, scalar_row, scale_min_k4};
use super::fp::{bf16_to_f32, block_boundary, f16_to_f32, h, le_f32, le_i16, le_u16};

/// `hsum_float_8`: (hi + lo), then lanes 0+2 and 1+3, then those two.
#[inline(always)]
fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// `|x| * sign(y, x)` as `_mm256_sign_epi8` computes it (wrapping negation).
#[inline(always)]
fn sign_mul(x: i8, y: i8) -> i32 {
    let ax = x.unsigned_abs() as i32;
    let sy = if x < 0 { y.wrapping_neg() } else { y } as i32;
    ax * sy
}

/// Sums of four consecutive products: the eight i32 lanes of `mul_sum_*_pairs_float`.
#[inline(always)]
fn lanes_signed(x: &[i8; 32], y: &[u8]) -> [i32; 8] {
    let y = &y[..32];
    let mut out = [0i32; 8];
    for k in 0..8 {
        let mut s = 0;
        for e in 4 * k..4 * k + 4 {
            s += sign_mul(x[e], y[e] as i8);
        }
        out[k] = s;
    }
    out
}

#[inline(always)]
fn lanes_unsigned(x: &[u8; 32], y: &[u8]) -> [i32; 8] {
    let y = &y[..32];
    let mut out = [0i32; 8];
    for k in 0..8 {
        let mut s = 0;
        for e in 4 * k..4 * k + 4 {
            s += x[e] as i32 * y[e] as i8 as i32;
        }
        out[k] = s;
    }
    out
}

#[inline(always)]
fn fma_lanes(acc: &mut [f32; 8], d: f32, lanes: &[i32; 8]) {
    for k in 0..8 {
        acc[k] = d.mul_add(lanes[k] as f32, acc[k]);
    }
}

/// `ggml_vec_dot_q4_0_q8_0`.
#[inline(always)]
pub(crate) fn q4_0(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        block_boundary();
        let d = h(bx, 0) * h(by, 0);
        let qs = &bx[2..18];
        let mut xv = [0i8; 32];
        for j in 0..16 {
            xv[j] = (qs[j] & 0x0F) as i8 - 8;
            xv[j + 16] = (qs[j] >> 4) as i8 - 8;
        }
        fma_lanes(&mut acc, d, &lanes_signed(&xv, &by[2..34]));
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_q4_1_q8_1`.
#[inline(always)]
pub(crate) fn q4_1(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (bx, by) in x.chunks_exact(20).zip(y.chunks_exact(36)) {
        block_boundary();
        let d0 = h(bx, 0);
        let d1 = h(by, 0);
        summs += h(bx, 2) * h(by, 2);
        let qs = &bx[4..20];
        let mut xv = [0u8; 32];
        for j in 0..16 {
            xv[j] = qs[j] & 0x0F;
            xv[j + 16] = qs[j] >> 4;
        }
        fma_lanes(&mut acc, d0 * d1, &lanes_unsigned(&xv, &by[4..36]));
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q5_0_q8_0`.
#[inline(always)]
pub(crate) fn q5_0(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(22).zip(y.chunks_exact(34)) {
        block_boundary();
        let d = h(bx, 0) * h(by, 0);
        let qh = u32::from_le_bytes([bx[2], bx[3], bx[4], bx[5]]);
        let qs = &bx[6..22];
        let mut xv = [0i8; 32];
        for j in 0..16 {
            let hi0 = ((qh >> j) & 1) as u8;
            let hi1 = ((qh >> (j + 16)) & 1) as u8;
            xv[j] = ((qs[j] & 0x0F) | (hi0 << 4)) as i8 - 16;
            xv[j + 16] = ((qs[j] >> 4) | (hi1 << 4)) as i8 - 16;
        }
        fma_lanes(&mut acc, d, &lanes_signed(&xv, &by[2..34]));
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_q5_1_q8_1`.
#[inline(always)]
pub(crate) fn q5_1(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (bx, by) in x.chunks_exact(24).zip(y.chunks_exact(36)) {
        block_boundary();
        let dx = h(bx, 0);
        summs += h(bx, 2) * h(by, 2);
        let dy = h(by, 0);
        let qh = u32::from_le_bytes([bx[4], bx[5], bx[6], bx[7]]);
        let qs = &bx[8..24];
        let mut xv = [0u8; 32];
        for j in 0..16 {
            let hi0 = ((qh >> j) & 1) as u8;
            let hi1 = ((qh >> (j + 16)) & 1) as u8;
            xv[j] = (qs[j] & 0x0F) | (hi0 << 4);
            xv[j + 16] = (qs[j] >> 4) | (hi1 << 4);
        }
        // fmadd(q, dx*dy, acc): the product of the scales is rounded first.
        fma_lanes(&mut acc, dx * dy, &lanes_unsigned(&xv, &by[4..36]));
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q8_0_q8_0`.
#[inline(always)]
pub(crate) fn q8_0(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(34).zip(y.chunks_exact(34)) {
        block_boundary();
        let d = h(bx, 0) * h(by, 0);
        let mut xv = [0i8; 32];
        for (o, &b) in xv.iter_mut().zip(&bx[2..34]) {
            *o = b as i8;
        }
        fma_lanes(&mut acc, d, &lanes_signed(&xv, &by[2..34]));
    }
    hsum8(&acc)
}

/// Q8_K activation block: d, quants, bsums.
#[inline(always)]
fn q8k_parts(by: &[u8]) -> (f32, &[u8], [i16; 16]) {
    let mut bs = [0i16; 16];
    for (k, b) in bs.iter_mut().enumerate() {
        *b = le_i16(by, 260 + 2 * k);
    }
    (le_f32(by, 0), &by[4..260], bs)
}

/// Integer lanes of a K-quant block: element `e` (0..256) falls in lane `(e % 32) / 4`, weighted
/// by its sub-block scale `scale(e)`.
#[inline(always)]
fn k_lanes(q: &[i32; 256], q8: &[u8], scale: impl Fn(usize) -> i32) -> [i32; 8] {
    let q8 = &q8[..256];
    let mut lanes = [0i32; 8];
    for c in 0..8 {
        let sc = scale(32 * c);
        let sc2 = scale(32 * c + 16);
        for k in 0..8 {
            let e0 = 32 * c + 4 * k;
            let s = if k < 4 { sc } else { sc2 };
            let mut p = 0i32;
            for e in e0..e0 + 4 {
                p += q[e] * q8[e] as i8 as i32;
            }
            lanes[k] = lanes[k].wrapping_add(s.wrapping_mul(p));
        }
    }
    lanes
}

/// Pair sums of bsums (`_mm_hadd_epi16`, wrapping) times the eight mins (`_mm_madd_epi16`):
/// four i32 lanes.
#[inline(always)]
fn k4_min_lanes(mins: &[u8; 8], bs: &[i16; 16]) -> [i32; 4] {
    let mut q8s = [0i16; 8];
    for k in 0..8 {
        q8s[k] = bs[2 * k].wrapping_add(bs[2 * k + 1]);
    }
    let mut prod = [0i32; 4];
    for j in 0..4 {
        prod[j] =
            mins[2 * j] as i32 * q8s[2 * j] as i32 + mins[2 * j + 1] as i32 * q8s[2 * j + 1] as i32;
    }
    prod
}

/// `ggml_vec_dot_q2_K_q8_K`.
#[inline(always)]
pub(crate) fn q2_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(84).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * h(bx, 80);
        let dmin = -yd * h(bx, 82);
        let sc = &bx[0..16];
        let mut prod = [0i32; 8];
        for m in 0..8 {
            prod[m] = (sc[2 * m] >> 4) as i32 * bs[2 * m] as i32
                + (sc[2 * m + 1] >> 4) as i32 * bs[2 * m + 1] as i32;
        }
        fma_lanes(&mut acc, dmin, &prod);
        let qs = &bx[16..80];
        let mut q = [0i32; 256];
        for j in 0..2 {
            for s in 0..4 {
                for i in 0..32 {
                    q[128 * j + 32 * s + i] = ((qs[32 * j + i] >> (2 * s)) & 3) as i32;
                }
            }
        }
        let lanes = k_lanes(&q, q8, |e| (sc[e / 16] & 0xF) as i32);
        fma_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_q3_K_q8_K`.
#[inline(always)]
pub(crate) fn q3_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(110).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, _) = q8k_parts(by);
        let d = yd * h(bx, 108);
        let hm = &bx[0..32];
        let qs = &bx[32..96];
        let sc = q3k_scales(&bx[96..108]);
        let mut q = [0i32; 256];
        for j in 0..2 {
            for s in 0..4 {
                let bit = 4 * j + s;
                for i in 0..32 {
                    let low = ((qs[32 * j + i] >> (2 * s)) & 3) as i32;
                    let high = if (hm[i] >> bit) & 1 != 0 { 0 } else { 4 };
                    q[128 * j + 32 * s + i] = low - high;
                }
            }
        }
        let lanes = k_lanes(&q, q8, |e| sc[e / 16].wrapping_sub(32) as i32);
        fma_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc)
}

#[inline(always)]
fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, s);
    }
    (sc, mn)
}

/// `ggml_vec_dot_q4_K_q8_K`.
#[inline(always)]
pub(crate) fn q4_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut acc_m = [0f32; 4];
    for (bx, by) in x.chunks_exact(144).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * h(bx, 0);
        let dmin = -yd * h(bx, 2);
        let (sc, mn) = k4_scales_mins(&bx[4..16]);
        let prod = k4_min_lanes(&mn, &bs);
        for j in 0..4 {
            acc_m[j] = dmin.mul_add(prod[j] as f32, acc_m[j]);
        }
        let qs = &bx[16..144];
        let mut q = [0i32; 256];
        for j in 0..4 {
            for i in 0..32 {
                q[64 * j + i] = (qs[32 * j + i] & 0xF) as i32;
                q[64 * j + 32 + i] = (qs[32 * j + i] >> 4) as i32;
            }
        }
        let lanes = k_lanes(&q, q8, |e| sc[e / 32] as i32);
        fma_lanes(&mut acc, d, &lanes);
    }
    let m = (acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]);
    hsum8(&acc) + m
}

/// `ggml_vec_dot_q5_K_q8_K`.
#[inline(always)]
pub(crate) fn q5_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (bx, by) in x.chunks_exact(176).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * h(bx, 0);
        let dmin = -yd * h(bx, 2);
        let (sc, mn) = k4_scales_mins(&bx[4..16]);
        let prod = k4_min_lanes(&mn, &bs);
        let hs = prod[0]
            .wrapping_add(prod[1])
            .wrapping_add(prod[2].wrapping_add(prod[3]));
        summs += dmin * hs as f32;
        let qh = &bx[16..48];
        let qs = &bx[48..176];
        let mut q = [0i32; 256];
        for j in 0..4 {
            for i in 0..32 {
                let h0 = ((qh[i] >> (2 * j)) & 1) as i32;
                let h1 = ((qh[i] >> (2 * j + 1)) & 1) as i32;
                q[64 * j + i] = (qs[32 * j + i] & 0xF) as i32 + (h0 << 4);
                q[64 * j + 32 + i] = (qs[32 * j + i] >> 4) as i32 + (h1 << 4);
            }
        }
        let lanes = k_lanes(&q, q8, |e| sc[e / 32] as i32);
        fma_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q6_K_q8_K`.
#[inline(always)]
pub(crate) fn q6_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(210).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * h(bx, 208);
        let mut sc = [0i32; 16];
        for (k, s) in sc.iter_mut().enumerate() {
            *s = bx[192 + k] as i8 as i32;
        }
        let mut q = [0i32; 256];
        for n in 0..2 {
            let ql = &bx[64 * n..64 * n + 64];
            let qh = &bx[128 + 32 * n..128 + 32 * n + 32];
            for l in 0..32 {
                q[128 * n + l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32;
                q[128 * n + 32 + l] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32;
                q[128 * n + 64 + l] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32;
                q[128 * n + 96 + l] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32;
            }
        }
        let mut lanes = k_lanes(&q, q8, |e| sc[e / 16]);
        // The -32 offset of the quants, applied through the bsums (q8sclsub).
        for m in 0..8 {
            let sub = (bs[2 * m] as i32 * sc[2 * m] + bs[2 * m + 1] as i32 * sc[2 * m + 1])
                .wrapping_shl(5);
            lanes[m] = lanes[m].wrapping_sub(sub);
        }
        fma_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc)
}

/// `GGML_F32x8_REDUCE` over four 8-lane accumulators: (0+2) + (1+3), then lo + hi and two
/// `hadd`s.
#[inline(always)]
fn reduce4x8(s: &[[f32; 8]; 4]) -> f32 {
    let mut v = [0f32; 8];
    for l in 0..8 {
        v[l] = (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]);
    }
    let t0 = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (t0[0] + t0[1]) + (t0[2] + t0[3])
}

/// `ggml_vec_dot_f32` (vec.cpp, AVX branch): four 8-lane FMA accumulators over steps of 32,
/// then a scalar FMA tail (the C++ is built with contraction on).
#[inline(always)]
pub(crate) fn f32_dot(x: &[u8], y: &[u8], n: usize) -> f32 {
    let f = |b: &[u8], i: usize| le_f32(b, 4 * i);
    let np = n & !31;
    let mut s = [[0f32; 8]; 4];
    for (xc, yc) in x[..4 * np]
        .chunks_exact(128)
        .zip(y[..4 * np].chunks_exact(128))
    {
        for j in 0..4 {
            for l in 0..8 {
                let i = 8 * j + l;
                s[j][l] = f(xc, i).mul_add(f(yc, i), s[j][l]);
            }
        }
    }
    let mut sumf = reduce4x8(&s);
    for i in np..n {
        sumf = f(x, i).mul_add(f(y, i), sumf);
    }
    sumf
}

/// Four 8-lane FMA accumulators over chunks of 32 decoded values.
#[inline(always)]
fn fma_chunks<const W: usize>(
    x: &[u8],
    y: &[u8],
    np: usize,
    get: impl Fn([u8; W]) -> f32 + Copy,
) -> [[f32; 8]; 4] {
    let mut s = [[0f32; 8]; 4];
    let (mut xf, mut yf) = ([0f32; 32], [0f32; 32]);
    for (xc, yc) in x[..W * np]
        .chunks_exact(32 * W)
        .zip(y[..W * np].chunks_exact(32 * W))
    {
        scalar_row::<W>(xc, &mut xf, get);
        scalar_row::<W>(yc, &mut yf, get);
        for j in 0..4 {
            for l in 0..8 {
                s[j][l] = xf[8 * j + l].mul_add(yf[8 * j + l], s[j][l]);
            }
        }
    }
    s
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(le_u16(b, 2 * i))
}

/// `ggml_vec_dot_f16` (vec.cpp, AVX branch): as f32 on converted values; the tail is
/// accumulated in double from single-precision products.
#[inline(always)]
pub(crate) fn f16_dot(x: &[u8], y: &[u8], n: usize) -> f32 {
    let np = n & !31;
    let s = fma_chunks::<2>(x, y, np, |b| f16_to_f32(u16::from_le_bytes(b)));
    let mut sumf = reduce4x8(&s) as f64;
    for i in np..n {
        sumf += (f16_at(x, i) * f16_at(y, i)) as f64;
    }
    sumf as f32
}

/// `ggml_vec_dot_bf16` (vec.cpp, AVX2 branch; GCC contracts its mul+add into FMA).
#[inline(always)]
pub(crate) fn bf16_dot(x: &[u8], y: &[u8], n: usize) -> f32 {
    let bf = |b: &[u8], i: usize| bf16_to_f32(le_u16(b, 2 * i));
    let np = n & !31;
    let c = fma_chunks::<2>(x, y, np, |b| bf16_to_f32(u16::from_le_bytes(b)));
    let mut sumf = 0f64;
    if np > 0 {
        let mut v = [0f32; 8];
        for l in 0..8 {
            v[l] = (c[0][l] + c[2][l]) + (c[1][l] + c[3][l]);
        }
        sumf += hsum8(&v) as f64;
    }
    for i in np..n {
        sumf += (bf(x, i) * bf(y, i)) as f64;
    }
    sumf as f32
}
