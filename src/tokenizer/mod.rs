//! Tokenizers built from GGUF metadata that give the ids llama.cpp's
//! `llama_tokenize(text, add_special = true, parse_special = false)` gives, so that the Rust
//! reference and llama.cpp can be fed the same prompt from the same text.
//!
//! What each part mirrors in the pinned llama.cpp (src/llama-vocab.cpp unless named):
//!
//! * Loading ([`Tokenizer::from_gguf`]): `llama_vocab::impl::load`. `tokenizer.ggml.model`
//!   picks the tokenizer; `tokenizer.ggml.tokens` (an empty entry becomes `[EMPTY_<id>]`,
//!   a repeated one is refused as llama.cpp asserts), `tokenizer.ggml.scores` (f32 or i32,
//!   0 when absent) and `tokenizer.ggml.token_type` (normal when absent). BOS/EOS ids default
//!   per model (`llama`: 1 and 2, `gpt2`: 11 and 11; a default outside the vocabulary is
//!   none) and are replaced by `tokenizer.ggml.bos_token_id`/`eos_token_id` when those are in
//!   range. `tokenizer.ggml.add_bos_token`/`add_eos_token` replace the defaults (`llama`: BOS
//!   yes, EOS no; `gpt2`: neither). `tokenizer.ggml.add_space_prefix` replaces the SPM default
//!   (yes).
//! * Special-token partitioning: `tokenizer_st_partition` with `parse_special = false`, which
//!   skips control and unknown tokens but still splits out user-defined ones (token type 4, and
//!   the `<|channel|>`, `<|message|>`, `<|start|>`, `<|constrain|>` names llama.cpp forces to
//!   user-defined), longest text first (ties by id: llama.cpp's `std::sort` leaves their order
//!   unspecified). Each occurrence becomes its token; the text around it is tokenized apart.
//! * `llama` (spm.rs): the `LLAMA_VOCAB_TYPE_SPM` branch of `llama_vocab::impl::tokenize`
//!   (a space is prepended to the first text fragment and to one right after a user-defined
//!   token when the space prefix is on, then every space becomes `▁`) and
//!   `llm_tokenizer_spm_session`.
//! * `gpt2` (bpe.rs): the `LLAMA_VOCAB_TYPE_BPE` branch and `llm_tokenizer_bpe_session` (the
//!   expressions llama.cpp uses for the file's `tokenizer.ggml.pre`, GPT-2's byte encoding,
//!   merges by rank, byte fallback). Pre-tokenizers: `default` (also when the key is absent, as llama.cpp
//!   does), `gpt-2`, `phi-2`, `mpt`, `olmo` (GPT-2's pattern), `smollm`, `starcoder`,
//!   `refact`, `command-r` (every digit apart, then GPT-2's pattern), `qwen2` (Qwen's
//!   pattern, which llama.cpp runs through `unicode_regex_split_custom_qwen2`); `gpt2` is not a
//!   pre-tokenizer name, llama.cpp refuses it too. The splits are llama.cpp's own matchers
//!   over llama.cpp's own Unicode tables (split.rs).
//!
//! Not supported (a [`TokenizerError`] names the problem): other tokenizer models (`bert`,
//! `t5`, `rwkv`, ...), other pre-tokenizers (llama3, deepseek, ... have their own patterns and
//! flags), and an SPM byte with neither a
//! `<0xXX>` nor a one-character token (where llama.cpp throws). Not mirrored: the attributes
//! llama.cpp sets by name at load (control-looking names such as `<|im_end|>` promoted to
//! control, which would exempt a user-defined token of that name from partitioning; phi-3's
//! and some BERT models' strip flags), and `parse_special = true`.

mod bpe;
mod split;
mod spm;

use std::collections::HashMap;
use std::fmt;

use crate::gguf::{GgufFile, MetaValue};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

/// llama.cpp's `LLAMA_TOKEN_TYPE_USER_DEFINED`.
const TYPE_USER_DEFINED: i32 = 4;

/// Names llama.cpp makes user-defined whatever their type (its gpt-oss workaround).
const FORCED_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata key '{0}' is missing")]
    MissingKey(&'static str),
    #[error("GGUF metadata key '{key}' should be {expected}, found {found}")]
    BadValue {
        key: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error(
        "tokenizer model '{0}' is not supported (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)"
    )]
    UnsupportedModel(String),
    #[error(
        "pre-tokenizer '{pre}' of the gpt2 tokenizer is not supported (supported: {supported})"
    )]
    UnsupportedPreTokenizer { pre: String, supported: String },
    #[error("invalid vocabulary: {0}")]
    Vocabulary(String),
    #[error(
        "tokenizer.ggml.add_{which}_token asks for the {which} token but there is none \
         (tokenizer.ggml.{which}_token_id is absent or out of range, and so is the model's default)"
    )]
    NoSpecialToken { which: &'static str },
    #[error("byte 0x{0:02X} has no token (neither <0x{0:02X}> nor the byte itself)")]
    NoByteToken(u8),
}

/// The vocabulary as llama.cpp holds it: texts and scores by id, and text -> id.
struct Vocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    ids: HashMap<String, i32>,
}

enum Model {
    /// `add_space_prefix`.
    Spm(bool),
    Bpe(Box<bpe::Bpe>, String),
}

/// A piece of the input after special-token partitioning.
enum Fragment<'a> {
    Text(&'a str),
    Token(i32),
}

pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    /// Some(id) when BOS is to be added.
    add_bos: Option<i32>,
    add_eos: Option<i32>,
    /// User-defined tokens, longest text first.
    user_defined: Vec<i32>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokenizer({})", self.describe())
    }
}

fn type_desc(v: &MetaValue) -> String {
    match v.as_array() {
        Some(a) => match a.first() {
            Some(e) => format!("an array of {}", e.type_name()),
            None => "an empty array".into(),
        },
        None => v.type_name().to_string(),
    }
}

fn get_str<'a>(file: &'a GgufFile, key: &'static str) -> Result<Option<&'a str>, TokenizerError> {
    file.get(key)
        .map(|v| {
            v.as_str().ok_or_else(|| TokenizerError::BadValue {
                key,
                expected: "a string",
                found: type_desc(v),
            })
        })
        .transpose()
}

fn get_bool(file: &GgufFile, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    file.get(key)
        .map(|v| {
            v.as_bool().ok_or_else(|| TokenizerError::BadValue {
                key,
                expected: "a bool",
                found: type_desc(v),
            })
        })
        .transpose()
}

fn get_str_array<'a>(
    file: &'a GgufFile,
    key: &'static str,
) -> Result<Option<Vec<&'a str>>, TokenizerError> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    let bad = || TokenizerError::BadValue {
        key,
        expected: "an array of strings",
        found: type_desc(v),
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| e.as_str().ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The first `n` entries of a numeric array (llama.cpp refuses a shorter one).
fn get_numbers<T>(
    file: &GgufFile,
    key: &'static str,
    n: usize,
    expected: &'static str,
    convert: fn(&MetaValue) -> Option<T>,
) -> Result<Option<Vec<T>>, TokenizerError> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    let bad = || TokenizerError::BadValue {
        key,
        expected,
        found: type_desc(v),
    };
    let a = v.as_array().ok_or_else(bad)?;
    if a.len() < n {
        return Err(TokenizerError::Vocabulary(format!(
            "'{key}' has {} entries for {n} tokens",
            a.len()
        )));
    }
    a[..n]
        .iter()
        .map(|e| convert(e).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A special token id: the model default if it is in the vocabulary, replaced by the key's
/// value if that is (llama.cpp warns about an out-of-range value and keeps the default).
fn special_id(
    file: &GgufFile,
    key: &'static str,
    default: u32,
    n_vocab: usize,
) -> Result<Option<i32>, TokenizerError> {
    let mut id = ((default as usize) < n_vocab).then_some(default as i32);
    if let Some(v) = file.get(key) {
        let x = v.as_u64().ok_or_else(|| TokenizerError::BadValue {
            key,
            expected: "an unsigned integer",
            found: type_desc(v),
        })?;
        if x < n_vocab as u64 {
            id = Some(x as i32);
        }
    }
    Ok(id)
}

impl Tokenizer {
    /// Reads the tokenizer of a GGUF file (see the module documentation for what is read).
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let model_name = get_str(file, KEY_MODEL)?.ok_or(TokenizerError::MissingKey(KEY_MODEL))?;
        let is_spm = match model_name {
            "llama" => true,
            "gpt2" => false,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };

        let raw_tokens =
            get_str_array(file, KEY_TOKENS)?.ok_or(TokenizerError::MissingKey(KEY_TOKENS))?;
        let n = raw_tokens.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(TokenizerError::Vocabulary(format!(
                "'{KEY_TOKENS}' has {n} entries"
            )));
        }
        let tokens: Vec<String> = raw_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.to_string()
                }
            })
            .collect();
        let mut ids: HashMap<String, i32> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            if let Some(prev) = ids.insert(t.clone(), i as i32) {
                return Err(TokenizerError::Vocabulary(format!(
                    "token '{t}' appears at ids {prev} and {i}"
                )));
            }
        }
        let scores = get_numbers(file, KEY_SCORES, n, "an array of f32 or i32", |v| match v {
            MetaValue::F32(x) => Some(*x),
            MetaValue::I32(x) => Some(*x as f32),
            _ => None,
        })?
        .unwrap_or_else(|| vec![0.0; n]);
        let types = get_numbers(file, KEY_TYPES, n, "an array of i32", |v| match v {
            MetaValue::I32(x) => Some(*x),
            _ => None,
        })?;

        let (model, bos, eos, add_bos, add_eos) = if is_spm {
            let prefix = get_bool(file, KEY_ADD_PREFIX)?.unwrap_or(true);
            (Model::Spm(prefix), 1, 2, true, false)
        } else {
            let merges =
                get_str_array(file, KEY_MERGES)?.ok_or(TokenizerError::MissingKey(KEY_MERGES))?;
            let pre = get_str(file, KEY_PRE)?.unwrap_or("default");
            let bpe = bpe::Bpe::new(&tokens, &merges, pre)?;
            (
                Model::Bpe(Box::new(bpe), pre.to_string()),
                11,
                11,
                false,
                false,
            )
        };
        let bos = special_id(file, KEY_BOS, bos, n)?;
        let eos = special_id(file, KEY_EOS, eos, n)?;
        let add_bos = get_bool(file, KEY_ADD_BOS)?.unwrap_or(add_bos);
        let add_eos = get_bool(file, KEY_ADD_EOS)?.unwrap_or(add_eos);
        let add_bos = match (add_bos, bos) {
            (false, _) => None,
            (true, Some(id)) => Some(id),
            (true, None) => return Err(TokenizerError::NoSpecialToken { which: "bos" }),
        };
        let add_eos = match (add_eos, eos) {
            (false, _) => None,
            (true, Some(id)) => Some(id),
            (true, None) => return Err(TokenizerError::NoSpecialToken { which: "eos" }),
        };

        let mut user_defined: Vec<i32> = (0..n)
            .filter(|&i| {
                types.as_ref().is_some_and(|t| t[i] == TYPE_USER_DEFINED)
                    || FORCED_USER_DEFINED.contains(&tokens[i].as_str())
            })
            .map(|i| i as i32)
            .collect();
        user_defined.sort_by_key(|&id| std::cmp::Reverse(tokens[id as usize].len()));

        Ok(Tokenizer {
            vocab: Vocab {
                tokens,
                scores,
                ids,
            },
            model,
            add_bos,
            add_eos,
            user_defined,
        })
    }

    /// As llama.cpp's `llama_tokenize(text, add_special = true, parse_special = false)`.
    pub fn encode(&self, text: &str) -> Result<Vec<i32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        out.extend(self.add_bos);
        let mut prev_special = true;
        for fragment in self.partition(text) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match &self.model {
                        Model::Spm(prefix) => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if *prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            spm::tokenize(&self.vocab, &s.replace(' ', "\u{2581}"), &mut out)?;
                        }
                        Model::Bpe(bpe, _) => bpe.tokenize(t, &mut out),
                    }
                    prev_special = false;
                }
            }
        }
        out.extend(self.add_eos);
        Ok(out)
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// One line, e.g. `gpt2 BPE (pre-tokenizer smollm), 49152 tokens`.
    pub fn describe(&self) -> String {
        let n = self.n_vocab();
        match &self.model {
            Model::Spm(prefix) => format!(
                "llama SPM ({} space prefix), {n} tokens",
                if *prefix { "with" } else { "no" }
            ),
            Model::Bpe(_, pre) => format!("gpt2 BPE (pre-tokenizer {pre}), {n} tokens"),
        }
    }

    /// `tokenizer_st_partition` with `parse_special = false`: every occurrence of a
    /// user-defined token's text, longest token first, is cut out of the text fragments.
    fn partition<'a>(&self, text: &'a str) -> Vec<Fragment<'a>> {
        let mut frags = if text.is_empty() {
            Vec::new()
        } else {
            vec![Fragment::Text(text)]
        };
        for &id in &self.user_defined {
            let pat = self.vocab.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                let Fragment::Text(mut rest) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(at) = rest.find(pat) {
                    if at > 0 {
                        next.push(Fragment::Text(&rest[..at]));
                    }
                    next.push(Fragment::Token(id));
                    rest = &rest[at + pat.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            frags = next;
        }
        frags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    /// A GGUF file with only the given metadata, read back.
    fn gguf(name: &str, meta: Vec<(&str, MetaValue)>) -> GgufFile {
        let path = std::env::temp_dir().join(format!(
            "llorch-tokenizer-{name}-{}.gguf",
            std::process::id()
        ));
        let mut w = GgufWriter::new();
        w.add_meta("general.architecture", MetaValue::Str("llama".into()))
            .unwrap();
        for (k, v) in meta {
            w.add_meta(k, v).unwrap();
        }
        w.write(&path, |_, _| Ok(())).unwrap();
        let f = GgufFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn strs(v: &[&str]) -> MetaValue {
        MetaValue::Array(v.iter().map(|s| MetaValue::Str(s.to_string())).collect())
    }

    fn f32s(v: &[f32]) -> MetaValue {
        MetaValue::Array(v.iter().map(|&x| MetaValue::F32(x)).collect())
    }

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
    }

    #[test]
    fn add_bos_without_a_bos_token_is_named() {
        let f = gguf(
            "nobos",
            vec![
                (KEY_MODEL, MetaValue::Str("gpt2".into())),
                (KEY_TOKENS, strs(&["a", "b"])),
                (KEY_MERGES, strs(&[])),
                (KEY_ADD_BOS, MetaValue::Bool(true)),
            ],
        );
        let e = Tokenizer::from_gguf(&f).unwrap_err();
        assert!(e.to_string().contains(KEY_ADD_BOS), "{e}");
    }

    #[test]
    fn unsupported_model_is_named() {
        let f = gguf(
            "bert",
            vec![
                (KEY_MODEL, MetaValue::Str("bert".into())),
                (KEY_TOKENS, strs(&["[PAD]", "a"])),
            ],
        );
        let e = Tokenizer::from_gguf(&f).unwrap_err();
        assert!(matches!(e, TokenizerError::UnsupportedModel(ref m) if m == "bert"));
        assert!(e.to_string().contains("'bert'"), "{e}");
    }

    #[test]
    fn missing_tokens_array_is_named() {
        for model in ["llama", "gpt2"] {
            let f = gguf(
                model,
                vec![
                    (KEY_MODEL, MetaValue::Str(model.into())),
                    (KEY_MERGES, strs(&["a b"])),
                ],
            );
            let e = Tokenizer::from_gguf(&f).unwrap_err();
            assert!(matches!(e, TokenizerError::MissingKey(KEY_TOKENS)), "{e}");
            assert!(e.to_string().contains(KEY_TOKENS), "{e}");
        }
    }

    #[test]
    fn missing_model_and_wrong_types_are_named() {
        let e = Tokenizer::from_gguf(&gguf("none", vec![(KEY_TOKENS, strs(&["a"]))])).unwrap_err();
        assert!(e.to_string().contains(KEY_MODEL), "{e}");
        let e = Tokenizer::from_gguf(&gguf(
            "badtokens",
            vec![
                (KEY_MODEL, MetaValue::Str("llama".into())),
                (KEY_TOKENS, MetaValue::Array(vec![MetaValue::U32(1)])),
            ],
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains(KEY_TOKENS) && e.to_string().contains("array of strings"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_pre_tokenizer_and_missing_merges_are_named() {
        let base = |pre: Option<&str>, merges: bool| {
            let mut m = vec![
                (KEY_MODEL, MetaValue::Str("gpt2".into())),
                (KEY_TOKENS, strs(&["a", "b", "ab"])),
            ];
            if merges {
                m.push((KEY_MERGES, strs(&["a b"])));
            }
            if let Some(p) = pre {
                m.push((KEY_PRE, MetaValue::Str(p.into())));
            }
            m
        };
        let e = Tokenizer::from_gguf(&gguf("llama3", base(Some("llama3"), true))).unwrap_err();
        assert!(e.to_string().contains("'llama3'"), "{e}");
        assert!(e.to_string().contains("\"smollm\""), "{e}");
        let e = Tokenizer::from_gguf(&gguf("nomerges", base(Some("gpt-2"), false))).unwrap_err();
        assert!(e.to_string().contains(KEY_MERGES), "{e}");
        // No pre-tokenizer at all: llama.cpp's default.
        let t = Tokenizer::from_gguf(&gguf("nopre", base(None, true))).unwrap();
        assert_eq!(t.describe(), "gpt2 BPE (pre-tokenizer default), 3 tokens");
        assert_eq!(t.encode("abba").unwrap(), [2, 1, 0]);
    }

    #[test]
    fn merge_that_makes_no_token_falls_back_to_bytes() {
        // "a b" makes "ab", which is no token: llama.cpp emits its bytes' tokens. The merge
        // still takes "a" before "b c" can: "abc" gives a, b, c and not a, bc.
        let f = gguf(
            "badmerge",
            vec![
                (KEY_MODEL, MetaValue::Str("gpt2".into())),
                (KEY_TOKENS, strs(&["a", "b", "c", "bc"])),
                (KEY_MERGES, strs(&["a b", "b c"])),
            ],
        );
        let t = Tokenizer::from_gguf(&f).unwrap();
        assert_eq!(t.encode("abc").unwrap(), [0, 1, 2]);
        assert_eq!(t.encode("bcab").unwrap(), [3, 0, 1]);
    }

    #[test]
    fn spm_merges_by_score_then_leftmost_with_byte_fallback() {
        // ▁ a b ab ▁a bb <0x..> for 'c' (0x63) only.
        let toks = [
            "<unk>",
            "<s>",
            "</s>",
            "<0x63>",
            "\u{2581}",
            "a",
            "b",
            "ab",
            "\u{2581}a",
            "bb",
        ];
        let scores = [0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -2.0, -3.0, -2.0];
        let f = gguf(
            "spm",
            vec![
                (KEY_MODEL, MetaValue::Str("llama".into())),
                (KEY_TOKENS, strs(&toks)),
                (KEY_SCORES, f32s(&scores)),
            ],
        );
        let t = Tokenizer::from_gguf(&f).unwrap();
        assert_eq!(t.describe(), "llama SPM (with space prefix), 10 tokens");
        // "▁abb": ab (-2, left) and bb (-2, right) tie: the leftmost wins, ▁a then loses to it.
        assert_eq!(t.encode("abb").unwrap(), [1, 4, 7, 6]);
        // "▁ab": ab (-2) beats ▁a (-3).
        assert_eq!(t.encode("ab").unwrap(), [1, 4, 7]);
        // 'c' has a byte token; 'é' has none.
        assert_eq!(t.encode("c").unwrap(), [1, 4, 3]);
        assert!(matches!(
            t.encode("é"),
            Err(TokenizerError::NoByteToken(0xC3))
        ));
        assert_eq!(t.encode("").unwrap(), [1]);
    }

    #[test]
    fn user_defined_tokens_are_split_out() {
        let toks = [
            "<unk>", "<s>", "</s>", "\u{2581}", "a", "<u>", "<", "u", ">",
        ];
        let types = [2, 3, 3, 1, 1, TYPE_USER_DEFINED, 1, 1, 1];
        let f = gguf(
            "userdef",
            vec![
                (KEY_MODEL, MetaValue::Str("llama".into())),
                (KEY_TOKENS, strs(&toks)),
                (
                    KEY_TYPES,
                    MetaValue::Array(types.iter().map(|&x| MetaValue::I32(x)).collect()),
                ),
                (KEY_ADD_EOS, MetaValue::Bool(true)),
            ],
        );
        let t = Tokenizer::from_gguf(&f).unwrap();
        // The fragment after the token gets the space prefix again; EOS closes.
        assert_eq!(t.encode("a<u>a").unwrap(), [1, 3, 4, 5, 3, 4, 2]);
        assert_eq!(t.encode("<u><u>").unwrap(), [1, 5, 5, 2]);
    }
}
