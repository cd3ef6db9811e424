//! Synthetic tokenizers for the presets: a SentencePiece-style vocabulary (`llama`) and a
//! GPT-2 byte-level BPE (`gpt2`), both learned by plain BPE on a small built-in English text so
//! that the pieces and merges are ones a real tokenizer could have.

use std::collections::HashMap;

use super::reader::MetaValue;

/// llama.cpp's `llama_token_type` values (`LLAMA_TOKEN_TYPE_*`).
pub(crate) const TYPE_NORMAL: i32 = 1;
pub(crate) const TYPE_UNKNOWN: i32 = 2;
pub(crate) const TYPE_CONTROL: i32 = 3;
pub(crate) const TYPE_BYTE: i32 = 6;

/// Training text: plain English prose with punctuation, digits and a newline or two.
pub(crate) const CORPUS: &str = "\
The quick brown fox jumps over the lazy dog. A small model can still tell a story, \
if the words it knows are common ones. Once upon a time there was a little town by the sea, \
and in that town lived an old woman who made bread every morning before the sun came up. \
She would open her window, listen to the birds, and think about the people she loved. \
Her son worked on a boat and came home in the evening with fish for dinner. \
The children of the town played in the street, running and laughing until their mothers called them in.
It was the first day of spring. The weather was warm, the trees were green again, and the \
river that ran through the middle of the town was full of water from the mountains. \
People said that this would be a good year for the farmers, because the rain had come at the right time. \
In the market there were apples, onions, potatoes and cheese, and a man who sold honey in small glass jars. \
Everyone wanted to know what the new teacher would be like. She arrived on the train at three o'clock, \
carrying two heavy bags and a box of books. \"Good afternoon,\" she said to the station master. \
\"Could you tell me where the school is?\" He pointed to a white building on the hill and smiled. \
Learning is not only about reading and writing; it is about asking questions and looking for answers. \
The teacher believed that every child could learn, if someone took the time to explain things clearly. \
She taught them numbers: one, two, three, four, five, six, seven, eight, nine and ten. \
By the end of the year they could count to 100 and add 25 and 17 in their heads. \
Some of them wanted to become doctors, others wanted to build houses or write songs. \
When winter came, the town was quiet. Snow covered the roofs and the roads, and the light from the \
windows made yellow squares on the white ground. The old woman still baked her bread, \
and the smell of it filled the whole street. Nothing is more important than the simple things we share \
with each other: food, work, stories and time. That is what the people of the town remembered, \
long after the teacher had gone back to the city and the children had grown up and moved away.
";

/// Learns BPE merges over `words` (each a symbol sequence with a count) until they have made
/// `max_new` distinct new symbols or no pair is left. Returns the merges and the new symbols in
/// creation order (two merges may make the same symbol, as in GPT-2's own list). Ties go to the
/// pair whose symbols were created first, so the result is deterministic.
fn train(words: Vec<(Vec<String>, usize)>, max_new: usize) -> (Vec<(String, String)>, Vec<String>) {
    let mut sym_id: HashMap<String, usize> = HashMap::new();
    let mut syms: Vec<String> = Vec::new();
    let mut intern = |s: &str, syms: &mut Vec<String>| -> usize {
        *sym_id.entry(s.to_string()).or_insert_with(|| {
            syms.push(s.to_string());
            syms.len() - 1
        })
    };
    let mut ws: Vec<(Vec<usize>, usize)> = words
        .iter()
        .map(|(w, c)| (w.iter().map(|s| intern(s, &mut syms)).collect(), *c))
        .collect();
    let n_initial = syms.len();
    let mut merges = Vec::new();
    while syms.len() - n_initial < max_new {
        let mut counts: HashMap<(usize, usize), usize> = HashMap::new();
        for (w, c) in &ws {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += c;
            }
        }
        let Some((&(a, b), _)) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
        else {
            break;
        };
        let joined = format!("{}{}", syms[a], syms[b]);
        merges.push((syms[a].clone(), syms[b].clone()));
        let m = intern(&joined, &mut syms);
        for (w, _) in ws.iter_mut() {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    out.push(m);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *w = out;
        }
    }
    let new = syms.split_off(n_initial);
    (merges, new)
}

/// Counts of items in first-seen order.
fn count_in_order(items: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, usize)> = Vec::new();
    for it in items {
        match index.get(&it) {
            Some(&i) => out[i].1 += 1,
            None => {
                index.insert(it.clone(), out.len());
                out.push((it, 1));
            }
        }
    }
    out
}

/// The metadata of a tokenizer, as (key, value) pairs in file order.
pub(crate) type TokenizerMeta = Vec<(&'static str, MetaValue)>;

/// A SentencePiece-style vocabulary (`tokenizer.ggml.model = "llama"`) of exactly `n_vocab`
/// tokens: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, the characters of the corpus, learned
/// pieces (score = minus merge rank, so earlier merges win as in llama.cpp's SPM), and, when the
/// corpus runs out of merges, unreachable filler pieces `▁tokN`.
pub(crate) fn spm(n_vocab: usize) -> TokenizerMeta {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL];
    let mut scores = vec![0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TYPE_BYTE);
        scores.push(0.0);
    }
    // SentencePiece sees spaces as '▁' and starts every word with one.
    let words = count_in_order(
        CORPUS
            .split([' ', '\n'])
            .filter(|w| !w.is_empty())
            .map(|w| format!("\u{2581}{w}")),
    );
    let mut chars: Vec<char> = Vec::new();
    for (w, _) in &words {
        for c in w.chars() {
            if !chars.contains(&c) {
                chars.push(c);
            }
        }
    }
    let budget = n_vocab.saturating_sub(tokens.len() + chars.len());
    let (_, pieces) = train(
        words
            .iter()
            .map(|(w, c)| (w.chars().map(String::from).collect(), *c))
            .collect(),
        budget,
    );
    let n_merges = pieces.len();
    for (rank, p) in pieces.into_iter().enumerate() {
        tokens.push(p);
        types.push(TYPE_NORMAL);
        scores.push(-(rank as f32));
    }
    for (i, c) in chars.iter().enumerate() {
        tokens.push(c.to_string());
        types.push(TYPE_NORMAL);
        scores.push(-((n_merges + i) as f32));
    }
    let mut filler = 0;
    while tokens.len() < n_vocab {
        tokens.push(format!("\u{2581}tok{filler}"));
        types.push(TYPE_NORMAL);
        scores.push(-((n_merges + chars.len() + filler) as f32) - 1.0);
        filler += 1;
    }
    tokens.truncate(n_vocab);
    types.truncate(n_vocab);
    scores.truncate(n_vocab);
    vec![
        ("tokenizer.ggml.model", MetaValue::Str("llama".into())),
        ("tokenizer.ggml.pre", MetaValue::Str("default".into())),
        (
            "tokenizer.ggml.tokens",
            MetaValue::Array(tokens.into_iter().map(MetaValue::Str).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            MetaValue::Array(scores.into_iter().map(MetaValue::F32).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(2)),
        ("tokenizer.ggml.unknown_token_id", MetaValue::U32(0)),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(true)),
        ("tokenizer.ggml.add_eos_token", MetaValue::Bool(false)),
        ("tokenizer.ggml.add_space_prefix", MetaValue::Bool(true)),
    ]
}

/// The SentencePiece vocabulary of [`spm`] laid out as Gemma's: `<pad>` 0, `<eos>` 1,
/// `<bos>` 2, the chat markers `<start_of_turn>` and `<end_of_turn>` (control tokens, as in
/// the published files: their text is not parsed with `parse_special = false`), `<unk>` last,
/// and no space prefix (`add_space_prefix = false`, as Gemma files set it).
pub(crate) fn gemma(n_vocab: usize) -> TokenizerMeta {
    let mut meta = spm(n_vocab);
    let n = n_vocab;
    let set_token = |meta: &mut TokenizerMeta, id: usize, text: &str, ty: i32| {
        for (k, v) in meta.iter_mut() {
            match (*k, v) {
                ("tokenizer.ggml.tokens", MetaValue::Array(a)) => {
                    a[id] = MetaValue::Str(text.into())
                }
                ("tokenizer.ggml.token_type", MetaValue::Array(a)) => a[id] = MetaValue::I32(ty),
                ("tokenizer.ggml.scores", MetaValue::Array(a)) => a[id] = MetaValue::F32(0.0),
                _ => {}
            }
        }
    };
    set_token(&mut meta, 0, "<pad>", TYPE_CONTROL);
    set_token(&mut meta, 1, "<eos>", TYPE_CONTROL);
    set_token(&mut meta, 2, "<bos>", TYPE_CONTROL);
    set_token(&mut meta, n - 3, "<start_of_turn>", TYPE_CONTROL);
    set_token(&mut meta, n - 2, "<end_of_turn>", TYPE_CONTROL);
    set_token(&mut meta, n - 1, "<unk>", TYPE_UNKNOWN);
    for (k, v) in meta.iter_mut() {
        *v = match *k {
            "tokenizer.ggml.bos_token_id" => MetaValue::U32(2),
            "tokenizer.ggml.eos_token_id" => MetaValue::U32(1),
            "tokenizer.ggml.unknown_token_id" => MetaValue::U32((n - 1) as u32),
            "tokenizer.ggml.add_space_prefix" => MetaValue::Bool(false),
            _ => continue,
        };
    }
    meta
}

/// GPT-2's byte-to-character table (`bytes_to_unicode` in its encoder.py), in GPT-2's order:
/// printable bytes map to themselves, the rest to U+0100 onwards.
pub(crate) fn gpt2_byte_chars() -> Vec<(u8, char)> {
    let mut out = Vec::with_capacity(256);
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    for b in 0..=255u8 {
        if printable(b) {
            out.push((b, char::from(b)));
        }
    }
    let mut n = 0u32;
    for b in 0..=255u8 {
        if !printable(b) {
            out.push((b, char::from_u32(256 + n).expect("valid code point")));
            n += 1;
        }
    }
    out
}

/// Splits text the way GPT-2's pattern does for plain English: contractions, an optional space
/// followed by letters, digits, or other symbols, and runs of whitespace.
fn gpt2_pretokenize(text: &str) -> Vec<String> {
    let cs: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let class = |c: char| {
        if c.is_alphabetic() {
            0
        } else if c.is_numeric() {
            1
        } else if c.is_whitespace() {
            3
        } else {
            2
        }
    };
    while i < cs.len() {
        let start = i;
        if cs[i] == '\'' {
            let rest: String = cs[i + 1..cs.len().min(i + 3)].iter().collect();
            let n = ["re", "ve", "ll"]
                .iter()
                .find(|s| rest.starts_with(*s))
                .map(|_| 2)
                .or_else(|| {
                    rest.chars()
                        .next()
                        .filter(|c| matches!(c, 's' | 't' | 'm' | 'd'))
                        .map(|_| 1)
                });
            if let Some(n) = n {
                i += 1 + n;
                out.push(cs[start..i].iter().collect());
                continue;
            }
        }
        if cs[i] == ' ' && i + 1 < cs.len() && class(cs[i + 1]) != 3 {
            i += 1;
        }
        let k = class(cs[i]);
        i += 1;
        while i < cs.len() && class(cs[i]) == k && !(k == 2 && cs[i] == '\'') {
            i += 1;
        }
        out.push(cs[start..i].iter().collect());
    }
    out
}

/// A GPT-2 byte-level BPE (`tokenizer.ggml.model = "gpt2"`, pre-tokenizer `gpt-2`: the name
/// llama.cpp's vocabulary loader knows GPT-2's split pattern by; it refuses `gpt2`) of exactly
/// `n_vocab` tokens: the 256 byte characters in GPT-2's order, one token per learned merge, and
/// `<|endoftext|>` last (BOS = EOS, as in GPT-2).
pub(crate) fn gpt2(n_vocab: usize) -> TokenizerMeta {
    let table = gpt2_byte_chars();
    let mut byte_char = ['\0'; 256];
    for &(b, c) in &table {
        byte_char[b as usize] = c;
    }
    let mut tokens: Vec<String> = table.iter().map(|&(_, c)| c.to_string()).collect();
    let words = count_in_order(
        gpt2_pretokenize(CORPUS)
            .into_iter()
            .map(|w| w.bytes().map(|b| byte_char[b as usize]).collect::<String>()),
    );
    let budget = n_vocab.saturating_sub(tokens.len() + 1);
    let (merges, pieces) = train(
        words
            .iter()
            .map(|(w, c)| (w.chars().map(String::from).collect(), *c))
            .collect(),
        budget,
    );
    tokens.extend(pieces);
    let mut filler = 0;
    while tokens.len() + 1 < n_vocab {
        // Unreachable without a merge; keeps the vocabulary at the requested size.
        tokens.push(format!("\u{0120}tok{filler}"));
        filler += 1;
    }
    tokens.truncate(n_vocab - 1);
    let eot = tokens.len() as u32;
    tokens.push("<|endoftext|>".into());
    let mut types = vec![TYPE_NORMAL; tokens.len()];
    types[eot as usize] = TYPE_CONTROL;
    vec![
        ("tokenizer.ggml.model", MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre", MetaValue::Str("gpt-2".into())),
        (
            "tokenizer.ggml.tokens",
            MetaValue::Array(tokens.into_iter().map(MetaValue::Str).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            MetaValue::Array(
                merges
                    .into_iter()
                    .map(|(a, b)| MetaValue::Str(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(eot)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(eot)),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(false)),
    ]
}

/// The GPT-2 vocabulary of [`gpt2`] under the `qwen2` pre-tokenizer (Qwen's split pattern:
/// digits one by one, a letter run with one leading non-letter, newlines kept together).
pub(crate) fn qwen2(n_vocab: usize) -> TokenizerMeta {
    let mut meta = gpt2(n_vocab);
    for (k, v) in &mut meta {
        if *k == "tokenizer.ggml.pre" {
            *v = MetaValue::Str("qwen2".into());
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(meta: &TokenizerMeta, key: &str) -> Vec<String> {
        let v = &meta.iter().find(|(k, _)| *k == key).unwrap().1;
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn spm_has_the_requested_size_and_unique_pieces() {
        for n in [512, 32000] {
            let m = spm(n);
            let toks = strings(&m, "tokenizer.ggml.tokens");
            assert_eq!(toks.len(), n);
            let uniq: std::collections::HashSet<_> = toks.iter().collect();
            assert_eq!(uniq.len(), n, "duplicate pieces");
            assert_eq!(toks[3 + 0x0A], "<0x0A>");
            assert!(
                toks.iter().any(|t| t == "\u{2581}the"),
                "'▁the' should be learned"
            );
        }
    }

    #[test]
    fn gpt2_merges_build_tokens_that_exist() {
        let m = gpt2(512);
        let toks = strings(&m, "tokenizer.ggml.tokens");
        let merges = strings(&m, "tokenizer.ggml.merges");
        assert_eq!(toks.len(), 512);
        assert_eq!(toks[511], "<|endoftext|>");
        assert_eq!(toks[0], "!");
        assert!(merges.len() >= 512 - 257);
        assert_eq!(
            toks.iter().collect::<std::collections::HashSet<_>>().len(),
            512,
            "duplicate tokens"
        );
        let set: std::collections::HashSet<_> = toks.iter().cloned().collect();
        for mg in &merges {
            let (a, b) = mg.split_once(' ').unwrap();
            assert!(
                set.contains(a) && set.contains(b) && set.contains(&format!("{a}{b}")),
                "{mg}"
            );
        }
        assert!(set.contains("\u{0120}the"), "'Ġthe' should be learned");
        assert_eq!(
            gpt2_byte_chars()
                .iter()
                .find(|(b, _)| *b == b' ')
                .unwrap()
                .1,
            '\u{0120}'
        );
    }
}
