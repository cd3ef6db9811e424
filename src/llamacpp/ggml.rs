//! ggml's own block codecs through the shim: the yardstick the Rust quant code is proven
//! against, bit for bit.

use super::ffi;
use crate::quant::GgmlType;

/// `ggml_get_type_traits(type)->to_float`.
pub fn dequantize(ty: GgmlType, src: &[u8], n: usize) -> Option<Vec<f32>> {
    if ty.row_size(n)? > src.len() {
        return None;
    }
    let mut out = vec![0f32; n];
    // SAFETY: src holds a whole row of n elements, out has n floats.
    let rc = unsafe {
        ffi::llorch_ggml_dequantize(
            ty.id() as i32,
            src.as_ptr().cast(),
            out.as_mut_ptr(),
            n as i64,
        )
    };
    (rc == 0).then_some(out)
}

/// `ggml_get_type_traits(type)->from_float_ref` (ggml-quants.c `quantize_row_*_ref`).
pub fn quantize_ref(ty: GgmlType, src: &[f32]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; ty.row_size(src.len())?];
    // SAFETY: out has room for the whole row.
    let rc = unsafe {
        ffi::llorch_ggml_quantize_ref(
            ty.id() as i32,
            src.as_ptr(),
            out.as_mut_ptr().cast(),
            src.len() as i64,
        )
    };
    (rc >= 0).then_some(out)
}

/// `ggml_get_type_traits_cpu(type)->from_float`: how the CPU backend quantizes activations.
pub fn quantize_cpu(ty: GgmlType, src: &[f32]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; ty.row_size(src.len())?];
    // SAFETY: out has room for the whole row.
    let rc = unsafe {
        ffi::llorch_ggml_quantize_cpu(
            ty.id() as i32,
            src.as_ptr(),
            out.as_mut_ptr().cast(),
            src.len() as i64,
        )
    };
    (rc >= 0).then_some(out)
}

/// `type_traits_cpu[type].vec_dot_type`.
pub fn vec_dot_type(ty: GgmlType) -> Option<GgmlType> {
    // SAFETY: pure lookup.
    let id = unsafe { ffi::llorch_ggml_vec_dot_type(ty.id() as i32) };
    GgmlType::from_id(u32::try_from(id).ok()?).ok()
}

/// `type_traits_cpu[type].vec_dot` of one weight row and one activation row in vec_dot_type.
pub fn vec_dot(ty: GgmlType, n: usize, weight: &[u8], activation: &[u8]) -> Option<f32> {
    let act_ty = vec_dot_type(ty)?;
    if weight.len() < ty.row_size(n)? || activation.len() < act_ty.row_size(n)? {
        return None;
    }
    let mut out = 0f32;
    // SAFETY: both rows are long enough for n elements.
    let rc = unsafe {
        ffi::llorch_ggml_vec_dot(
            ty.id() as i32,
            n as i64,
            weight.as_ptr().cast(),
            activation.as_ptr().cast(),
            &mut out,
        )
    };
    (rc == 0).then_some(out)
}
