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

/// The result of one MUL_MAT computed by ggml's CPU backend.
#[derive(Debug, Clone)]
pub struct MulMat {
    /// `[t, n_out]`, row-major.
    pub out: Vec<f32>,
    /// Whether the backend moved the weight to its repack buffer (and so ran a repacked kernel).
    pub repacked: bool,
}

/// `ggml_mul_mat(weight, x)` computed by ggml's CPU backend as a graph, with `threads` threads:
/// whichever kernel the backend dispatches to (vec_dot, llamafile sgemm, the tiled GEMM, a
/// repacked GEMM/GEMV when `repack` and the weight has a repacked layout). `weight` holds
/// `n_out` rows of `n_in` elements of `ty`; `x` holds `t` rows of `n_in` floats.
pub fn mul_mat(
    ty: GgmlType,
    weight: &[u8],
    n_in: usize,
    n_out: usize,
    x: &[f32],
    t: usize,
    threads: usize,
    repack: bool,
) -> Option<MulMat> {
    if weight.len() < ty.row_size(n_in)? * n_out || x.len() < n_in * t {
        return None;
    }
    let mut out = vec![0f32; n_out * t];
    // SAFETY: weight holds n_out rows, x holds t rows, out has room for t * n_out floats.
    let rc = unsafe {
        ffi::llorch_ggml_mul_mat(
            ty.id() as i32,
            weight.as_ptr().cast(),
            n_in as i64,
            n_out as i64,
            x.as_ptr(),
            t as i64,
            threads.max(1) as i32,
            i32::from(repack),
            out.as_mut_ptr(),
        )
    };
    (rc >= 0).then_some(MulMat {
        out,
        repacked: rc == 1,
    })
}
