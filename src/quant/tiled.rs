//! ggml's tiled GEMM (ggml-cpu/tiled/tiled.cpp, tiled-kernel.cpp) for one output element: the
//! kernel llama.cpp's CPU backend runs for K-quant and I-quant weights when a matmul has eight
//! or more activation rows (and the weight is not repacked).
//!
//! What the AVX2 microkernel (`tiled_run_microtile_avx2`, built with FMA, no AVX512) computes
//! for weight row `r` and activation row `c` (quantized to Q8_K by the same `from_float` as
//! for `vec_dot`): the accumulator starts at +0 and, for each 256-element block `b` in
//! increasing order (the standard and the narrow drivers both step K that way),
//!
//! ```text
//! s1  = Σ_s scale_s · Σ_{e∈s} (code_e − BIAS) · q8_e        exact, i32
//! s2  = Σ_s min_s · bsum_s                                  exact, i32 (types with mins)
//! res = d · (f32) s1                                        one rounding
//! res = fma(−dmin, (f32) s2, res)                           `_mm256_fnmadd_ps`
//! acc = fma(res, d_q8, acc)                                 `_mm256_fmadd_ps`
//! ```
//!
//! The integer sums are exact. Two MACs: the act-bias one (every type but IQ4_XS) shifts the
//! activation to `q8 + 128` (unsigned) against the signed debiased weight `w = code − BIAS` and
//! takes `128 · Σ_s scale_s · Σ_{e∈s} w_e` out again as an integer correction computed from the
//! same codes; with |w| at most 32 (Q3_K, Q6_K; for Q2_K/Q4_K/Q5_K the codes themselves, at
//! most 31) or 62 (the I-quant grids) no `maddubs` pair can saturate (2·255·62 < 2^15), so
//! ggml's wrapping i32 arithmetic yields the value above whatever the bytes. IQ4_XS, whose
//! weights reach 127, takes the sign trick `maddubs(|w|, sign(q8, w))` (pairs at most
//! 2·127·128 < 2^15): exact except that an activation of −128 facing a negative weight stays
//! −128 (`_mm256_sign_epi8` wraps), which the portable copy reproduces; Q8_K activations from
//! `quantize_row_q8_K` never hold −128. `(f32)` is `_mm256_cvtepi32_ps`, round to nearest even
//! like Rust's `as f32`.
//!
//! Per type (`ggml_tiled_matmul_type_dispatch` and the `tiled_unpack_src0` overloads):
//!
//! | type | subblock | mins | BIAS | code | scale | min |
//! |---|---|---|---|---|---|---|
//! | Q2_K | 16 | yes | 0 | 2 bits | `scales[s] & 0xF` | `scales[s] >> 4` |
//! | Q3_K | 16 | no | 4 | 2 bits + hmask bit · 4 | 6 bits − 32 | |
//! | Q4_K | 32 | yes | 0 | 4 bits | 6 bits (`get_scale_min_k4`) | 6 bits |
//! | Q5_K | 32 | yes | 0 | 4 bits + qh bit · 16 | 6 bits | 6 bits |
//! | Q6_K | 16 | no | 32 | 4 bits + 2 qh bits · 16 | `i8` | |
//! | IQ4_XS | 32 | no | 128 | `kvalues_iq4nl[nibble]` + 128 | 6 bits − 32 | |
//! | IQ2_XXS | 32 | no | 128 | ±`iq2xxs_grid` byte + 128 (`ksigns_iq2xs`) | 2·(4 bits)+1 | |
//! | IQ2_XS | 16 | no | 128 | ±`iq2xs_grid` byte + 128 (`ksigns_iq2xs`) | 2·(4 bits)+1 | |
//! | IQ2_S | 16 | no | 128 | ±`iq2s_grid` byte + 128 (raw sign bytes) | 2·(4 bits)+1 | |
//! | IQ3_XXS | 32 | no | 128 | ±`iq3xxs_grid` byte + 128 (`ksigns_iq2xs`) | 2·(4 bits)+1 | |
//! | IQ3_S | 32 | no | 128 | ±`iq3s_grid` byte + 128 (raw sign bytes) | 1+2·(4 bits) | |
//! | IQ1_S | 32 | no | 128 | 8·`iq1s_grid` byte ± 1 + 128 | 2·(3 bits)+1 | |
//! | IQ1_M | 16 | no | 128 | 8·`iq1s_grid` byte ± 1 + 128 | 2·(3 bits)+1 | |
//!
//! `d` (and `dmin`) are the block's fp16 fields widened to f32, times 0.125 for IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ1_S and IQ1_M (whose fp16 scale is assembled from the top nibbles of its four
//! scale words) and 0.25 for IQ3_XXS, multiplied into `d` after the widening, before `d · s1`
//! (exact: a power of two on a widened fp16). The element order of the codes is the one
//! `dequantize_row_*` uses, so the crate's decoders give them.

use super::dequant::{crumbs, q3k_quants, q3k_scales, q5k_quants, q6k_quants, scale_min_k4};
use super::dequant_iq::{iq1m_scale, iq4xs_scale, nl_values};
use super::fp::{block_boundary, f16_to_f32, h, le_f32, le_u16, le_u32};
use super::tables::{
    byte_u32, byte_u64, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
    KSIGNS_IQ2XS, KVALUES_IQ4NL,
};
use super::{check_bytes, row_bytes, GgmlType, QuantError};

/// Whether `ggml_tiled_supported` takes weights of `ty`.
pub fn supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        Q2K | Q3K | Q4K | Q5K | Q6K | IQ4XS | IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ1S | IQ1M
    )
}

/// One 256-element weight block as the microkernel reads it: debiased codes `w`, one scale
/// (and min) per 16 elements (a 32-element subblock's value repeated over its two halves,
/// which leaves the exact integer sums unchanged), `d` and `dmin` as f32.
struct Tile {
    w: [i8; 256],
    /// Scale of each 16 elements, eight times over: the `madd` operand of each 32-byte chunk.
    scales: [[i16; 16]; 8],
    mins: [i16; 16],
    /// `128 * Σ_g scale_g * Σ_{e∈g} w_e`: what the `+128` shift of the activations adds.
    corr: i32,
    has_min: bool,
    /// IQ4_XS: the sign-trick MAC `maddubs(|w|, sign(q8, w))` instead of the act-bias one.
    sign: bool,
    d: f32,
    dmin: f32,
}

/// Bytes of a Q8_K block: `d` (f32), 256 quants, 16 `bsums` (i16).
const Q8K_BYTES: usize = 292;

impl Tile {
    #[inline(always)]
    fn scale(&self, g: usize) -> i16 {
        self.scales[g / 2][8 * (g % 2)]
    }
}

#[inline(always)]
fn unpack(ty: GgmlType, b: &[u8]) -> Tile {
    let mut w = [0i8; 256];
    let mut sc16 = [0i16; 16];
    let mut mins = [0i16; 16];
    let (mut d, mut dmin, mut has_min) = (0.0, 0.0, false);
    match ty {
        GgmlType::Q2K => {
            let q = crumbs(&b[16..80]);
            for (w, &c) in w.iter_mut().zip(&q) {
                *w = c as i8;
            }
            for g in 0..16 {
                sc16[g] = i16::from(b[g] & 0xF);
                mins[g] = i16::from(b[g] >> 4);
            }
            (d, dmin, has_min) = (h(b, 80), h(b, 82), true);
        }
        GgmlType::Q3K => {
            // q3k_quants gives code - 4 (code = low bits | high bit << 2).
            w = q3k_quants(&b[0..32], &b[32..96]);
            let sc = q3k_scales(&b[96..108]);
            for g in 0..16 {
                sc16[g] = i16::from(sc[g]) - 32;
            }
            d = h(b, 108);
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let q = if ty == GgmlType::Q4K {
                let qs = &b[16..144];
                let mut q = [0u8; 256];
                for j in 0..4 {
                    for l in 0..32 {
                        q[64 * j + l] = qs[32 * j + l] & 0xF;
                        q[64 * j + 32 + l] = qs[32 * j + l] >> 4;
                    }
                }
                q
            } else {
                q5k_quants(&b[16..48], &b[48..176])
            };
            for (w, &c) in w.iter_mut().zip(&q) {
                *w = c as i8;
            }
            for s in 0..8 {
                let (sc, mn) = scale_min_k4(s, &b[4..16]);
                sc16[2 * s] = i16::from(sc);
                sc16[2 * s + 1] = i16::from(sc);
                mins[2 * s] = i16::from(mn);
                mins[2 * s + 1] = i16::from(mn);
            }
            (d, dmin, has_min) = (h(b, 0), h(b, 2), true);
        }
        GgmlType::Q6K => {
            let q = q6k_quants(&b[0..192]);
            for (w, &c) in w.iter_mut().zip(&q) {
                *w = c as i8 - 32;
            }
            for g in 0..16 {
                sc16[g] = i16::from(b[192 + g] as i8);
            }
            d = h(b, 208);
        }
        GgmlType::IQ4XS => {
            for ib in 0..8 {
                let v = nl_values(&b[8 + 16 * ib..], &KVALUES_IQ4NL);
                w[32 * ib..32 * ib + 32].copy_from_slice(&v);
                let sc = iq4xs_scale(b, ib) as i16 - 32;
                sc16[2 * ib] = sc;
                sc16[2 * ib + 1] = sc;
            }
            d = h(b, 0);
        }
        GgmlType::IQ2XXS => {
            for ib in 0..8 {
                let (a0, a1) = (le_u32(b, 2 + 8 * ib), le_u32(b, 6 + 8 * ib));
                let sc = 2 * (a1 >> 28) as i16 + 1;
                sc16[2 * ib] = sc;
                sc16[2 * ib + 1] = sc;
                for l in 0..4 {
                    let grid = IQ2XXS_GRID[byte_u32(a0, l) as usize];
                    let signs = KSIGNS_IQ2XS[((a1 >> (7 * l)) & 127) as usize];
                    signed8(&mut w[32 * ib + 8 * l..], grid, signs);
                }
            }
            d = h(b, 0) * 0.125;
        }
        GgmlType::IQ2XS => {
            for ib in 0..8 {
                let sc = b[66 + ib];
                sc16[2 * ib] = 2 * i16::from(sc & 0xF) + 1;
                sc16[2 * ib + 1] = 2 * i16::from(sc >> 4) + 1;
                for l in 0..4 {
                    let q = le_u16(b, 2 + 2 * (4 * ib + l));
                    let grid = IQ2XS_GRID[(q & 511) as usize];
                    signed8(
                        &mut w[32 * ib + 8 * l..],
                        grid,
                        KSIGNS_IQ2XS[(q >> 9) as usize],
                    );
                }
            }
            d = h(b, 0) * 0.125;
        }
        GgmlType::IQ2S => {
            let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
            for ib in 0..8 {
                sc16[2 * ib] = 2 * i16::from(scales[ib] & 0xF) + 1;
                sc16[2 * ib + 1] = 2 * i16::from(scales[ib] >> 4) + 1;
                for l in 0..4 {
                    let idx = usize::from(qs[4 * ib + l])
                        | ((usize::from(qh[ib]) << (8 - 2 * l)) & 0x300);
                    signed8(&mut w[32 * ib + 8 * l..], IQ2S_GRID[idx], signs[4 * ib + l]);
                }
            }
            d = h(b, 0) * 0.125;
        }
        GgmlType::IQ3XXS => {
            let qs = &b[2..66];
            for ib in 0..8 {
                let aux = le_u32(b, 66 + 4 * ib);
                let sc = 2 * (aux >> 28) as i16 + 1;
                sc16[2 * ib] = sc;
                sc16[2 * ib + 1] = sc;
                for l in 0..4 {
                    let lo = IQ3XXS_GRID[usize::from(qs[8 * ib + 2 * l])];
                    let hi = IQ3XXS_GRID[usize::from(qs[8 * ib + 2 * l + 1])];
                    let grid = u64::from(hi) << 32 | u64::from(lo);
                    let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                    signed8(&mut w[32 * ib + 8 * l..], grid, signs);
                }
            }
            d = h(b, 0) * 0.25;
        }
        GgmlType::IQ3S => {
            let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
            for ib in 0..8 {
                let sc = (scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
                sc16[2 * ib] = 1 + 2 * i16::from(sc);
                sc16[2 * ib + 1] = 1 + 2 * i16::from(sc);
                let hb = usize::from(qh[ib]);
                for l in 0..4 {
                    let i1 = usize::from(qs[8 * ib + 2 * l]) | ((hb << (8 - 2 * l)) & 256);
                    let i2 = usize::from(qs[8 * ib + 2 * l + 1]) | ((hb << (7 - 2 * l)) & 256);
                    let grid = u64::from(IQ3S_GRID[i2]) << 32 | u64::from(IQ3S_GRID[i1]);
                    signed8(&mut w[32 * ib + 8 * l..], grid, signs[4 * ib + l]);
                }
            }
            d = h(b, 0);
        }
        GgmlType::IQ1S => {
            let qs = &b[2..34];
            for ib in 0..8 {
                let hw = le_u16(b, 34 + 2 * ib);
                let sc = 2 * ((hw >> 12) & 7) as i16 + 1;
                sc16[2 * ib] = sc;
                sc16[2 * ib + 1] = sc;
                let delta = if hw & 0x8000 != 0 { -1 } else { 1 };
                for l in 0..4 {
                    let idx = usize::from(qs[4 * ib + l]) | (usize::from((hw >> (3 * l)) & 7) << 8);
                    ternary8(&mut w[32 * ib + 8 * l..], IQ1S_GRID[idx], delta);
                }
            }
            d = h(b, 0) * 0.125;
        }
        GgmlType::IQ1M => {
            let (qs, qh) = (&b[0..32], &b[32..48]);
            let sc = [le_u16(b, 48), le_u16(b, 50), le_u16(b, 52), le_u16(b, 54)];
            for ib in 0..8 {
                let (hw, sh) = (sc[ib / 2], 6 * (ib % 2));
                sc16[2 * ib] = 2 * ((hw >> sh) & 7) as i16 + 1;
                sc16[2 * ib + 1] = 2 * ((hw >> (sh + 3)) & 7) as i16 + 1;
                let (h0, h1) = (usize::from(qh[2 * ib]), usize::from(qh[2 * ib + 1]));
                let q = &qs[4 * ib..4 * ib + 4];
                let idx = [
                    usize::from(q[0]) | ((h0 << 8) & 0x700),
                    usize::from(q[1]) | ((h0 << 4) & 0x700),
                    usize::from(q[2]) | ((h1 << 8) & 0x700),
                    usize::from(q[3]) | ((h1 << 4) & 0x700),
                ];
                let delta = |bit: usize| if bit != 0 { -1 } else { 1 };
                let deltas = [
                    delta(h0 & 0x08),
                    delta(h0 & 0x80),
                    delta(h1 & 0x08),
                    delta(h1 & 0x80),
                ];
                for l in 0..4 {
                    ternary8(&mut w[32 * ib + 8 * l..], IQ1S_GRID[idx[l]], deltas[l]);
                }
            }
            d = f16_to_f32(iq1m_scale(&sc)) * 0.125;
        }
        _ => {}
    }
    let mut scales = [[0i16; 16]; 8];
    let mut corr = 0i32;
    for (c, sv) in scales.iter_mut().enumerate() {
        sv[..8].fill(sc16[2 * c]);
        sv[8..].fill(sc16[2 * c + 1]);
    }
    for g in 0..16 {
        let wsum: i32 = w[16 * g..16 * g + 16].iter().map(|&v| i32::from(v)).sum();
        corr = corr.wrapping_add(128 * i32::from(sc16[g]) * wsum);
    }
    Tile {
        w,
        scales,
        mins,
        corr,
        has_min,
        sign: ty == GgmlType::IQ4XS,
        d,
        dmin,
    }
}

/// Eight signed grid magnitudes (`tiled_unpk_sign32`): byte `j` of `grid`, negated where bit
/// `j` of `signs` is set.
#[inline(always)]
fn signed8(w: &mut [i8], grid: u64, signs: u8) {
    for (j, w) in w[..8].iter_mut().enumerate() {
        let v = byte_u64(grid, j) as i8;
        *w = if signs >> j & 1 != 0 {
            v.wrapping_neg()
        } else {
            v
        };
    }
}

/// Eight ternary grid bytes (`tiled_unpk_tern8`): `8 * g + delta` for `g` in {-1, 0, 1}.
#[inline(always)]
fn ternary8(w: &mut [i8], grid: u64, delta: i8) {
    for (j, w) in w[..8].iter_mut().enumerate() {
        *w = (byte_u64(grid, j) as i8)
            .wrapping_mul(8)
            .wrapping_add(delta);
    }
}

/// `_mm256_sign_epi8(q, w)` for one byte: `q`, 0 or `-q` (wrapping) by the sign of `w`.
#[inline(always)]
fn sign_byte(q: i8, w: i8) -> i8 {
    match w.signum() {
        1 => q,
        0 => 0,
        _ => q.wrapping_neg(),
    }
}

/// The integer sums of one weight block against the quants `q8` (256 bytes) and `bsums` (16
/// little-endian i16, 32 bytes) of a Q8_K block: `(s1, s2)`.
trait Ints {
    fn sums(t: &Tile, q8: &[u8], bsums: &[u8]) -> (i32, i32);
}

/// The sums written out. Exact, as ggml's: no intermediate can overflow (|s1| < 2^28).
struct Portable;

impl Ints for Portable {
    #[inline(always)]
    fn sums(t: &Tile, q8: &[u8], bsums: &[u8]) -> (i32, i32) {
        let (q8, bsums) = (&q8[..256], &bsums[..32]);
        let mut s1 = 0i32;
        for g in 0..16 {
            let span = 16 * g..16 * g + 16;
            let raw: i32 = if t.sign {
                // |w| * sign(q8, w): a -128 activation against a negative weight stays -128.
                t.w[span.clone()]
                    .iter()
                    .zip(&q8[span])
                    .map(|(&w, &q)| i32::from(w.unsigned_abs()) * i32::from(sign_byte(q as i8, w)))
                    .sum()
            } else {
                t.w[span.clone()]
                    .iter()
                    .zip(&q8[span])
                    .map(|(&w, &q)| i32::from(w) * i32::from(q as i8))
                    .sum()
            };
            s1 = s1.wrapping_add(raw.wrapping_mul(i32::from(t.scale(g))));
        }
        let mut s2 = 0i32;
        if t.has_min {
            for g in 0..16 {
                let bs = i16::from_le_bytes([bsums[2 * g], bsums[2 * g + 1]]);
                s2 = s2.wrapping_add(i32::from(t.mins[g]) * i32::from(bs));
            }
        }
        (s1, s2)
    }
}

/// ggml's AVX2 MACs: the act-bias one, `maddubs(q8 ^ 0x80, w)` (unsigned activation `q8 + 128`
/// against the signed debiased weight, pair sums at most 2·255·62 < 2^15), `madd` with the
/// scales, then the correction; for IQ4_XS the sign trick `maddubs(sign(w, w), sign(q8, w))`
/// and `madd`, no correction. Only for use where AVX2 is enabled.
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Ints for Avx2 {
    #[inline(always)]
    fn sums(t: &Tile, q8: &[u8], bsums: &[u8]) -> (i32, i32) {
        use std::arch::x86_64::*;
        let (q8, bsums) = (&q8[..256], &bsums[..32]);
        // SAFETY: AVX2 is enabled where this is inlined (see `rows_dispatch`); every load reads
        // 32 bytes inside a 256-byte array or slice, or a 32-byte one.
        unsafe {
            let flip = _mm256_set1_epi8(0x80u8 as i8);
            let mut acc = _mm256_setzero_si256();
            if t.sign {
                for c in 0..8 {
                    let q = _mm256_loadu_si256(q8.as_ptr().add(32 * c).cast());
                    let w = _mm256_loadu_si256(t.w.as_ptr().add(32 * c).cast());
                    let sc = _mm256_loadu_si256(t.scales[c].as_ptr().cast());
                    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(sc, p));
                }
            } else {
                for c in 0..8 {
                    let q =
                        _mm256_xor_si256(_mm256_loadu_si256(q8.as_ptr().add(32 * c).cast()), flip);
                    let w = _mm256_loadu_si256(t.w.as_ptr().add(32 * c).cast());
                    let sc = _mm256_loadu_si256(t.scales[c].as_ptr().cast());
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(sc, _mm256_maddubs_epi16(q, w)));
                }
            }
            let mut s2v = _mm256_setzero_si256();
            if t.has_min {
                let bs = _mm256_loadu_si256(bsums.as_ptr().cast());
                let mn = _mm256_loadu_si256(t.mins.as_ptr().cast());
                s2v = _mm256_madd_epi16(bs, mn);
            }
            let mut lanes = [[0i32; 8]; 2];
            _mm256_storeu_si256(lanes[0].as_mut_ptr().cast(), acc);
            _mm256_storeu_si256(lanes[1].as_mut_ptr().cast(), s2v);
            let hsum = |l: &[i32; 8]| l.iter().fold(0i32, |a, &v| a.wrapping_add(v));
            let corr = if t.sign { 0 } else { t.corr };
            (hsum(&lanes[0]).wrapping_sub(corr), hsum(&lanes[1]))
        }
    }
}

/// The epilogue of one block for one activation row: `res` and the accumulator update.
#[inline(always)]
fn block_acc<I: Ints>(t: &Tile, a: &[u8], acc: f32) -> f32 {
    let (s1, s2) = I::sums(t, &a[4..260], &a[260..292]);
    let mut res = t.d * s1 as f32;
    if t.has_min {
        res = (-t.dmin).mul_add(s2 as f32, res);
    }
    res.mul_add(le_f32(a, 0), acc)
}

#[inline(always)]
fn rows_kernel<I: Ints, A: AsRef<[u8]>>(ty: GgmlType, w: &[u8], acts: &[A], out: &mut [f32]) {
    let wb = ty.type_size();
    out.fill(0.0);
    for (k, b) in w.chunks_exact(wb).enumerate() {
        block_boundary();
        let tile = unpack(ty, b);
        for (o, a) in out.iter_mut().zip(acts) {
            let a = &a.as_ref()[k * Q8K_BYTES..(k + 1) * Q8K_BYTES];
            *o = block_acc::<I>(&tile, a, *o);
        }
    }
}

/// [`rows_kernel`] with ggml's AVX2 sequence where the CPU has it (same bits either way: the
/// integer sums are exact and `mul_add` is fused in both copies).
fn rows_dispatch<A: AsRef<[u8]>>(ty: GgmlType, w: &[u8], acts: &[A], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn v3<A: AsRef<[u8]>>(ty: GgmlType, w: &[u8], acts: &[A], out: &mut [f32]) {
            rows_kernel::<Avx2, A>(ty, w, acts, out)
        }
        if super::has_v3() {
            // SAFETY: the CPU supports the features `v3` was compiled for.
            return unsafe { v3(ty, w, acts, out) };
        }
    }
    rows_kernel::<Portable, A>(ty, w, acts, out)
}

fn check(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<(), QuantError> {
    if !supports(ty) {
        return Err(QuantError::Unsupported {
            ty,
            op: "tiled GEMM",
        });
    }
    check_bytes(ty, "weight row", n, w.len())?;
    let expected = row_bytes(GgmlType::Q8K, n)?;
    if a.len() != expected {
        return Err(QuantError::ByteLength {
            ty,
            what: "activation row",
            n,
            expected,
            got: a.len(),
        });
    }
    Ok(())
}

/// One output of the tiled GEMM: weight row `w` (`n` elements of `ty`) against an activation
/// row `a` quantized to Q8_K.
pub fn dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    check(ty, w, a, n)?;
    let mut out = [0f32];
    rows_dispatch(ty, w, &[a], &mut out);
    Ok(out[0])
}

/// [`dot`] of one weight row with every activation row in `acts` (`out[i]` for `acts[i]`),
/// unpacking each weight block once.
pub fn dot_rows<A: AsRef<[u8]>>(
    ty: GgmlType,
    w: &[u8],
    acts: &[A],
    n: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    if acts.len() != out.len() {
        return Err(QuantError::ElementCount {
            ty,
            what: "tiled GEMM output",
            expected: acts.len(),
            got: out.len(),
        });
    }
    for a in acts {
        check(ty, w, a.as_ref(), n)?;
    }
    rows_dispatch(ty, w, acts, out);
    Ok(())
}

/// [`dot`] through the code compiled without AVX2, whatever the CPU: lets tests check the path
/// taken on CPUs without AVX2 against ggml too.
#[doc(hidden)]
pub fn dot_portable(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    check(ty, w, a, n)?;
    let mut out = [0f32];
    rows_kernel::<Portable, _>(ty, w, &[a], &mut out);
    Ok(out[0])
}
