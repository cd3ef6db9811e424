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
//! The integer sums are exact: no `maddubs` pair can saturate for these formats (codes of at
//! most 5 bits against signed bytes for Q2_K/Q4_K/Q5_K; for Q3_K/Q6_K the activation is
//! shifted to `q8 + 128` and the weight debiased to at most 32 in magnitude, 2·255·32 < 2^15),
//! and the `+128` shift is taken out again by an integer correction computed from the same
//! codes, so ggml's wrapping i32 arithmetic yields the value above whatever the bytes.
//! `(f32)` is `_mm256_cvtepi32_ps`, round to nearest even like Rust's `as f32`.
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
//!
//! `d` (and `dmin`) are the block's fp16 fields widened to f32. The element order of the codes
//! is the one `dequantize_row_*` uses, so the crate's decoders give them.

use super::dequant::{crumbs, q3k_quants, q3k_scales, q5k_quants, q6k_quants, scale_min_k4};
use super::fp::{block_boundary, h, le_f32, le_i16};
use super::{check_bytes, row_bytes, GgmlType, QuantError};

/// Whether `ggml_tiled_supported` takes weights of `ty` (the I-quants it also takes are not
/// types of this crate).
pub fn supports(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K
    )
}

/// One 256-element weight block as the microkernel reads it: debiased codes, one scale (and
/// min) per 16 elements (a 32-element subblock's value repeated over its two halves, which
/// leaves the exact integer sums unchanged), `d` and `dmin` as f32.
struct Tile {
    w: [i8; 256],
    scales: [i32; 16],
    mins: [i32; 16],
    has_min: bool,
    d: f32,
    dmin: f32,
}

/// Bytes of a Q8_K block: `d` (f32), 256 quants, 16 `bsums` (i16).
const Q8K_BYTES: usize = 292;

#[inline(always)]
fn unpack(ty: GgmlType, b: &[u8]) -> Tile {
    let mut t = Tile {
        w: [0; 256],
        scales: [0; 16],
        mins: [0; 16],
        has_min: false,
        d: 0.0,
        dmin: 0.0,
    };
    match ty {
        GgmlType::Q2K => {
            let q = crumbs(&b[16..80]);
            for (w, &c) in t.w.iter_mut().zip(&q) {
                *w = c as i8;
            }
            for s in 0..16 {
                t.scales[s] = i32::from(b[s] & 0xF);
                t.mins[s] = i32::from(b[s] >> 4);
            }
            t.has_min = true;
            t.d = h(b, 80);
            t.dmin = h(b, 82);
        }
        GgmlType::Q3K => {
            // q3k_quants gives code - 4 (code = low bits | high bit << 2).
            t.w = q3k_quants(&b[0..32], &b[32..96]);
            let sc = q3k_scales(&b[96..108]);
            for s in 0..16 {
                t.scales[s] = i32::from(sc[s]) - 32;
            }
            t.d = h(b, 108);
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
            for (w, &c) in t.w.iter_mut().zip(&q) {
                *w = c as i8;
            }
            for s in 0..8 {
                let (sc, mn) = scale_min_k4(s, &b[4..16]);
                t.scales[2 * s] = i32::from(sc);
                t.scales[2 * s + 1] = i32::from(sc);
                t.mins[2 * s] = i32::from(mn);
                t.mins[2 * s + 1] = i32::from(mn);
            }
            t.has_min = true;
            t.d = h(b, 0);
            t.dmin = h(b, 2);
        }
        GgmlType::Q6K => {
            let q = q6k_quants(&b[0..192]);
            for (w, &c) in t.w.iter_mut().zip(&q) {
                *w = c as i8 - 32;
            }
            for s in 0..16 {
                t.scales[s] = i32::from(b[192 + s] as i8);
            }
            t.d = h(b, 208);
        }
        _ => {}
    }
    t
}

/// `res` of one block against one Q8_K block `a`, then the accumulator update.
#[inline(always)]
fn block_acc(t: &Tile, a: &[u8], acc: f32) -> f32 {
    let q8 = &a[4..260];
    let mut s1 = 0i32;
    for g in 0..16 {
        let w = &t.w[16 * g..16 * g + 16];
        let q = &q8[16 * g..16 * g + 16];
        let mut raw = 0i32;
        for e in 0..16 {
            raw += i32::from(w[e]) * i32::from(q[e] as i8);
        }
        s1 = s1.wrapping_add(raw.wrapping_mul(t.scales[g]));
    }
    let mut res = t.d * s1 as f32;
    if t.has_min {
        let mut s2 = 0i32;
        for g in 0..16 {
            s2 = s2.wrapping_add(t.mins[g].wrapping_mul(i32::from(le_i16(a, 260 + 2 * g))));
        }
        res = (-t.dmin).mul_add(s2 as f32, res);
    }
    res.mul_add(le_f32(a, 0), acc)
}

#[inline(always)]
fn rows_kernel<A: AsRef<[u8]>>(ty: GgmlType, w: &[u8], acts: &[A], out: &mut [f32]) {
    let wb = ty.type_size();
    out.fill(0.0);
    for (k, b) in w.chunks_exact(wb).enumerate() {
        block_boundary();
        let tile = unpack(ty, b);
        for (o, a) in out.iter_mut().zip(acts) {
            let a = &a.as_ref()[k * Q8K_BYTES..(k + 1) * Q8K_BYTES];
            *o = block_acc(&tile, a, *o);
        }
    }
}

/// [`rows_kernel`] compiled for AVX2/FMA where the CPU has them (same bits either way: the
/// integer sums are exact and `mul_add` is fused in both copies).
fn rows_dispatch<A: AsRef<[u8]>>(ty: GgmlType, w: &[u8], acts: &[A], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn v3<A: AsRef<[u8]>>(ty: GgmlType, w: &[u8], acts: &[A], out: &mut [f32]) {
            rows_kernel(ty, w, acts, out)
        }
        if super::has_v3() {
            // SAFETY: the CPU supports the features `v3` was compiled for.
            return unsafe { v3(ty, w, acts, out) };
        }
    }
    rows_kernel(ty, w, acts, out)
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
    rows_kernel(ty, w, &[a], &mut out);
    Ok(out[0])
}
