//! Tokenizers built from GGUF metadata.

use crate::gguf::GgufFile;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the Rust tokenizer is not available yet")]
    Unavailable,
}

pub struct Tokenizer {}

impl Tokenizer {
    pub fn from_gguf(_file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Err(TokenizerError::Unavailable)
    }

    /// As llama.cpp's `llama_tokenize(text, add_special = true, parse_special = false)`.
    pub fn encode(&self, _text: &str) -> Result<Vec<i32>, TokenizerError> {
        Err(TokenizerError::Unavailable)
    }
}
