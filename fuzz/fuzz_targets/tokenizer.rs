//! The SmolLM2 tokenizer (gpt2 byte-level BPE, `smollm` pre-tokenizer, user-defined tokens) on
//! arbitrary text.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use llorch_diff::tokenizer::Tokenizer;

#[path = "../checks.rs"]
mod checks;

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        checks::smollm2_tokenizer(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tokenizer(tokenizer(), data));
