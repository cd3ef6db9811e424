//! GPT-2 byte-level BPE on the HF `tokenizers` crate, set up to do what llama.cpp's
//! `llm_tokenizer_bpe_session::tokenize` does (src/llama-vocab.cpp, src/unicode.cpp):
//!
//! * pre-tokenization: the regular expressions of `llm_tokenizer_bpe`'s constructor for the
//!   file's pre-tokenizer type, applied in turn, each splitting every piece the previous ones
//!   left (`unicode_regex_split`: matches and the text between them both become pieces), here
//!   as `Split` pre-tokenizers with `Isolated` behaviour; then each piece's UTF-8 bytes mapped
//!   to GPT-2's byte characters (`ByteLevel` without its own regex);
//! * each piece: merges by rank, lowest first and leftmost on a tie (HF's `Word::merge_all`
//!   orders its queue exactly so), starting from single characters.
//!
//! llama.cpp runs GPT-2's pattern through a hand-written matcher
//! (`unicode_regex_split_custom_gpt2`) over its own Unicode tables; here it is the real regex
//! (fancy-regex) over the Rust `regex` crate's tables. They agree on everything the corpus test
//! checks; code points whose category changed between the two Unicode versions would differ.
//!
//! The merges are handed to HF as they are in the file, with two changes that do not alter the
//! result: entries llama.cpp can never apply (no space after the first byte, or a side that
//! contains a space or is empty) are dropped, and a repeated pair keeps its first rank
//! (llama.cpp's `bpe_ranks.emplace` keeps the first; HF's map would keep the last). A merge
//! whose sides or result are not tokens is refused: llama.cpp can apply such a merge and
//! fall back to bytes afterwards, HF's BPE cannot represent it.

use std::collections::HashSet;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::TokenizerError;

/// GPT-2's split pattern (`unicode_regex_split_custom_gpt2` implements it; llama.cpp's string
/// omits the final `|\s+`, which its matcher handles all the same).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// `LLAMA_VOCAB_PRE_TYPE_DEFAULT`.
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// `LLAMA_VOCAB_PRE_TYPE_GPT2` and the others that use GPT-2's pattern alone.
const GPT2_ONLY: &[&str] = &[GPT2];

/// `LLAMA_VOCAB_PRE_TYPE_SMOLLM` and the others that split every digit off first.
const DIGITS_THEN_GPT2: &[&str] = &[r"\p{N}", GPT2];

/// `LLAMA_VOCAB_PRE_TYPE_QWEN2`: llama.cpp's string (contractions spelled out case by case,
/// which its hand-written matcher `unicode_regex_split_custom_qwen2` recognizes).
const QWEN2: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

/// The `tokenizer.ggml.pre` names supported, with the regular expressions llama.cpp uses for
/// them. These are the names whose only effect on tokenization in llama.cpp is the choice of
/// expressions (others also set flags such as `ignore_merges` or a BOS default).
const PRE_TOKENIZERS: &[(&str, &[&str])] = &[
    ("default", DEFAULT),
    ("gpt-2", GPT2_ONLY),
    ("phi-2", GPT2_ONLY),
    ("mpt", GPT2_ONLY),
    ("olmo", GPT2_ONLY),
    ("smollm", DIGITS_THEN_GPT2),
    ("starcoder", DIGITS_THEN_GPT2),
    ("refact", DIGITS_THEN_GPT2),
    ("command-r", DIGITS_THEN_GPT2),
    // Also sets `clean_spaces = false`, which only affects detokenization.
    ("qwen2", QWEN2),
];

/// The supported pre-tokenizer names, for error messages.
pub(super) fn supported_pre_tokenizers() -> String {
    PRE_TOKENIZERS
        .iter()
        .map(|(n, _)| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) struct Bpe {
    hf: tokenizers::Tokenizer,
}

impl Bpe {
    /// `tokens` in id order; `merges` as stored in `tokenizer.ggml.merges` (rank = index).
    pub(super) fn new(
        tokens: &[String],
        merges: &[&str],
        pre: &str,
    ) -> Result<Bpe, TokenizerError> {
        let regexes = PRE_TOKENIZERS
            .iter()
            .find(|(n, _)| *n == pre)
            .map(|(_, r)| *r)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer {
                pre: pre.to_string(),
                supported: supported_pre_tokenizers(),
            })?;

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp: `word.find(' ', 1)`, the first space after the first byte.
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            // Symbols are never empty and never hold a raw space (byte-level text has none).
            if a.is_empty() || b.is_empty() || b.contains(' ') {
                continue;
            }
            let joined = format!("{a}{b}");
            for part in [a, b, joined.as_str()] {
                if !vocab.contains_key(part) {
                    return Err(TokenizerError::Vocabulary(format!(
                        "merge {rank} '{m}': '{part}' is not a token (such merges are not supported)"
                    )));
                }
            }
            if seen.insert((a, b)) {
                pairs.push((a.to_string(), b.to_string()));
            }
        }

        let model = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .build()
            .map_err(|e| TokenizerError::Library(format!("building the BPE model: {e}")))?;
        let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
        for r in regexes {
            let split = Split::new(
                SplitPattern::Regex((*r).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::Library(format!("compiling /{r}/: {e}")))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        let mut hf = tokenizers::Tokenizer::new(model);
        hf.with_pre_tokenizer(Some(Sequence::new(steps)));
        Ok(Bpe { hf })
    }

    /// Tokenizes one text fragment, appending to `out`.
    pub(super) fn tokenize(&self, text: &str, out: &mut Vec<i32>) -> Result<(), TokenizerError> {
        let enc = self
            .hf
            .encode(text, false)
            .map_err(|e| TokenizerError::Library(format!("encoding: {e}")))?;
        out.extend(enc.get_ids().iter().map(|&id| id as i32));
        Ok(())
    }
}
