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
#[allow(clippy::too_many_arguments)] // the C call's own arguments, named
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

/// `ggml_quantize_requires_imatrix(type)`: whether ggml's weight quantizer for `ty` needs an
/// importance matrix (IQ2_XXS, IQ2_XS, IQ1_S in this tree).
pub fn quantize_requires_imatrix(ty: GgmlType) -> bool {
    // SAFETY: pure lookup; unknown ids give -1.
    unsafe { ffi::llorch_ggml_quantize_requires_imatrix(ty.id() as i32) == 1 }
}

/// `ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix)`: ggml's weight quantizer
/// (the one llama.cpp's quantize tool uses, I-quants included, after `ggml_quantize_init`) for
/// `src.len() / n_per_row` rows. `imatrix`, when given, holds `n_per_row` importance weights.
/// None on a bad argument (a partial row or block, a missing imatrix where one is required, a
/// type ggml cannot write).
pub fn quantize_chunk(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
) -> Option<Vec<u8>> {
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return None;
    }
    if imatrix.is_some_and(|m| m.len() != n_per_row) {
        return None;
    }
    let nrows = src.len() / n_per_row;
    let mut out = vec![0u8; ty.row_size(n_per_row)?.checked_mul(nrows)?];
    // SAFETY: src holds nrows whole rows, out has room for them, imatrix (if any) n_per_row
    // floats; the shim checks the type and the block alignment before calling ggml.
    let rc = unsafe {
        ffi::llorch_ggml_quantize_chunk(
            ty.id() as i32,
            src.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            nrows as i64,
            n_per_row as i64,
            imatrix.map_or(std::ptr::null(), <[f32]>::as_ptr),
        )
    };
    (rc >= 0 && rc as usize == out.len()).then_some(out)
}

/// `ggml_type_name(type)`.
pub fn type_name(ty: GgmlType) -> Option<String> {
    // SAFETY: returns NULL or a pointer to a static NUL-terminated string of ggml's table.
    let p = unsafe { ffi::llorch_ggml_type_name(ty.id() as i32) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, static and NUL-terminated (see above).
    let name = unsafe { std::ffi::CStr::from_ptr(p) };
    Some(name.to_string_lossy().into_owned())
}

/// `ggml_blck_size(type)`.
pub fn blck_size(ty: GgmlType) -> Option<usize> {
    // SAFETY: pure lookup; unknown ids give -1.
    let b = unsafe { ffi::llorch_ggml_blck_size(ty.id() as i32) };
    usize::try_from(b).ok().filter(|&b| b > 0)
}

/// `ggml_row_size(type, n)` (`n` a whole number of blocks).
pub fn row_size(ty: GgmlType, n: usize) -> Option<usize> {
    let b = blck_size(ty)?;
    if !n.is_multiple_of(b) {
        return None;
    }
    // SAFETY: pure arithmetic on ggml's type table; n is a whole number of blocks.
    Some(unsafe { ffi::llorch_ggml_row_size(ty.id() as i32, n as i64) })
}
