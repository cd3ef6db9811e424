//! GGUF files: a reader over a memory map, a writer, and synthetic model presets.
//!
//! The format (v2 and v3, little-endian) as ggml/src/gguf.cpp of the pinned tree reads it:
//! magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the metadata key/value
//! pairs, the tensor infos (name, n_dims, dims innermost first, type id, offset relative to the
//! data section), padding to `general.alignment` (default 32), then the tensor data.

pub mod edit;
pub mod params;
pub mod presets;
pub mod reader;
pub mod writer;

mod quantize;
mod vocab;

pub use params::{Arch, ModelParams, RopeScaling, RopeScalingType};
pub use reader::{GgufError, GgufFile, MetaValue, TensorInfo, TensorView};
pub use writer::GgufWriter;

/// The alignment of the data section when a file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// ggml's `GGML_MAX_NAME`: a tensor name has at most this many bytes minus one.
pub const MAX_NAME: usize = 64;
