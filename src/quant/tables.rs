//! The format tables of ggml-common.h (I-quant grids and signs, the non-linear 4-bit values,
//! the FP4 values), generated at build time from the pinned llama.cpp tree by build.rs.

include!(concat!(env!("OUT_DIR"), "/ggml_tables.rs"));

/// Byte `j` of a grid entry, as ggml reads it through a `uint8_t *` (little-endian).
#[inline(always)]
pub(crate) fn byte_u64(v: u64, j: usize) -> u8 {
    (v >> (8 * j)) as u8
}

#[inline(always)]
pub(crate) fn byte_u32(v: u32, j: usize) -> u8 {
    (v >> (8 * j)) as u8
}
