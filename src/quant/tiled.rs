//! ggml's tiled GEMM (ggml-cpu/tiled/tiled.cpp, tiled-kernel.cpp) for one output element: the
//! kernel llama.cpp's CPU backend runs for K-quant and I-quant weights when a matmul has eight
//! or more activation rows (and the weight is not repacked).

use super::{GgmlType, QuantError};

/// Whether `ggml_tiled_supported` takes weights of `ty`.
pub fn supports(ty: GgmlType) -> bool {
    let _ = ty;
    false
}

/// One output of the tiled GEMM: weight row `w` against an activation row `a` quantized to Q8_K.
pub fn dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> Result<f32, QuantError> {
    let _ = (w, a, n);
    Err(QuantError::Unsupported {
        ty,
        op: "tiled GEMM",
    })
}
