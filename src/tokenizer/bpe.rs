//! GPT-2 byte-level BPE as llama.cpp's `llm_tokenizer_bpe_session::tokenize` does it
//! (src/llama-vocab.cpp, src/unicode.cpp), step for step:
//!
//! * pre-tokenization (`unicode_regex_split`, split.rs): the expressions of `llm_tokenizer_bpe`'s
//!   constructor for the file's pre-tokenizer type, applied in turn, each splitting every piece
//!   the previous ones left (matches and the text between them both become pieces); then each
//!   piece's UTF-8 bytes mapped to GPT-2's byte characters;
//! * each piece: starting from its characters, the adjacent pair of lowest merge rank is merged,
//!   leftmost on a tie (`llm_bigram_bpe::comparator`), until no pair has a rank;
//! * each resulting symbol becomes its token; a symbol that is not a token (a merge can make
//!   one) becomes the tokens of its single bytes, skipping bytes that have none.
//!
//! Merge ranks are `bpe_ranks` as llama.cpp fills it: a merge splits at its first space after
//! the first byte, and a repeated pair keeps its first rank.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};

use super::split::{split, Split};
use super::TokenizerError;

/// `LLAMA_VOCAB_PRE_TYPE_DEFAULT`.
const DEFAULT: &[Split] = &[
    Split::PunctuationRuns,
    Split::Gpt2,
    Split::NumberRuns,
    Split::ThreeDigits,
];

/// `LLAMA_VOCAB_PRE_TYPE_GPT2` and the others that use GPT-2's pattern alone.
const GPT2_ONLY: &[Split] = &[Split::Gpt2];

/// `LLAMA_VOCAB_PRE_TYPE_SMOLLM` and the others that split every digit off first.
const DIGITS_THEN_GPT2: &[Split] = &[Split::EachNumber, Split::Gpt2];

/// `LLAMA_VOCAB_PRE_TYPE_QWEN2`.
const QWEN2: &[Split] = &[Split::Qwen2];

/// The `tokenizer.ggml.pre` names supported, with the expressions llama.cpp uses for them.
/// These are the names whose only effect on tokenization in llama.cpp is the choice of
/// expressions (others also set flags such as `ignore_merges` or a BOS default).
const PRE_TOKENIZERS: &[(&str, &[Split])] = &[
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
    /// The pre-tokenizer's expressions, applied in turn.
    splits: &'static [Split],
    /// `bpe_ranks`, keyed by the merge's text: for sides that hold no space (byte-level text
    /// never does) `"{left} {right}"` is found exactly when llama.cpp finds `(left, right)`.
    ranks: HashMap<String, u32>,
    /// Token text -> id (`token_to_id`).
    ids: HashMap<String, i32>,
    /// GPT-2's byte -> character map (`unicode_byte_to_utf8`).
    byte_chars: [char; 256],
}

impl Bpe {
    /// `tokens` in id order; `merges` as stored in `tokenizer.ggml.merges` (rank = index).
    pub(super) fn new(
        tokens: &[String],
        merges: &[&str],
        pre: &str,
    ) -> Result<Bpe, TokenizerError> {
        let splits = PRE_TOKENIZERS
            .iter()
            .find(|(n, _)| *n == pre)
            .map(|(_, r)| *r)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer {
                pre: pre.to_string(),
                supported: supported_pre_tokenizers(),
            })?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // `emplace`: the first rank of a repeated merge stays.
            if let Entry::Vacant(e) = ranks.entry((*m).to_string()) {
                e.insert(rank as u32);
            }
        }
        // `token_to_id[text] = id` in id order: the last of a repeated text wins.
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as i32))
            .collect();
        Ok(Bpe {
            splits,
            ranks,
            ids,
            byte_chars: gpt2_byte_chars(),
        })
    }

    /// Tokenizes one text fragment, appending to `out`.
    pub(super) fn tokenize(&self, text: &str, out: &mut Vec<i32>) {
        for piece in split(text, self.splits) {
            let word: String = piece.bytes().map(|b| self.byte_chars[b as usize]).collect();
            for symbol in self.merge(&word) {
                match self.ids.get(symbol) {
                    Some(&id) => out.push(id),
                    None => {
                        for b in symbol.bytes() {
                            if let Some(&id) =
                                std::str::from_utf8(&[b]).ok().and_then(|s| self.ids.get(s))
                            {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The merge loop of `llm_tokenizer_bpe_session::tokenize` on one byte-encoded word: the
    /// symbols left, in order.
    fn merge<'w>(&self, word: &'w str) -> Vec<&'w str> {
        // Symbols are byte ranges of `word`; a merged-away symbol has length 0.
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        for (i, (start, c)) in word.char_indices().enumerate() {
            let end = start + c.len_utf8();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i as isize - 1,
                next: if end == word.len() {
                    -1
                } else {
                    i as isize + 1
                },
            });
        }
        let text = |s: &Symbol| &word[s.start..s.start + s.len];
        let mut queue = BinaryHeap::new();
        let mut key = String::new();
        let mut push =
            |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: isize, right: isize| {
                if left < 0 || right < 0 {
                    return;
                }
                let (l, r) = (&symbols[left as usize], &symbols[right as usize]);
                key.clear();
                key.push_str(text(l));
                key.push(' ');
                key.push_str(text(r));
                if let Some(&rank) = self.ranks.get(&key) {
                    queue.push(Bigram {
                        rank,
                        left: left as usize,
                        right: right as usize,
                        len: l.len + r.len,
                    });
                }
            };
        for i in 1..symbols.len() {
            push(&mut queue, &symbols, i as isize - 1, i as isize);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // An outdated pair: one side was merged away or grew since it was queued (symbols
            // are contiguous, so the same start and total length mean the same text).
            if l.len == 0 || r.len == 0 || l.next != b.right as isize || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if r.next >= 0 {
                symbols[r.next as usize].prev = b.left as isize;
            }
            push(&mut queue, &symbols, l.prev, b.left as isize);
            push(&mut queue, &symbols, b.left as isize, r.next);
        }
        symbols.iter().filter(|s| s.len > 0).map(text).collect()
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

/// A queued merge of two adjacent symbols (`llm_bigram_bpe`).
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    /// Their total length when queued.
    len: usize,
}

/// The heap pops the lowest rank, then the leftmost pair.
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.rank, other.left).cmp(&(self.rank, self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the others for the
/// characters from U+0100 on, in byte order.
fn gpt2_byte_chars() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(0xFF + n).expect("U+0100..U+0143")
        };
    }
    map
}
