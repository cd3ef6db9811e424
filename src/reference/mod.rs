//! The Rust reference forward pass: an independent producer of the same checkpoints.
