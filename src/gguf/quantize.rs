//! Row quantization for the writer: one adapter over `crate::quant` so the presets do not care
//! where the codecs live.

use super::reader::GgufError;
use crate::quant::{self, GgmlType};

/// Whether preset weights can be written in `ty`: the codec exists, and ggml computes with it as
/// a weight type (Q8_1 and Q8_K exist only as activation formats).
pub(crate) fn supported(ty: GgmlType) -> bool {
    if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8K) {
        return false;
    }
    let n = ty.block_size();
    let mut dst = vec![0u8; ty.type_size()];
    quant::quantize_row(ty, &vec![0f32; n], &mut dst).is_ok()
}

/// Encodes one row with ggml's reference quantizer; `dst` must be exactly
/// `ty.row_size(src.len())` bytes.
pub(crate) fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), GgufError> {
    quant::quantize_row(ty, src, dst)
        .map_err(|e| GgufError::Write(format!("quantizing a row to {ty}: {e}")))
}
