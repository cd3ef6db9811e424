//! SentencePiece-style tokenization as llama.cpp's `llm_tokenizer_spm_session::tokenize`
//! (src/llama-vocab.cpp) does it: the text, already escaped (spaces as `▁`), is split into
//! UTF-8 characters; adjacent pairs whose concatenation is a vocabulary token are merged,
//! highest score first and, on equal scores, the leftmost pair first; a final symbol that is not
//! a token is emitted as byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{TokenizerError, Vocab};

/// One symbol of the working text: a byte range and its neighbours in the linked list.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge (`llm_bigram_spm`).
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl Ord for Bigram {
    /// The order of llama.cpp's `llm_bigram_spm::comparator`, so that the heap's top is the
    /// highest score and, on a tie, the leftmost pair. Written with `<`/`>` rather than
    /// `total_cmp` so that `-0.0` and `0.0` tie as they do in C++.
    fn cmp(&self, other: &Self) -> Ordering {
        if self.score < other.score {
            Ordering::Less
        } else if self.score > other.score {
            Ordering::Greater
        } else {
            other.left.cmp(&self.left)
        }
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

/// Tokenizes one escaped text fragment, appending to `out`.
pub(super) fn tokenize(
    vocab: &Vocab,
    text: &str,
    out: &mut Vec<i32>,
) -> Result<(), TokenizerError> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let n_chars = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n_chars).then_some(i + 1),
        });
    }
    if symbols.is_empty() {
        return Ok(());
    }

    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left, right| {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r): (Symbol, Symbol) = (symbols[left], symbols[right]);
        let piece = &text[l.start..l.start + l.len + r.len];
        if let Some(&id) = vocab.ids.get(piece) {
            queue.push(Bigram {
                left,
                right,
                score: vocab.scores[id as usize],
                size: piece.len(),
            });
        }
    };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, Some(i - 1), Some(i));
    }

    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // One side already merged into something else: a stale candidate.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
            continue;
        }
        symbols[bigram.left].len += r.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = r.next;
        if let Some(next) = r.next {
            symbols[next].prev = Some(bigram.left);
        }
        try_add(&symbols, &mut queue, l.prev, Some(bigram.left));
        try_add(&symbols, &mut queue, Some(bigram.left), r.next);
    }

    let mut i = Some(0);
    while let Some(at) = i {
        let s = symbols[at];
        resegment(vocab, &text[s.start..s.start + s.len], out)?;
        i = s.next;
    }
    Ok(())
}

/// `llm_tokenizer_spm_session::resegment`: a symbol that is a token is emitted as it is, any
/// other as byte tokens. (llama.cpp also consults a map of the merges made, but every text in
/// that map is a vocabulary token and so is emitted before the map is reached.)
fn resegment(vocab: &Vocab, piece: &str, out: &mut Vec<i32>) -> Result<(), TokenizerError> {
    if let Some(&id) = vocab.ids.get(piece) {
        out.push(id);
        return Ok(());
    }
    for b in piece.bytes() {
        out.push(byte_to_token(vocab, b)?);
    }
    Ok(())
}

/// `llama_vocab::byte_to_token` for SPM vocabularies: the `<0xXX>` token, else the byte itself
/// as a one-character token; llama.cpp throws when neither exists.
fn byte_to_token(vocab: &Vocab, b: u8) -> Result<i32, TokenizerError> {
    if let Some(&id) = vocab.ids.get(&format!("<0x{b:02X}>")) {
        return Ok(id);
    }
    // The C++ builds a NUL-terminated one-byte string: byte 0 is the empty string and only
    // ASCII can equal a (UTF-8) vocabulary entry.
    if (1..0x80).contains(&b) {
        if let Some(&id) = vocab
            .ids
            .get(char::from(b).encode_utf8(&mut [0; 4]) as &str)
        {
            return Ok(id);
        }
    }
    Err(TokenizerError::NoByteToken(b))
}
