//! Scalar conversions exactly as ggml performs them on x86-64.
//!
//! ggml uses two different f32 -> f16 conversions: the portable bit trick of ggml-impl.h
//! (`GGML_FP32_TO_FP16`, used for every block scale, also by the CPU backend on x86 because
//! `GGML_CPU_FP32_TO_FP16` falls back to it), and the F16C instruction `vcvtps2ph` (used only for
//! whole vectors of activations). They agree on finite values and differ on NaN payloads.

/// `ggml_compute_fp16_to_fp32` (ggml-impl.h). Exact; NaNs come out quiet, as with `vcvtph2ps`.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    let exp_offset = 0xE0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 0x1.0p-112f
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;
    let magic_mask = 126u32 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;
    let cutoff = 1u32 << 27;
    let bits = if two_w < cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// `vcvtph2ps` on one value (ggml's `_cvtsh_ss`).
///
/// # Safety
/// The CPU must support F16C, and the caller should be compiled with it enabled (or this is
/// not inlined into a single instruction).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn f16_to_f32_f16c(h: u16) -> f32 {
    use std::arch::x86_64::*;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// `ggml_compute_fp32_to_fp16` (ggml-impl.h): round to nearest even; every NaN becomes 0x7E00
/// (with the input's sign).
#[inline(always)]
pub fn f32_to_f16_ggml(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 0x1.0p+112f
    let scale_to_zero = f32::from_bits(0x0880_0000); // 0x1.0p-110f
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let mut bias = shl1_w & 0xFF00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }
    #[allow(clippy::assign_op_pattern)] // C's operand order
    {
        base = f32::from_bits((bias >> 1) + 0x0780_0000) + base;
    }
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

/// F16C `vcvtps2ph` with round-to-nearest-even: NaNs keep the top of their payload.
#[inline]
pub fn f32_to_f16_hw(f: f32) -> u16 {
    half::f16::from_f32(f).to_bits()
}

/// `ggml_compute_bf16_to_fp32`: the upper half of an f32 (NaNs unchanged, unlike
/// `half::bf16::to_f32`, which quiets them).
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `ggml_compute_fp32_to_bf16`: round to nearest even, NaNs forced quiet.
#[inline(always)]
pub fn f32_to_bf16(f: f32) -> u16 {
    half::bf16::from_f32(f).to_bits()
}

/// `nearest_int` of ggml-quants.c: the 1.5 * 2^23 bit trick. Its assert is compiled out in
/// the pinned build, so out-of-range inputs give the same garbage as ggml does.
#[inline(always)]
pub fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() & 0x007F_FFFF) as i32 - 0x0040_0000
}

/// C's float -> int conversion as x86 does it (`cvttss2si`, `cvttps2dq`): truncation toward
/// zero; NaN and out-of-range values give `INT_MIN`.
#[inline(always)]
pub fn cvtt_i32(x: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        x as i32
    } else {
        i32::MIN
    }
}

/// `_mm_max_ps(a, b)` per lane: `a > b ? a : b` (the second operand on NaN).
#[inline(always)]
pub fn maxps(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Marks the top of a per-block loop body. Without it LLVM's loop vectorizer may vectorize
/// across blocks (eight blocks at once, their bytes gathered one by one), which is several
/// times slower than the vectorization within a block it otherwise does. Emits no instruction.
#[inline(always)]
pub fn block_boundary() {
    std::hint::black_box(());
}

#[inline(always)]
pub fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub fn le_f32(b: &[u8], at: usize) -> f32 {
    f32::from_bits(le_u32(b, at))
}

#[inline(always)]
pub fn le_i16(b: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([b[at], b[at + 1]])
}

/// fp16 scale stored little-endian at `at`.
#[inline(always)]
pub fn h(b: &[u8], at: usize) -> f32 {
    f16_to_f32(le_u16(b, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_to_f32_is_ieee_for_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            let ours = f16_to_f32(bits).to_bits();
            let ieee = half::f16::from_bits(bits).to_f32().to_bits();
            assert_eq!(ours, ieee, "f16 bits {bits:#06x}");
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn f16c_conversion_equals_ggml_for_every_bit_pattern() {
        if !std::is_x86_feature_detected!("f16c") {
            eprintln!("no F16C on this CPU: the F16C path is never taken, nothing to compare");
            return;
        }
        for bits in 0..=u16::MAX {
            // SAFETY: F16C is present (checked above).
            let hw = unsafe { f16_to_f32_f16c(bits) };
            assert_eq!(
                hw.to_bits(),
                f16_to_f32(bits).to_bits(),
                "f16 bits {bits:#06x}"
            );
        }
    }

    #[test]
    fn ggml_f16_rounding_equals_ieee_on_finite_values() {
        // Both are round-to-nearest-even; they may differ only on NaN payloads.
        let mut x = 0x9E37_79B9u32;
        for i in 0..2_000_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let bits = if i < 65536 {
                (i << 13) | (i & 1) << 12
            } else {
                x
            };
            let f = f32::from_bits(bits);
            let a = f32_to_f16_ggml(f);
            let b = f32_to_f16_hw(f);
            if f.is_nan() {
                assert_eq!(a & 0x7FFF, 0x7E00);
            } else {
                assert_eq!(a, b, "f32 bits {bits:#010x}");
            }
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-3.7), -4);
    }

    #[test]
    fn cvtt_matches_x86_for_out_of_range() {
        assert_eq!(cvtt_i32(f32::NAN), i32::MIN);
        assert_eq!(cvtt_i32(3.0e9), i32::MIN);
        assert_eq!(cvtt_i32(-2.9), -2);
    }
}
