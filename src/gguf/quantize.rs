//! Row quantization for the writer: one adapter over `crate::quant` so the presets do not care
//! where the codecs live.
//!
//! Types with a Rust reference quantizer (F32, F16, BF16, Q4_0..Q8_0, Q2_K..Q6_K) use it; the
//! I-quants, the ternary and the FP4 types go through ggml's own `ggml_quantize_chunk` (the
//! quantizer llama.cpp's quantize tool runs), reached through the shim. Types whose ggml
//! quantizer requires an importance matrix (IQ2_XXS, IQ2_XS, IQ1_S) get a deterministic
//! synthetic one: every column weighted 1.

use super::reader::GgufError;
#[cfg(feature = "llama")]
use crate::llamacpp::ggml;
use crate::quant::{self, GgmlType};

/// Types written through ggml's quantizer rather than a Rust one.
fn via_ggml(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ1S | IQ1M | IQ4NL | IQ4XS | TQ1_0 | TQ2_0 | MXFP4
    )
}

/// Whether preset weights can be written in `ty`: the codec exists, and ggml computes with it as
/// a weight type (Q8_1 and Q8_K exist only as activation formats).
pub(crate) fn supported(ty: GgmlType) -> bool {
    if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8K) {
        return false;
    }
    if via_ggml(ty) {
        return true;
    }
    let n = ty.block_size();
    let mut dst = vec![0u8; ty.type_size()];
    quant::quantize_row(ty, &vec![0f32; n], &mut dst).is_ok()
}

/// Encodes one row with ggml's reference quantizer, or for the types of `via_ggml` with
/// `ggml_quantize_chunk`; `dst` must be exactly `ty.row_size(src.len())` bytes.
pub(crate) fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), GgufError> {
    let fail = |e: String| GgufError::Write(format!("quantizing a row to {ty}: {e}"));
    #[cfg(not(feature = "llama"))]
    if via_ggml(ty) {
        return Err(fail("built without llama.cpp (feature `llama`)".into()));
    }
    #[cfg(feature = "llama")]
    if via_ggml(ty) {
        let ones;
        let imatrix = if ggml::quantize_requires_imatrix(ty) {
            ones = vec![1f32; src.len()];
            Some(ones.as_slice())
        } else {
            None
        };
        let bytes = ggml::quantize_chunk(ty, src, src.len(), imatrix)
            .ok_or_else(|| fail("ggml_quantize_chunk refused the row".into()))?;
        if bytes.len() != dst.len() {
            return Err(fail(format!(
                "{} bytes for a {}-byte row",
                bytes.len(),
                dst.len()
            )));
        }
        dst.copy_from_slice(&bytes);
        return Ok(());
    }
    quant::quantize_row(ty, src, dst).map_err(|e| fail(e.to_string()))
}
