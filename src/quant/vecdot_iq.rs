//! ggml's CPU dot products of the I-quants and FP4 formats (`type_traits_cpu[ty].vec_dot`) as
//! compiled for x86-64-v3: the AVX2 branches of ggml-cpu/arch/x86/quants.c, lane for lane, in
//! the style of `vecdot.rs` (integer lanes through an [`Isa`], float accumulators updated with
//! FMAs in ggml's order, ggml's horizontal sums). tests/quant_ggml_iq.rs proves them against
//! ggml.

use super::dequant_iq::{e8m0_half, iq4xs_scale, nl_values};
use super::fp::{block_boundary, le_f32, le_u16, le_u32};
use super::tables::{
    byte_u32, IQ1M_DELTA, IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID,
    IQ3XXS_GRID, KSIGNS_IQ2XS, KVALUES_FP4, KVALUES_IQ4NL,
};
use super::vecdot::{fma_lanes, hsum8, q8k_parts, Isa};

/// The shape shared by `ggml_vec_dot_iq4_nl_q8_0` and `ggml_vec_dot_mxfp4_q8_0`: 32-element
/// blocks against Q8_0, two blocks per step into two accumulators (`accum1` for even blocks,
/// `accum2` for odd), their sum reduced by `hsum_float_8`, then an odd last block in scalar
/// code (`sumf += d * (sumi1 + sumi2)`, no contraction in C11).
#[inline(always)]
fn nl_q8_0<I: Isa, const BYTES: usize>(
    x: &[u8],
    y: &[u8],
    table: &[i8; 16],
    scale: impl Fn(&[u8]) -> f32,
) -> f32 {
    let nb = x.len() / BYTES;
    let mut acc = [[0f32; 8]; 2];
    let pairs = nb / 2 * 2;
    for ib in 0..pairs {
        block_boundary();
        let bx = &x[ib * BYTES..(ib + 1) * BYTES];
        let by = &y[ib * 34..(ib + 1) * 34];
        let v = nl_values(&bx[BYTES - 16..], table);
        let d = I::f16(by, 0) * scale(bx);
        fma_lanes(&mut acc[ib % 2], d, &I::lanes_signed(&v, &by[2..34]));
    }
    let mut sum = [0f32; 8];
    for l in 0..8 {
        sum[l] = acc[0][l] + acc[1][l];
    }
    let mut sumf = hsum8(&sum);
    for ib in pairs..nb {
        let bx = &x[ib * BYTES..(ib + 1) * BYTES];
        let by = &y[ib * 34..(ib + 1) * 34];
        let d = I::f16(by, 0) * scale(bx);
        let v = nl_values(&bx[BYTES - 16..], table);
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += by[2 + j] as i8 as i32 * v[j] as i32;
        }
        sumf += d * sumi as f32;
    }
    sumf
}

/// `ggml_vec_dot_iq4_nl_q8_0`.
#[inline(always)]
pub(crate) fn iq4_nl<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    nl_q8_0::<I, 18>(x, y, &KVALUES_IQ4NL, |bx| I::f16(bx, 0))
}

/// `ggml_vec_dot_mxfp4_q8_0`.
#[inline(always)]
pub(crate) fn mxfp4<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    nl_q8_0::<I, 17>(x, y, &KVALUES_FP4, |bx| e8m0_half(bx[0]))
}

/// `ggml_vec_dot_iq4_xs_q8_K`: per super-block, each 32-block's lanes times its signed 6-bit
/// scale (`madd` with the scale), summed in i32; then one FMA with `d * y.d`.
#[inline(always)]
pub(crate) fn iq4_xs<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(136).zip(y.chunks_exact(292)) {
        block_boundary();
        let q8 = &by[4..260];
        let mut sumi = [0i32; 8];
        for ib in 0..8 {
            let v = nl_values(&bx[8 + 16 * ib..], &KVALUES_IQ4NL);
            let ls = iq4xs_scale(bx, ib) - 32;
            let lanes = I::lanes_signed(&v, &q8[32 * ib..]);
            for k in 0..8 {
                sumi[k] = sumi[k].wrapping_add(ls.wrapping_mul(lanes[k]));
            }
        }
        let d = I::f16(bx, 0) * le_f32(by, 0);
        fma_lanes(&mut acc, d, &sumi);
    }
    hsum8(&acc)
}

/// 32 activation quants with the signs of a weight applied: element `8*g + j` negated
/// (wrapping, so -128 stays -128, as `_mm256_sign_epi8` and the xor/sub trick both do) when
/// bit `j` of `signs[g]` is set.
#[inline(always)]
fn signed_q8(q8: &[u8], signs: &[u8; 4]) -> [u8; 32] {
    let q8 = &q8[..32];
    let mut out = [0u8; 32];
    for g in 0..4 {
        for j in 0..8 {
            let v = q8[8 * g + j] as i8;
            let neg = signs[g] >> j & 1 != 0;
            out[8 * g + j] = if neg { v.wrapping_neg() } else { v } as u8;
        }
    }
    out
}

/// `maddubs(grid, signed q8)` then `madd` with a per-half scale: lanes 0..4 (elements 0..16)
/// times `sc_lo`, lanes 4..8 times `sc_hi`. Exact in i32 (no pair sum can saturate: the grid
/// values stay below 64).
#[inline(always)]
fn grid_lanes<I: Isa>(grid: &[u8; 32], q8s: &[u8; 32], sc_lo: i32, sc_hi: i32) -> [i32; 8] {
    let mut lanes = I::lanes_unsigned(grid, q8s);
    for (k, l) in lanes.iter_mut().enumerate() {
        *l = l.wrapping_mul(if k < 4 { sc_lo } else { sc_hi });
    }
    lanes
}

/// Four 8-byte grid entries side by side.
#[inline(always)]
fn grid32_u64(entries: [u64; 4]) -> [u8; 32] {
    let mut g = [0u8; 32];
    for (k, e) in entries.iter().enumerate() {
        g[8 * k..8 * k + 8].copy_from_slice(&e.to_le_bytes());
    }
    g
}

/// Eight 4-byte grid entries side by side.
#[inline(always)]
fn grid32_u32(entries: [u32; 8]) -> [u8; 32] {
    let mut g = [0u8; 32];
    for (k, e) in entries.iter().enumerate() {
        g[4 * k..4 * k + 4].copy_from_slice(&e.to_le_bytes());
    }
    g
}

/// The common tail of the I-quant kernels: per super-block the i32 lanes of its eight
/// 32-blocks are summed, converted and accumulated with one FMA by `x.d * y.d`; the result is
/// `hsum_float_8` times `post` (0.125, 0.25 or 1).
#[inline(always)]
fn iq_super_blocks<I: Isa, const BYTES: usize>(
    x: &[u8],
    y: &[u8],
    post: f32,
    block_lanes: impl Fn(&[u8], &[u8], usize) -> [i32; 8],
) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(BYTES).zip(y.chunks_exact(292)) {
        block_boundary();
        let d = I::f16(bx, 0) * le_f32(by, 0);
        let q8 = &by[4..260];
        let mut sumi = [0i32; 8];
        for ib in 0..8 {
            let lanes = block_lanes(bx, &q8[32 * ib..32 * ib + 32], ib);
            for k in 0..8 {
                sumi[k] = sumi[k].wrapping_add(lanes[k]);
            }
        }
        fma_lanes(&mut acc, d, &sumi);
    }
    post * hsum8(&acc)
}

/// `ggml_vec_dot_iq2_xxs_q8_K`.
#[inline(always)]
pub(crate) fn iq2_xxs<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    iq_super_blocks::<I, 66>(x, y, 0.125, |bx, q8, ib| {
        let a0 = le_u32(bx, 2 + 8 * ib);
        let a1 = le_u32(bx, 6 + 8 * ib);
        let grid = grid32_u64(std::array::from_fn(|l| {
            IQ2XXS_GRID[byte_u32(a0, l) as usize]
        }));
        let signs = std::array::from_fn(|l| KSIGNS_IQ2XS[((a1 >> (7 * l)) & 127) as usize]);
        let ls = 2 * (a1 >> 28) as i32 + 1;
        grid_lanes::<I>(&grid, &signed_q8(q8, &signs), ls, ls)
    })
}

/// `ggml_vec_dot_iq2_xs_q8_K` (its parity trick rebuilds exactly `ksigns_iq2xs`).
#[inline(always)]
pub(crate) fn iq2_xs<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    iq_super_blocks::<I, 74>(x, y, 0.125, |bx, q8, ib| {
        let q = |l: usize| le_u16(bx, 2 + 2 * (4 * ib + l));
        let grid = grid32_u64(std::array::from_fn(|l| IQ2XS_GRID[(q(l) & 511) as usize]));
        let signs = std::array::from_fn(|l| KSIGNS_IQ2XS[(q(l) >> 9) as usize]);
        let sc = bx[66 + ib];
        let lo = 2 * (sc & 0xF) as i32 + 1;
        let hi = 2 * (sc >> 4) as i32 + 1;
        grid_lanes::<I>(&grid, &signed_q8(q8, &signs), lo, hi)
    })
}

/// `ggml_vec_dot_iq2_s_q8_K`.
#[inline(always)]
pub(crate) fn iq2_s<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    iq_super_blocks::<I, 82>(x, y, 0.125, |bx, q8, ib| {
        let qh = bx[66 + ib] as usize;
        let grid = grid32_u64(std::array::from_fn(|l| {
            IQ2S_GRID[bx[2 + 4 * ib + l] as usize | ((qh << (8 - 2 * l)) & 0x300)]
        }));
        let signs = std::array::from_fn(|l| bx[34 + 4 * ib + l]);
        let sc = bx[74 + ib];
        let lo = 2 * (sc & 0xF) as i32 + 1;
        let hi = 2 * (sc >> 4) as i32 + 1;
        grid_lanes::<I>(&grid, &signed_q8(q8, &signs), lo, hi)
    })
}

/// `ggml_vec_dot_iq3_xxs_q8_K`.
#[inline(always)]
pub(crate) fn iq3_xxs<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    iq_super_blocks::<I, 98>(x, y, 0.25, |bx, q8, ib| {
        let grid = grid32_u32(std::array::from_fn(|k| {
            IQ3XXS_GRID[bx[2 + 8 * ib + k] as usize]
        }));
        let aux = le_u32(bx, 66 + 4 * ib);
        let signs = std::array::from_fn(|l| KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize]);
        let ls = 2 * (aux >> 28) as i32 + 1;
        grid_lanes::<I>(&grid, &signed_q8(q8, &signs), ls, ls)
    })
}

/// `ggml_vec_dot_iq3_s_q8_K`.
#[inline(always)]
pub(crate) fn iq3_s<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    iq_super_blocks::<I, 110>(x, y, 1.0, |bx, q8, ib| {
        let qh = bx[66 + ib] as usize;
        let grid = grid32_u32(std::array::from_fn(|k| {
            // Entry k: bit k of qh is the ninth index bit (`sllv` by 8 - k, masked with 256).
            IQ3S_GRID[bx[2 + 8 * ib + k] as usize | ((qh << (8 - k)) & 256)]
        }));
        let signs = std::array::from_fn(|l| bx[74 + 4 * ib + l]);
        let sc = bx[106 + ib / 2];
        let s = if ib % 2 == 0 { sc & 0xF } else { sc >> 4 };
        let ls = 2 * s as i32 + 1;
        grid_lanes::<I>(&grid, &signed_q8(q8, &signs), ls, ls)
    })
}

/// Four 8-byte signed grid entries side by side, as i8.
#[inline(always)]
fn grid32_i8(entries: [u64; 4]) -> [i8; 32] {
    let mut g = [0i8; 32];
    for (k, e) in entries.iter().enumerate() {
        for (j, b) in e.to_le_bytes().iter().enumerate() {
            g[8 * k + j] = *b as i8;
        }
    }
    g
}

/// `ggml_vec_dot_iq1_s_q8_K`: the grid part in i32 lanes (`mul_add_epi8`, `madd` with the
/// scale), the delta part in a scalar int from the bsums, accumulated as `accum1 += d * sumi1`.
#[inline(always)]
pub(crate) fn iq1_s<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut accum1 = 0f32;
    for (bx, by) in x.chunks_exact(50).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let mut sumi = [0i32; 8];
        let mut sumi1 = 0i32;
        for ib in 0..8 {
            let qh = le_u16(bx, 34 + 2 * ib);
            let grid = grid32_i8(std::array::from_fn(|l| {
                let idx = bx[2 + 4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                IQ1S_GRID[idx]
            }));
            let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
            let lanes = I::lanes_signed(&grid, &q8[32 * ib..]);
            for k in 0..8 {
                sumi[k] = sumi[k].wrapping_add(ls.wrapping_mul(lanes[k]));
            }
            let sign = if qh & 0x8000 != 0 { -1 } else { 1 };
            sumi1 += (bs[2 * ib] as i32 + bs[2 * ib + 1] as i32) * sign * ls;
        }
        let d = yd * I::f16(bx, 0);
        fma_lanes(&mut acc, d, &sumi);
        accum1 += d * sumi1 as f32;
    }
    hsum8(&acc) + IQ1S_DELTA * accum1
}

/// `ggml_vec_dot_iq1_m_q8_K`: grid lanes and delta lanes (`maddubs(1, sign(q8, ±1))`, so an
/// activation of -128 facing a negative delta stays -128) each with the per-16 scales, in two
/// accumulators; `hsum(accum1) + IQ1M_DELTA * hsum(accum2)`.
#[inline(always)]
pub(crate) fn iq1_m<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc1 = [0f32; 8];
    let mut acc2 = [0f32; 8];
    for (bx, by) in x.chunks_exact(56).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, _) = q8k_parts(by);
        let sc: [u16; 4] = std::array::from_fn(|k| le_u16(bx, 48 + 2 * k));
        let mut sumi1 = [0i32; 8];
        let mut sumi2 = [0i32; 8];
        for ib in 0..8 {
            let (h0, h1) = (bx[32 + 2 * ib] as usize, bx[33 + 2 * ib] as usize);
            let q = &bx[4 * ib..4 * ib + 4];
            let idx = [
                q[0] as usize | ((h0 << 8) & 0x700),
                q[1] as usize | ((h0 << 4) & 0x700),
                q[2] as usize | ((h1 << 8) & 0x700),
                q[3] as usize | ((h1 << 4) & 0x700),
            ];
            let grid = grid32_i8(idx.map(|i| IQ1S_GRID[i]));
            let neg = [
                h0 & 0x08 != 0,
                h0 & 0x80 != 0,
                h1 & 0x08 != 0,
                h1 & 0x80 != 0,
            ];
            let s = sc[ib / 2];
            let lo = 2 * ((s >> (6 * (ib % 2))) & 7) as i32 + 1;
            let hi = 2 * ((s >> (6 * (ib % 2) + 3)) & 7) as i32 + 1;
            let y8 = &q8[32 * ib..32 * ib + 32];
            let g = I::lanes_signed(&grid, y8);
            // The delta signs as a ±1 "weight": lanes_signed applies sign(y, x) like sign_epi8.
            let dv: [i8; 32] = std::array::from_fn(|e| if neg[e / 8] { -1 } else { 1 });
            let dl = I::lanes_signed(&dv, y8);
            for k in 0..8 {
                let scale = if k < 4 { lo } else { hi };
                sumi1[k] = sumi1[k].wrapping_add(scale.wrapping_mul(g[k]));
                sumi2[k] = sumi2[k].wrapping_add(scale.wrapping_mul(dl[k]));
            }
        }
        let d = yd * super::fp::f16_to_f32(super::dequant_iq::iq1m_scale(&sc));
        fma_lanes(&mut acc1, d, &sumi1);
        fma_lanes(&mut acc2, d, &sumi2);
    }
    hsum8(&acc1) + IQ1M_DELTA * hsum8(&acc2)
}

/// The digit `_mm256_avg_epu8` extracts from a TQ1_0 byte already multiplied by `3^n`
/// (mod 256): `v = sat(v - 1)`, `b = avg(v, avg(v, 0))`, top two bits of `b`.
#[inline(always)]
fn tq1_avx_digit(v: u8) -> u8 {
    let v = v.saturating_sub(1) as u16;
    let a = (v + 1) >> 1;
    let b = (v + a + 1) >> 1;
    (b >> 6) as u8 & 3
}

/// The 256 digits of a TQ1_0 block in element order, as the AVX2 kernel computes them.
#[inline(always)]
fn tq1_avx_digits(bx: &[u8]) -> [u8; 256] {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let mut q = [0u8; 256];
    for n in 0..5 {
        for m in 0..32 {
            q[32 * n + m] = tq1_avx_digit(bx[m].wrapping_mul(POW3[n]));
        }
        for m in 0..16 {
            q[160 + 16 * n + m] = tq1_avx_digit(bx[32 + m].wrapping_mul(POW3[n]));
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            q[240 + 4 * n + j] = tq1_avx_digit(bx[48 + j].wrapping_mul(POW3[n]));
        }
    }
    q
}

/// The ternary kernels' integer part: sixteen i16 lanes (lane `p` holds the `maddubs` pairs
/// at bytes `2p, 2p+1` of every 32-element chunk, minus `bsums[p]`; wrapping, as `epi16`
/// adds), then `madd` with ones into eight i32 lanes.
#[inline(always)]
fn ternary_lanes(q: &[u8; 256], q8: &[u8], bs: &[i16; 16]) -> [i32; 8] {
    let mut l16 = [0i16; 16];
    for c in 0..8 {
        for p in 0..16 {
            let e = 32 * c + 2 * p;
            let pair = q[e] as i32 * q8[e] as i8 as i32 + q[e + 1] as i32 * q8[e + 1] as i8 as i32;
            l16[p] = l16[p].wrapping_add(pair as i16);
        }
    }
    std::array::from_fn(|k| {
        l16[2 * k].wrapping_sub(bs[2 * k]) as i32
            + l16[2 * k + 1].wrapping_sub(bs[2 * k + 1]) as i32
    })
}

/// `ggml_vec_dot_tq1_0_q8_K` / `ggml_vec_dot_tq2_0_q8_K`: `sumf += cvt(lanes) * d` (a multiply
/// then an add), then `hsum_float_8`.
#[inline(always)]
fn ternary<I: Isa, const BYTES: usize>(
    x: &[u8],
    y: &[u8],
    digits: impl Fn(&[u8]) -> [u8; 256],
) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(BYTES).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let lanes = ternary_lanes(&digits(bx), q8, &bs);
        let d = yd * I::f16(bx, BYTES - 2);
        for k in 0..8 {
            acc[k] += lanes[k] as f32 * d;
        }
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_tq1_0_q8_K`.
#[inline(always)]
pub(crate) fn tq1_0<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    ternary::<I, 54>(x, y, tq1_avx_digits)
}

/// `ggml_vec_dot_tq2_0_q8_K`.
#[inline(always)]
pub(crate) fn tq2_0<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    ternary::<I, 66>(x, y, super::dequant_iq::tq2_digits)
}

/// llamafile's `tinyBLAS_Q0_AVX<block_iq4_nl, block_q8_0>` for one output: every block into
/// one accumulator (`madd(dA*dB, updot(sign(a, a), sign(b, a)), Cv)`), then `hsum`.
#[inline(always)]
pub(crate) fn iq4_nl_sgemm<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        block_boundary();
        let v = nl_values(&bx[2..18], &KVALUES_IQ4NL);
        let d = I::f16(bx, 0) * I::f16(by, 0);
        fma_lanes(&mut acc, d, &I::lanes_signed(&v, &by[2..34]));
    }
    hsum8(&acc)
}
