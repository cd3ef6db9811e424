//! ggml's repacked GEMM and GEMV (ggml-cpu/repack.cpp, arch/x86/repack.cpp) for one output
//! element: the kernels llama.cpp's CPU backend runs for weights it loads into its repack buffer.

use super::{GgmlType, QuantError};

/// Whether `ggml_repack_get_optimal_repack_type` (x86-64-v3) has a layout for an `n_out`-row
/// weight of `ty`.
pub fn has_layout(ty: GgmlType, n_out: usize) -> bool {
    let _ = (ty, n_out);
    false
}

/// One output of the repacked GEMM (activation rows in whole groups of four).
pub fn gemm_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    let _ = (w, a, n);
    Err(QuantError::Unsupported {
        ty,
        op: "repacked GEMM",
    })
}

/// One output of the repacked GEMV.
pub fn gemv_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    let _ = (w, a, n);
    Err(QuantError::Unsupported {
        ty,
        op: "repacked GEMV",
    })
}
