//! ggml's CPU dot products (`type_traits_cpu[ty].vec_dot`) as compiled for x86-64-v3.
//!
//! Each kernel mirrors the AVX2 branch of the named ggml function lane for lane: the integer
//! block dot is formed exactly as the `maddubs`/`madd` sequence forms it (including the
//! `_mm256_sign_epi8` trick, under which an activation of -128 facing a negative weight is
//! multiplied as -128, not +128), each 8-lane float accumulator is updated with a fused
//! multiply-add in the same order, and the final horizontal sums follow `hsum_float_8` and
//! friends. No summation order differs from ggml's. None of the integer sums can saturate for
//! these formats (`maddubs` pairs stay far below 2^15), so saturation is not modelled. With
//! these choices the kernels reproduce ggml bit for bit; tests/quant_ggml.rs checks that on
//! random rows (realistic ones, and raw random bytes with finite scales), for both [`Isa`]s.

use super::dequant::{
    crumbs, five_bits, q3k_scales, q5k_quants, q6k_quants, scalar_row, scale_min_k4,
};
use super::fp::{bf16_to_f32, block_boundary, f16_to_f32, h, le_f32, le_i16, le_u16, le_u32};

/// `hsum_float_8`: (hi + lo), then lanes 0+2 and 1+3, then those two.
#[inline(always)]
pub(crate) fn hsum8(a: &[f32; 8]) -> f32 {
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

/// The integer part of the kernels: 32 (or 256) byte products summed into eight i32 lanes.
/// [`Portable`] spells the arithmetic out; [`Avx2`] is ggml's own instruction sequence. They
/// agree exactly because no `maddubs` pair sum can saturate for these formats.
pub(crate) trait Isa {
    /// `mul_sum_i8_pairs_float` before the conversion: lane `k` sums the products of elements
    /// `4k..4k+4`, each `|x| * sign(y, x)`.
    fn lanes_signed(x: &[i8; 32], y: &[u8]) -> [i32; 8];
    /// `mul_sum_us8_pairs_float` before the conversion: unsigned `x` times signed `y`.
    fn lanes_unsigned(x: &[u8; 32], y: &[u8]) -> [i32; 8];
    /// A K-quant block: element `e` of 256 falls in lane `(e % 32) / 4`, its product weighted
    /// by `sc16[e / 16]` (`maddubs` then `madd` with the scales).
    fn k_lanes(q: &[u8; 256], q8: &[u8], sc16: &[i16; 16]) -> [i32; 8];
    /// The fp16 at byte `at` of `b`. Exact either way (F16C and ggml's portable conversion
    /// agree on all 65536 inputs, NaNs included; see the fp tests).
    fn f16(b: &[u8], at: usize) -> f32;
}

pub(crate) struct Portable;

impl Isa for Portable {
    #[inline(always)]
    fn f16(b: &[u8], at: usize) -> f32 {
        h(b, at)
    }

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
    fn k_lanes(q: &[u8; 256], q8: &[u8], sc16: &[i16; 16]) -> [i32; 8] {
        let q8 = &q8[..256];
        let mut lanes = [0i32; 8];
        for c in 0..8 {
            for k in 0..8 {
                let e0 = 32 * c + 4 * k;
                let mut p = 0i32;
                for e in e0..e0 + 4 {
                    p += q[e] as i32 * q8[e] as i8 as i32;
                }
                let sc = sc16[e0 / 16] as i32;
                lanes[k] = lanes[k].wrapping_add(sc.wrapping_mul(p));
            }
        }
        lanes
    }
}

/// ggml's AVX2 instruction sequences. Only used from code compiled with AVX2 enabled (the
/// `v3` copy of the dispatcher, taken after a CPU feature check).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    #[inline(always)]
    fn f16(b: &[u8], at: usize) -> f32 {
        // SAFETY: F16C is enabled where this is inlined (see the type's doc).
        unsafe { super::fp::f16_to_f32_f16c(le_u16(b, at)) }
    }

    #[inline(always)]
    fn lanes_signed(x: &[i8; 32], y: &[u8]) -> [i32; 8] {
        use std::arch::x86_64::*;
        let y = &y[..32];
        let mut out = [0i32; 8];
        // SAFETY: AVX2 is enabled where this is inlined (see the type's doc); both loads and
        // the store cover exactly 32 bytes of arrays/slices of that length.
        unsafe {
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let yv = _mm256_loadu_si256(y.as_ptr().cast());
            let ax = _mm256_sign_epi8(xv, xv);
            let sy = _mm256_sign_epi8(yv, xv);
            let dot = _mm256_maddubs_epi16(ax, sy);
            let sum = _mm256_madd_epi16(_mm256_set1_epi16(1), dot);
            _mm256_storeu_si256(out.as_mut_ptr().cast(), sum);
        }
        out
    }

    #[inline(always)]
    fn lanes_unsigned(x: &[u8; 32], y: &[u8]) -> [i32; 8] {
        use std::arch::x86_64::*;
        let y = &y[..32];
        let mut out = [0i32; 8];
        // SAFETY: as in `lanes_signed`.
        unsafe {
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let yv = _mm256_loadu_si256(y.as_ptr().cast());
            let dot = _mm256_maddubs_epi16(xv, yv);
            let sum = _mm256_madd_epi16(_mm256_set1_epi16(1), dot);
            _mm256_storeu_si256(out.as_mut_ptr().cast(), sum);
        }
        out
    }

    #[inline(always)]
    fn k_lanes(q: &[u8; 256], q8: &[u8], sc16: &[i16; 16]) -> [i32; 8] {
        use std::arch::x86_64::*;
        let q8 = &q8[..256];
        let mut out = [0i32; 8];
        // SAFETY: as in `lanes_signed`; chunk `c` reads bytes 32c..32c+32 of 256-byte arrays.
        unsafe {
            let mut sum = _mm256_setzero_si256();
            for c in 0..8 {
                let qv = _mm256_loadu_si256(q.as_ptr().add(32 * c).cast());
                let yv = _mm256_loadu_si256(q8.as_ptr().add(32 * c).cast());
                let p16 = _mm256_maddubs_epi16(qv, yv);
                let sc =
                    _mm256_set_m128i(_mm_set1_epi16(sc16[2 * c + 1]), _mm_set1_epi16(sc16[2 * c]));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(sc, p16));
            }
            _mm256_storeu_si256(out.as_mut_ptr().cast(), sum);
        }
        out
    }
}

#[inline(always)]
pub(crate) fn fma_lanes(acc: &mut [f32; 8], d: f32, lanes: &[i32; 8]) {
    for k in 0..8 {
        acc[k] = d.mul_add(lanes[k] as f32, acc[k]);
    }
}

/// `ggml_vec_dot_q4_0_q8_0`.
#[inline(always)]
pub(crate) fn q4_0<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        block_boundary();
        let d = I::f16(bx, 0) * I::f16(by, 0);
        let qs = &bx[2..18];
        let mut xv = [0i8; 32];
        for j in 0..16 {
            xv[j] = (qs[j] & 0x0F) as i8 - 8;
            xv[j + 16] = (qs[j] >> 4) as i8 - 8;
        }
        fma_lanes(&mut acc, d, &I::lanes_signed(&xv, &by[2..34]));
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_q4_1_q8_1`.
#[inline(always)]
pub(crate) fn q4_1<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (bx, by) in x.chunks_exact(20).zip(y.chunks_exact(36)) {
        block_boundary();
        let d0 = I::f16(bx, 0);
        let d1 = I::f16(by, 0);
        summs += I::f16(bx, 2) * I::f16(by, 2);
        let qs = &bx[4..20];
        let mut xv = [0u8; 32];
        for j in 0..16 {
            xv[j] = qs[j] & 0x0F;
            xv[j + 16] = qs[j] >> 4;
        }
        fma_lanes(&mut acc, d0 * d1, &I::lanes_unsigned(&xv, &by[4..36]));
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q5_0_q8_0`.
#[inline(always)]
pub(crate) fn q5_0<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(22).zip(y.chunks_exact(34)) {
        block_boundary();
        let d = I::f16(bx, 0) * I::f16(by, 0);
        let q = five_bits(&bx[6..22], le_u32(bx, 2));
        let mut xv = [0i8; 32];
        for j in 0..32 {
            xv[j] = q[j] as i8 - 16;
        }
        fma_lanes(&mut acc, d, &I::lanes_signed(&xv, &by[2..34]));
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_q5_1_q8_1`.
#[inline(always)]
pub(crate) fn q5_1<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (bx, by) in x.chunks_exact(24).zip(y.chunks_exact(36)) {
        block_boundary();
        let dx = I::f16(bx, 0);
        summs += I::f16(bx, 2) * I::f16(by, 2);
        let dy = I::f16(by, 0);
        let xv = five_bits(&bx[8..24], le_u32(bx, 4));
        // fmadd(q, dx*dy, acc): the product of the scales is rounded first.
        fma_lanes(&mut acc, dx * dy, &I::lanes_unsigned(&xv, &by[4..36]));
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q8_0_q8_0`.
#[inline(always)]
pub(crate) fn q8_0<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(34).zip(y.chunks_exact(34)) {
        block_boundary();
        let d = I::f16(bx, 0) * I::f16(by, 0);
        let mut xv = [0i8; 32];
        for (o, &b) in xv.iter_mut().zip(&bx[2..34]) {
            *o = b as i8;
        }
        fma_lanes(&mut acc, d, &I::lanes_signed(&xv, &by[2..34]));
    }
    hsum8(&acc)
}

/// Q8_K activation block: d, quants, bsums.
#[inline(always)]
pub(crate) fn q8k_parts(by: &[u8]) -> (f32, &[u8], [i16; 16]) {
    let mut bs = [0i16; 16];
    for (k, b) in bs.iter_mut().enumerate() {
        *b = le_i16(by, 260 + 2 * k);
    }
    (le_f32(by, 0), &by[4..260], bs)
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
pub(crate) fn q2_k<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(84).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * I::f16(bx, 80);
        let dmin = -yd * I::f16(bx, 82);
        let sc = &bx[0..16];
        let mut prod = [0i32; 8];
        for m in 0..8 {
            prod[m] = (sc[2 * m] >> 4) as i32 * bs[2 * m] as i32
                + (sc[2 * m + 1] >> 4) as i32 * bs[2 * m + 1] as i32;
        }
        fma_lanes(&mut acc, dmin, &prod);
        let q = crumbs(&bx[16..80]);
        let mut sc16 = [0i16; 16];
        for (g, s) in sc16.iter_mut().enumerate() {
            *s = (sc[g] & 0xF) as i16;
        }
        fma_lanes(&mut acc, d, &I::k_lanes(&q, q8, &sc16));
    }
    hsum8(&acc)
}

/// `ggml_vec_dot_q3_K_q8_K`.
#[inline(always)]
pub(crate) fn q3_k<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(110).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, _) = q8k_parts(by);
        let d = yd * I::f16(bx, 108);
        let hm = &bx[0..32];
        let low = crumbs(&bx[32..96]);
        let sc = q3k_scales(&bx[96..108]);
        // As the AVX2 code: the low bits and the "4 where the high bit is clear" part go
        // through `maddubs` separately and are subtracted.
        let mut high = [0u8; 256];
        for j in 0..2 {
            for s in 0..4 {
                let bit = 4 * j + s;
                for i in 0..32 {
                    high[128 * j + 32 * s + i] = (!(hm[i] >> bit) & 1) << 2;
                }
            }
        }
        let mut sc16 = [0i16; 16];
        for (g, s) in sc16.iter_mut().enumerate() {
            *s = sc[g].wrapping_sub(32) as i16;
        }
        let pl = I::k_lanes(&low, q8, &sc16);
        let ph = I::k_lanes(&high, q8, &sc16);
        let mut lanes = [0i32; 8];
        for k in 0..8 {
            lanes[k] = pl[k].wrapping_sub(ph[k]);
        }
        fma_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc)
}

/// Per-32 scales repeated for each half: the 16-group scales of `Isa::k_lanes`.
#[inline(always)]
fn per16(sc: &[u8; 8]) -> [i16; 16] {
    let mut out = [0i16; 16];
    for (g, o) in out.iter_mut().enumerate() {
        *o = sc[g / 2] as i16;
    }
    out
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
pub(crate) fn q4_k<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut acc_m = [0f32; 4];
    for (bx, by) in x.chunks_exact(144).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * I::f16(bx, 0);
        let dmin = -yd * I::f16(bx, 2);
        let (sc, mn) = k4_scales_mins(&bx[4..16]);
        let prod = k4_min_lanes(&mn, &bs);
        for j in 0..4 {
            acc_m[j] = dmin.mul_add(prod[j] as f32, acc_m[j]);
        }
        let qs = &bx[16..144];
        let mut q = [0u8; 256];
        for j in 0..4 {
            for i in 0..32 {
                q[64 * j + i] = qs[32 * j + i] & 0xF;
                q[64 * j + 32 + i] = qs[32 * j + i] >> 4;
            }
        }
        fma_lanes(&mut acc, d, &I::k_lanes(&q, q8, &per16(&sc)));
    }
    let m = (acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]);
    hsum8(&acc) + m
}

/// `ggml_vec_dot_q5_K_q8_K`.
#[inline(always)]
pub(crate) fn q5_k<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (bx, by) in x.chunks_exact(176).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * I::f16(bx, 0);
        let dmin = -yd * I::f16(bx, 2);
        let (sc, mn) = k4_scales_mins(&bx[4..16]);
        let prod = k4_min_lanes(&mn, &bs);
        let hs = prod[0]
            .wrapping_add(prod[1])
            .wrapping_add(prod[2].wrapping_add(prod[3]));
        summs += dmin * hs as f32;
        let q = q5k_quants(&bx[16..48], &bx[48..176]);
        fma_lanes(&mut acc, d, &I::k_lanes(&q, q8, &per16(&sc)));
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q6_K_q8_K`.
#[inline(always)]
pub(crate) fn q6_k<I: Isa>(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bx, by) in x.chunks_exact(210).zip(y.chunks_exact(292)) {
        block_boundary();
        let (yd, q8, bs) = q8k_parts(by);
        let d = yd * I::f16(bx, 208);
        let mut sc = [0i16; 16];
        for (k, s) in sc.iter_mut().enumerate() {
            *s = bx[192 + k] as i8 as i16;
        }
        let q = q6k_quants(&bx[0..192]);
        let mut lanes = I::k_lanes(&q, q8, &sc);
        // The -32 offset of the quants, applied through the bsums (q8sclsub).
        for m in 0..8 {
            let sub = (bs[2 * m] as i32 * sc[2 * m] as i32
                + bs[2 * m + 1] as i32 * sc[2 * m + 1] as i32)
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
