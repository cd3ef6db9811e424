//! Synthetic tokenizers.
