//! The Rust tokenizer against llama.cpp's own `llama_tokenize(text, add_special = true,
//! parse_special = false)`, string by string, for SmolLM2, the tokenizer presets, and preset
//! files whose tokenizer metadata is rewritten to reach the other supported settings.
//!
//! Every string must give the same ids. There are no exceptions: no llama.cpp quirk has been
//! found that the Rust side does not mirror for these strings.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use llorch_diff::gguf::presets::{self, Preset};
use llorch_diff::gguf::{GgufFile, GgufWriter, MetaValue};
use llorch_diff::llamacpp::{self, KvType, Session};
use llorch_diff::quant::GgmlType;
use llorch_diff::tokenizer::Tokenizer;

/// Hand-picked strings: the cases where tokenizers usually differ.
const CORPUS: &[&str] = &[
    "",
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "The old woman made bread in the town.",
    "Once upon a time there was a little town by the sea.",
    " ",
    "  ",
    "   ",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "repeated   spaces    inside     words",
    "\n",
    "\n\n",
    "line one\nline two\n\nline four\n",
    "\r\n",
    "windows\r\nline\r\nendings",
    "\t",
    "tab\tseparated\tvalues",
    "\tindented\n\t\tmore\n    spaces\n",
    " \n \n",
    "word \n next",
    "0",
    "7",
    "42",
    "1234567890",
    "3.14159",
    "-273.15",
    "1,000,000",
    "2024-06-01",
    "12:30:45",
    "v1.2.3",
    "0x1F",
    "1e-10",
    "Room 101 has 3 beds and 12 chairs.",
    "Call 555-0123 or 1-800-555-0199",
    "a1b2c3",
    " 123",
    "  456 789",
    "...",
    "!!!",
    "?!?!",
    "---",
    "***",
    "@#$%^&*()",
    "[](){}<>",
    "a.b,c;d:e",
    "\"quoted\" and 'single'",
    "(parenthetical) [bracketed] {braced}",
    "email@example.com",
    "https://example.com/path?query=1&x=y#frag",
    "C:\\Windows\\System32",
    "fn main() { println!(\"hi\"); }",
    "if (x == 1) { return y + 2; }",
    "$100 + 50% = ?",
    "~/.bashrc | grep -v '^#'",
    "don't",
    "I'm here",
    "she's",
    "we've",
    "they'll",
    "you're",
    "he'd",
    "it's what it's",
    "DON'T SHOUT",
    "'s",
    "'twas",
    "rock 'n' roll",
    "café",
    "naïve résumé",
    "Ångström",
    "Zürich über Straße",
    "façade",
    "El niño comió piñata",
    "São Paulo",
    "ÀÉÎÕÜ àéîõü",
    "日本語",
    "こんにちは世界",
    "中文测试",
    "한국어",
    "Привет, мир",
    "Γειά σου κόσμε",
    "שלום",
    "مرحبا بالعالم",
    "हिन्दी",
    "ไทย",
    "😀",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🇫🇷",
    "I ❤ Rust 🦀!",
    "emoji😀inside",
    "mixed English 日本語 and العربية text",
    "Hello世界123",
    "naïve 日本 42 😀 done",
    "<|im_start|>",
    "<|im_start|>user\nHello<|im_end|>\n",
    "<|endoftext|>",
    "<s>",
    "</s>",
    "<s>Hello</s>",
    "<unk>",
    "<0x41>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>assistant\n",
    "▁",
    "▁▁word",
    "Ġ",
    "ĠĠ",
    "a\u{0}b",
    "\u{7}bell",
    "non\u{a0}breaking",
    "thin\u{2009}space",
    "ideographic\u{3000}space",
    "zero\u{200b}width",
    "soft\u{ad}hyphen",
    "combining e\u{301}",
    "ﬁ ligature",
    "①②③ ¼ ½",
    "x² + y³",
    "٣٤٥",
    "Ⅻ",
    "   \n\t  mixed whitespace  \t\n",
];

/// A deterministic generator (SplitMix64) for the random strings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random strings over a pool that mixes words, digits, punctuation, whitespace runs,
/// contractions, accented Latin, CJK, emoji and special-token lookalikes.
fn random_strings(seed: u64, count: usize) -> Vec<String> {
    const POOL: &[&str] = &[
        "the",
        "town",
        "bread",
        "The",
        "old",
        "woman",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\t",
        "\n\n",
        "0",
        "1",
        "42",
        "2024",
        "3.14",
        ".",
        ",",
        "!",
        "?",
        "'s",
        "'ll",
        "'ve",
        "n't",
        "'",
        "\"",
        "-",
        "(",
        ")",
        "#",
        "$",
        "%",
        "+",
        "=",
        "<",
        ">",
        "|",
        "~",
        "^",
        "é",
        "ü",
        "ñ",
        "Å",
        "日",
        "本",
        "語",
        "世界",
        "😀",
        "🦀",
        "\u{200d}",
        "<s>",
        "</s>",
        "<|im_start|>",
        "▁",
        "Ġ",
        "\u{a0}",
        "\u{3000}",
        "٣",
        "½",
        "x",
    ];
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let n = 1 + rng.below(12);
            (0..n).map(|_| POOL[rng.below(POOL.len())]).collect()
        })
        .collect()
}

/// The strings checked for every model: the corpus, random mixtures, and long runs.
fn strings() -> Vec<String> {
    let mut v: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    v.extend(random_strings(7, 300));
    v.push(" ".repeat(300));
    v.push(format!("{}end", " ".repeat(257)));
    v.push("9".repeat(200));
    v.push("abc".repeat(100));
    v.push("\n".repeat(64));
    v.push("😀".repeat(40));
    v.push(format!("{}x", " ".repeat(20_000)));
    v.push("The old woman, 42 times, said: don't! 日本語 😀\n".repeat(200));
    v
}

/// Compares every string and returns how many were checked; prints each mismatch with the
/// pieces on both sides, then fails if there was any.
fn check(label: &str, model: &Path, extra: &[&str]) -> usize {
    llamacpp::set_verbose(false);
    let file = GgufFile::open(model).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{label}: {e}"));
    let session = Session::open(model, 64, KvType::F32, 1, true).unwrap();
    let mut texts = strings();
    texts.extend(extra.iter().map(|s| s.to_string()));
    let pieces = |ids: &[i32]| -> Vec<String> {
        ids.iter()
            .map(|&id| String::from_utf8_lossy(&session.token_to_piece(id)).into_owned())
            .collect()
    };
    let mut mismatches = Vec::new();
    for text in &texts {
        let want = session.tokenize(text, true, false).unwrap();
        let got = tok
            .encode(text)
            .unwrap_or_else(|e| panic!("{label}: {text:?}: {e}"));
        if got != want {
            mismatches.push(format!(
                "{text:?}\n    llama.cpp {want:?} {:?}\n    rust      {got:?} {:?}",
                pieces(&want),
                pieces(&got)
            ));
        }
    }
    println!(
        "{label}: {}: {} strings checked, {} mismatches",
        tok.describe(),
        texts.len(),
        mismatches.len()
    );
    for m in &mismatches {
        println!("  MISMATCH {m}");
    }
    assert!(
        mismatches.is_empty(),
        "{label}: {} of {} strings tokenize differently from llama.cpp (listed above)",
        mismatches.len(),
        texts.len()
    );
    assert_eq!(tok.n_vocab(), session.dims().n_vocab, "{label}: n_vocab");
    texts.len()
}

/// Copies a GGUF file, replacing, adding (value Some) or removing (None) metadata keys and
/// letting `tokens` edit the vocabulary (texts and types) in place.
fn rewrite(
    src: &Path,
    dst: &Path,
    changes: &[(&str, Option<MetaValue>)],
    tokens: impl Fn(&mut Vec<MetaValue>, &mut Vec<MetaValue>),
) {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        let mut v = v.clone();
        if let Some((_, new)) = changes.iter().find(|(c, _)| c == k) {
            match new {
                Some(n) => v = n.clone(),
                None => continue,
            }
        }
        if k == "tokenizer.ggml.tokens" {
            let MetaValue::Array(mut texts) = v else {
                panic!()
            };
            let Some(MetaValue::Array(types)) = f.get("tokenizer.ggml.token_type") else {
                panic!()
            };
            let mut types = types.clone();
            tokens(&mut texts, &mut types);
            v = MetaValue::Array(texts);
            // Written right after the tokens; the original is skipped below.
            w.add_meta(k.clone(), v).unwrap();
            w.add_meta("tokenizer.ggml.token_type", MetaValue::Array(types))
                .unwrap();
            continue;
        }
        if k == "tokenizer.ggml.token_type" {
            continue;
        }
        w.add_meta(k.clone(), v).unwrap();
    }
    for (k, v) in changes {
        if let Some(v) = v {
            if f.get(k).is_none() {
                w.add_meta(*k, v.clone()).unwrap();
            }
        }
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ggml_type).unwrap();
    }
    w.write(dst, |info, buf| {
        buf.copy_from_slice(f.tensor(&info.name).unwrap().data);
        Ok(())
    })
    .unwrap();
}

fn preset(dir: &Path, p: Preset) -> PathBuf {
    let out = dir.join(format!("{p}.gguf"));
    presets::write_preset(p, GgmlType::F16, 3, &out).unwrap();
    out
}

/// Metadata keys to set (Some) or remove (None).
type Changes<'a> = Vec<(&'a str, Option<MetaValue>)>;

fn text(s: &str) -> MetaValue {
    MetaValue::Str(s.into())
}

fn no_token_edits(_: &mut Vec<MetaValue>, _: &mut Vec<MetaValue>) {}

/// Renames token `id` to `name` and makes it user-defined.
fn user_defined(texts: &mut [MetaValue], types: &mut [MetaValue], id: usize, name: &str) {
    texts[id] = text(name);
    types[id] = MetaValue::I32(4);
}

#[test]
fn smollm2_matches_llama_cpp() {
    let model = common::smollm2();
    let n = check("SmolLM2-135M-Instruct", &model, &[]);
    // The known answer from the brief, as a guard on the comparison itself.
    let t = Tokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
    assert_eq!(t.encode("Hello world").unwrap(), [19556, 905]);
    assert_eq!(
        t.describe(),
        "gpt2 BPE (pre-tokenizer smollm), 49152 tokens"
    );
    assert!(n > CORPUS.len());
}

#[test]
fn tiny_llama_preset_matches_llama_cpp() {
    let dir = common::scratch("tokenizer-corpus-llama");
    check("tiny-llama", &preset(&dir, Preset::TinyLlama), &[]);
}

#[test]
fn tiny_gpt2_preset_matches_llama_cpp() {
    let dir = common::scratch("tokenizer-corpus-gpt2");
    check("tiny-gpt2", &preset(&dir, Preset::TinyGpt2), &[]);
}

#[test]
fn tiny_qwen2_preset_matches_llama_cpp() {
    let dir = common::scratch("tokenizer-corpus-qwen2");
    let model = preset(&dir, Preset::TinyQwen2);
    let t = Tokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
    assert_eq!(t.describe(), "gpt2 BPE (pre-tokenizer qwen2), 512 tokens");
    check("tiny-qwen2", &model, &[]);
}

/// Gemma's SentencePiece layout: no space prefix, `<bos>` 2, `<eos>` 1 and the chat markers
/// as control tokens (their text is not parsed).
#[test]
fn tiny_gemma3_preset_matches_llama_cpp() {
    let dir = common::scratch("tokenizer-corpus-gemma3");
    let model = preset(&dir, Preset::TinyGemma3);
    let t = Tokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
    assert_eq!(t.describe(), "llama SPM (no space prefix), 512 tokens");
    check(
        "tiny-gemma3",
        &model,
        &[
            "<start_of_turn>user\nThe old woman<end_of_turn>\n<start_of_turn>model\n",
            "<bos>The<eos> old <pad><unk>",
            "<start_of_turn><start_of_turn> x<end_of_turn>",
            " leading space, then  two and   three",
        ],
    );
}

/// The settings the presets do not use, reached by rewriting their tokenizer metadata.
#[test]
fn rewritten_tokenizer_settings_match_llama_cpp() {
    let dir = common::scratch("tokenizer-corpus-variants");
    let gpt2 = preset(&dir, Preset::TinyGpt2);
    let llama = preset(&dir, Preset::TinyLlama);
    let pre = "tokenizer.ggml.pre";
    let user_texts = [
        "<|user|>",
        "<|user|>:",
        "say <|user|>: hi",
        "a<|user|>b<|user|>:c",
        "<|user|><|user|>",
        " <|user|> ",
        "[INST] the town [/INST]",
        "<|channel|>final<|message|>ok",
    ];
    let llama_file = GgufFile::open(&llama).unwrap();
    let llama_scores = llama_file
        .get("tokenizer.ggml.scores")
        .unwrap()
        .as_array()
        .unwrap();
    let n_llama = llama_scores.len();
    let i32_scores: Vec<MetaValue> = llama_scores
        .iter()
        .map(|v| {
            let x = v.as_f32().unwrap();
            assert_eq!(x, x.round(), "preset scores are whole numbers");
            MetaValue::I32(x as i32)
        })
        .collect();
    let mut total = 0;
    let variants: Vec<(&str, &Path, Changes)> = vec![
        (
            "gpt2 pre=default",
            &gpt2,
            vec![(pre, Some(text("default")))],
        ),
        ("gpt2 pre=smollm", &gpt2, vec![(pre, Some(text("smollm")))]),
        (
            "gpt2 pre=starcoder",
            &gpt2,
            vec![(pre, Some(text("starcoder")))],
        ),
        ("gpt2 pre=mpt", &gpt2, vec![(pre, Some(text("mpt")))]),
        ("gpt2 no pre key", &gpt2, vec![(pre, None)]),
        (
            "gpt2 add BOS and EOS",
            &gpt2,
            vec![
                ("tokenizer.ggml.add_bos_token", Some(MetaValue::Bool(true))),
                ("tokenizer.ggml.add_eos_token", Some(MetaValue::Bool(true))),
            ],
        ),
        (
            "llama no space prefix",
            &llama,
            vec![(
                "tokenizer.ggml.add_space_prefix",
                Some(MetaValue::Bool(false)),
            )],
        ),
        (
            "llama EOS, no BOS",
            &llama,
            vec![
                ("tokenizer.ggml.add_bos_token", Some(MetaValue::Bool(false))),
                ("tokenizer.ggml.add_eos_token", Some(MetaValue::Bool(true))),
            ],
        ),
        (
            "llama defaults (no add_* keys)",
            &llama,
            vec![
                ("tokenizer.ggml.add_bos_token", None),
                ("tokenizer.ggml.add_eos_token", None),
                ("tokenizer.ggml.add_space_prefix", None),
            ],
        ),
        (
            // Every merge ties, so the leftmost-first rule decides them all.
            "llama equal scores",
            &llama,
            vec![(
                "tokenizer.ggml.scores",
                Some(MetaValue::Array(vec![MetaValue::F32(0.0); n_llama])),
            )],
        ),
        (
            // Scores stored as i32 (llama.cpp reads either type).
            "llama i32 scores",
            &llama,
            vec![("tokenizer.ggml.scores", Some(MetaValue::Array(i32_scores)))],
        ),
    ];
    for (i, (label, src, changes)) in variants.iter().enumerate() {
        let out = dir.join(format!("variant-{i}.gguf"));
        rewrite(src, &out, changes, no_token_edits);
        total += check(label, &out, &[]);
    }

    // User-defined tokens (split out even with parse_special = false), overlapping so that the
    // longest-first order matters, plus a name llama.cpp forces to user-defined. The SPM
    // vocabulary's last pieces are renamed (SPM has no merges to keep consistent).
    let out = dir.join("llama-user-defined.gguf");
    rewrite(&llama, &out, &[], |texts, types| {
        let n = texts.len();
        user_defined(texts, types, n - 1, "<|user|>");
        user_defined(texts, types, n - 2, "<|user|>:");
        user_defined(texts, types, n - 3, "[INST]");
        texts[n - 4] = text("<|channel|>");
    });
    total += check("llama user-defined tokens", &out, &user_texts);

    // For BPE, the last learned piece is made only by the last merge: rename it and drop that
    // merge so that the merges stay consistent.
    let out = dir.join("gpt2-user-defined.gguf");
    let f = GgufFile::open(&gpt2).unwrap();
    let merges = f.get("tokenizer.ggml.merges").unwrap().as_array().unwrap();
    let eot = f
        .get("tokenizer.ggml.eos_token_id")
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    let last = merges.last().unwrap().as_str().unwrap().replace(' ', "");
    let trimmed = MetaValue::Array(merges[..merges.len() - 1].to_vec());
    rewrite(
        &gpt2,
        &out,
        &[("tokenizer.ggml.merges", Some(trimmed))],
        |texts, types| {
            let id = eot - 1;
            assert_eq!(texts[id].as_str().unwrap(), last, "last piece, last merge");
            user_defined(texts, types, id, "<|user|>");
        },
    );
    total += check("gpt2 user-defined token", &out, &user_texts);

    // Merges the presets never hold, put first: pairs of letters whose result is no token
    // (llama.cpp applies them, then emits the bytes' tokens), a repeat of a later merge (its
    // first rank counts) and entries without a space after their first byte.
    let tokens: HashSet<&str> = f
        .get("tokenizer.ggml.tokens")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let letters = ["e", "t", "a", "o", "n", "h", "s", "r"];
    let mut odd: Vec<MetaValue> = letters
        .iter()
        .flat_map(|a| letters.iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| tokens.contains(a) && !tokens.contains(format!("{a}{b}").as_str()))
        .take(6)
        .map(|(a, b)| text(&format!("{a} {b}")))
        .collect();
    assert!(odd.len() >= 3, "letter pairs that make no token: {odd:?}");
    odd.push(merges[merges.len() / 2].clone());
    odd.extend([text("nospace"), text(" ")]);
    odd.extend(merges.iter().cloned());
    let out = dir.join("gpt2-odd-merges.gguf");
    rewrite(
        &gpt2,
        &out,
        &[("tokenizer.ggml.merges", Some(MetaValue::Array(odd)))],
        no_token_edits,
    );
    total += check("gpt2 merges that make no token", &out, &[]);
    let plain = Tokenizer::from_gguf(&f).unwrap();
    let odd = Tokenizer::from_gguf(&GgufFile::open(&out).unwrap()).unwrap();
    let changed = strings()
        .iter()
        .filter(|s| plain.encode(s).unwrap() != odd.encode(s).unwrap())
        .count();
    println!("the odd merges change {changed} strings' tokens");
    assert!(changed > 0, "the odd merges must be exercised");
    println!("rewritten settings: {total} strings checked in all");
}
