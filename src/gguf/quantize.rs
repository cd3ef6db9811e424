//! Row quantization for the writer.
