//! Row quantization for the writer: one adapter so the presets do not care where the codecs live.
//!
//! These follow ggml-quants.c `quantize_row_*_ref` (round-half-away-from-zero, the same block
//! layouts) for the types the presets need until `crate::quant::quantize_row` covers them.

use half::{bf16, f16};

use super::reader::GgufError;
use crate::quant::GgmlType;

/// Whether `ty` can be written by [`quantize_row`].
pub(crate) fn supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q8_0
            | GgmlType::Q4_0
            | GgmlType::Q4_1
    )
}

/// Encodes one row; `dst` must be exactly `ty.row_size(src.len())` bytes.
pub(crate) fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), GgufError> {
    if ty.row_size(src.len()) != Some(dst.len()) {
        return Err(GgufError::Write(format!(
            "{ty}: {} values do not fill a {}-byte row",
            src.len(),
            dst.len()
        )));
    }
    match ty {
        GgmlType::F32 => {
            for (d, x) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (d, x) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (d, x) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&bf16::from_f32(*x).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => {
            for (b, x) in dst.chunks_exact_mut(34).zip(src.chunks_exact(32)) {
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                for (q, v) in b[2..].iter_mut().zip(x) {
                    *q = ((v * id).round() as i8) as u8;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (b, x) in dst.chunks_exact_mut(18).zip(src.chunks_exact(32)) {
                // The signed value of largest magnitude maps to -8.
                let max = x
                    .iter()
                    .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                for j in 0..16 {
                    b[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
                }
            }
        }
        GgmlType::Q4_1 => {
            for (b, x) in dst.chunks_exact_mut(20).zip(src.chunks_exact(32)) {
                let min = x.iter().fold(f32::MAX, |m, &v| m.min(v));
                let max = x.iter().fold(-f32::MAX, |m, &v| m.max(v));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                b[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
                for j in 0..16 {
                    b[4 + j] = q(x[j]) | (q(x[j + 16]) << 4);
                }
            }
        }
        other => {
            return Err(GgufError::Write(format!(
                "writing {other} tensors is not supported yet"
            )))
        }
    }
    Ok(())
}
