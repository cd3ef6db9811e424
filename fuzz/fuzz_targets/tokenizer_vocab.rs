//! The tokenizer with a vocabulary drawn from the input (see `checks::VocabInput`).
#![no_main]

use arbitrary::Arbitrary;

#[path = "../checks.rs"]
mod checks;

#[derive(Arbitrary, Debug)]
struct Input {
    spm: bool,
    /// A BPE vocabulary is drawn only when `!spm && bpe < 8` (1 input in 64): loading one
    /// compiles its pre-tokenizer's expressions, about half a second in this instrumented
    /// build, against microseconds for an SPM one.
    bpe: u8,
    pre: u8,
    byte_tokens: bool,
    tokens: Vec<(String, f32, i8)>,
    merges: Vec<(u16, u16)>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
    add_space_prefix: Option<bool>,
    text: String,
}

libfuzzer_sys::fuzz_target!(|i: Input| {
    checks::tokenizer_vocab(&checks::VocabInput {
        spm: i.spm || i.bpe >= 8,
        pre: i.pre,
        byte_tokens: i.byte_tokens,
        tokens: i.tokens,
        merges: i.merges,
        bos: i.bos,
        eos: i.eos,
        add_bos: i.add_bos,
        add_eos: i.add_eos,
        add_space_prefix: i.add_space_prefix,
        text: i.text,
    })
});
