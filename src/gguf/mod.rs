//! GGUF files: a reader over a memory map, a writer, and synthetic model presets.
