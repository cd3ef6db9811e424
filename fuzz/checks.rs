//! What each fuzz target checks on one input, shared by the targets in `fuzz_targets/` and by
//! the replay of saved inputs in `tests/fuzz_regressions.rs` (which includes this file), so a
//! crash found by the fuzzer is replayed by an ordinary `cargo test`.
//!
//! Every function must return normally for every input: the readers answer bad input with a
//! typed error. A panic here (in the library or in an assertion below) is a finding.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;

use llorch_diff::checkpoint::format::{decode, encode};
use llorch_diff::checkpoint::npy::decode_npy;
use llorch_diff::checkpoint::Manifest;
use llorch_diff::compare::tolerance::{known_kinds, Tolerances};
use llorch_diff::gguf::{GgufFile, ModelParams};
use llorch_diff::tokenizer::Tokenizer;

/// The GGUF reader on arbitrary bytes, then what reads a parsed file: metadata display, model
/// parameters, tensor views and an SPM tokenizer.
pub fn gguf(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, value) in file.metadata() {
        let _ = format!("{key} = {value}");
    }
    let _ = file.architecture();
    let _ = ModelParams::from_gguf(&file);
    for info in file.tensors() {
        let _ = (info.n_elements(), info.row_len(), info.n_rows());
        if let Ok(view) = file.tensor(&info.name) {
            let rows = view.n_rows();
            if rows > 0 {
                let _ = view.row(0);
                let _ = view.row(rows - 1);
            }
        }
    }
    // A gpt2 (BPE) tokenizer compiles its pre-tokenizer's expressions at every load, which
    // would dominate the run; `tokenizer_vocab` loads those from well-formed files.
    if file.get("tokenizer.ggml.model").and_then(|v| v.as_str()) == Some("gpt2") {
        return;
    }
    if let Ok(tok) = Tokenizer::from_gguf(&file) {
        let _ = tok.describe();
        let _ = tok.encode("Hello world, <|im_start|> 123 éß 🙂\n\t  x");
    }
}

/// The dump decoder: a tensor it accepts holds as many values as its shape and encodes back to
/// the same bytes.
pub fn dump(data: &[u8]) {
    if let Ok(t) = decode(data, Path::new("fuzz.bin")) {
        assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        assert!(encode(&t) == data, "decode then encode changed the bytes");
    }
}

/// The `.npy` reader.
pub fn npy(data: &[u8]) {
    if let Ok(t) = decode_npy(data, Path::new("fuzz.npy")) {
        assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
    }
}

/// The manifest parser: a manifest it accepts serialises and parses back to itself.
pub fn manifest(data: &[u8]) {
    let path = Path::new("manifest.json");
    if let Ok(m) = Manifest::parse(data, path) {
        let json = serde_json::to_vec(&m).expect("a parsed manifest serialises");
        let back = Manifest::parse(&json, path).expect("a serialised manifest parses");
        assert_eq!(back, m);
    }
}

/// The tolerance file laid over the built-in tolerances, then every gate looked up.
pub fn tolerance(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Parsed once: the built-in file is the same for every input.
    static BUILTIN: std::sync::OnceLock<Tolerances> = std::sync::OnceLock::new();
    let mut tol = BUILTIN.get_or_init(Tolerances::builtin).clone();
    if tol.merge_str(text, "fuzz.toml").is_err() {
        return;
    }
    let modes: Vec<String> = tol.modes().map(str::to_string).collect();
    for mode in &modes {
        for kind in known_kinds() {
            let _ = tol.gate(mode, kind);
        }
        let _ = tol.mode_table(mode);
    }
}

/// A tokenizer on arbitrary text: every id in the vocabulary. (The ids may be none for a
/// non-empty text: SmolLM2 has no token for some bytes, e.g. 0x04, and llama.cpp's BPE session
/// drops a byte without a token, as the Rust one does.)
pub fn tokenizer(tok: &Tokenizer, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let ids = tok.encode(&text).expect("SmolLM2 encodes any text");
    let n = tok.n_vocab() as i32;
    assert!(ids.iter().all(|&id| (0..n).contains(&id)), "{ids:?}");
}

/// The SmolLM2 model the `tokenizer` target uses: `LLORCH_FUZZ_MODEL`, or the repository's
/// `models/SmolLM2-135M-Instruct.Q4_1.gguf` (`root` is the repository).
pub fn smollm2_tokenizer(root: &Path) -> Tokenizer {
    let path = std::env::var("LLORCH_FUZZ_MODEL").map_or_else(
        |_| root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        Into::into,
    );
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Pre-tokenizer names tried by [`tokenizer_vocab`] (the last one is unsupported).
pub const PRE: &[&str] = &[
    "default",
    "gpt-2",
    "phi-2",
    "mpt",
    "olmo",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "qwen2",
    "llama3",
];

/// A vocabulary and a text, as the `tokenizer_vocab` target draws them.
#[derive(Debug, Default, Clone)]
pub struct VocabInput {
    /// `llama` (SentencePiece) rather than `gpt2` (byte-level BPE).
    pub spm: bool,
    /// Index into [`PRE`] (modulo its length).
    pub pre: u8,
    /// Start from the 256 byte tokens (`<0xXX>`, or GPT-2's byte-level characters).
    pub byte_tokens: bool,
    /// Text, score, token type. A repeated text is skipped.
    pub tokens: Vec<(String, f32, i8)>,
    /// gpt2 only: pairs of token indices (modulo the count) to merge; the result is added as a
    /// token when new.
    pub merges: Vec<(u16, u16)>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub text: String,
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the others are shifted
/// past 255 in order.
fn byte_level_chars() -> Vec<String> {
    let mut n = 0;
    (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
            let c = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// A GGUF v3 with metadata only, written from the format description.
struct Gguf(Vec<u8>, u64);

impl Gguf {
    fn str(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn key(&mut self, k: &str, ty: u32) {
        self.str(k);
        self.0.extend_from_slice(&ty.to_le_bytes());
        self.1 += 1;
    }
    fn kv_str(&mut self, k: &str, v: &str) {
        self.key(k, 8);
        self.str(v);
    }
    fn kv_u32(&mut self, k: &str, v: u32) {
        self.key(k, 4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn kv_bool(&mut self, k: &str, v: bool) {
        self.key(k, 7);
        self.0.push(v as u8);
    }
    fn array(&mut self, k: &str, ty: u32, n: usize) {
        self.key(k, 9);
        self.0.extend_from_slice(&ty.to_le_bytes());
        self.0.extend_from_slice(&(n as u64).to_le_bytes());
    }
    fn finish(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&self.1.to_le_bytes());
        out.extend_from_slice(&self.0);
        out
    }
}

/// The tokenizer with a vocabulary from the input, written as a GGUF in memory, loaded and
/// asked to encode the input's text.
pub fn tokenizer_vocab(input: &VocabInput) {
    let mut tokens: Vec<String> = Vec::new();
    let mut scores: Vec<f32> = Vec::new();
    let mut types: Vec<i32> = Vec::new();
    let mut seen = HashSet::new();
    if input.byte_tokens {
        let bytes: Vec<String> = if input.spm {
            (0..256).map(|b| format!("<0x{b:02X}>")).collect()
        } else {
            byte_level_chars()
        };
        for t in bytes {
            seen.insert(t.clone());
            tokens.push(t);
            scores.push(0.0);
            types.push(if input.spm { 6 } else { 1 });
        }
    }
    for (t, score, ty) in &input.tokens {
        // A repeated token is refused at load; keep the first so that loading goes on.
        if seen.insert(t.clone()) {
            tokens.push(t.clone());
            scores.push(*score);
            types.push(i32::from(*ty));
        }
    }
    let mut merges = Vec::new();
    if !input.spm && !tokens.is_empty() {
        for &(a, b) in &input.merges {
            let l = tokens[a as usize % tokens.len()].clone();
            let r = tokens[b as usize % tokens.len()].clone();
            let joined = format!("{l}{r}");
            if seen.insert(joined.clone()) {
                tokens.push(joined);
                scores.push(0.0);
                types.push(1);
            }
            merges.push(format!("{l} {r}"));
        }
    }

    let model = if input.spm { "llama" } else { "gpt2" };
    let mut g = Gguf(Vec::new(), 0);
    g.kv_str("general.architecture", model);
    g.kv_str("tokenizer.ggml.model", model);
    if !input.spm {
        g.kv_str("tokenizer.ggml.pre", PRE[input.pre as usize % PRE.len()]);
    }
    g.array("tokenizer.ggml.tokens", 8, tokens.len());
    for t in &tokens {
        g.str(t);
    }
    g.array("tokenizer.ggml.scores", 6, scores.len());
    for s in &scores {
        g.0.extend_from_slice(&s.to_le_bytes());
    }
    g.array("tokenizer.ggml.token_type", 5, types.len());
    for t in &types {
        g.0.extend_from_slice(&t.to_le_bytes());
    }
    if !input.spm {
        g.array("tokenizer.ggml.merges", 8, merges.len());
        for m in &merges {
            g.str(m);
        }
    }
    if let Some(v) = input.bos {
        g.kv_u32("tokenizer.ggml.bos_token_id", v);
    }
    if let Some(v) = input.eos {
        g.kv_u32("tokenizer.ggml.eos_token_id", v);
    }
    if let Some(v) = input.add_bos {
        g.kv_bool("tokenizer.ggml.add_bos_token", v);
    }
    if let Some(v) = input.add_eos {
        g.kv_bool("tokenizer.ggml.add_eos_token", v);
    }
    if let Some(v) = input.add_space_prefix {
        g.kv_bool("tokenizer.ggml.add_space_prefix", v);
    }

    let Ok(file) = GgufFile::from_bytes(g.finish()) else {
        // Only an empty vocabulary array or the like; the reader itself is fuzzed by `gguf`.
        return;
    };
    let Ok(tok) = Tokenizer::from_gguf(&file) else {
        return;
    };
    let _ = tok.describe();
    if let Ok(ids) = tok.encode(&input.text) {
        let n = tok.n_vocab() as i32;
        assert!(ids.iter().all(|&id| (0..n).contains(&id)), "{ids:?}");
    }
}
