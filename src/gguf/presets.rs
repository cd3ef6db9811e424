//! Synthetic model presets.
