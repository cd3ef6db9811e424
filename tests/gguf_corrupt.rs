//! A corpus of broken GGUF files made from a valid tiny model: the reader must refuse each one
//! with an error that names the field, and `inspect` must exit 2 with one line on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;

use llorch_diff::gguf::presets::{self, Preset};
use llorch_diff::gguf::GgufFile;
use llorch_diff::quant::GgmlType;

/// Where each field of a GGUF header starts, labelled the way the reader names fields. The walk
/// is written from the format description, separately from the reader.
#[derive(Debug, Default)]
struct Layout {
    /// (start offset, label) of every field in file order.
    fields: Vec<(usize, String)>,
    /// (label, offset) of every string length and array length field.
    lengths: Vec<(String, usize)>,
    /// Per tensor: name, n_dims field, dims fields, type field, offset field.
    tensors: Vec<TensorFields>,
    /// Per key: key, value-type field, value start.
    kvs: Vec<(String, usize, usize)>,
    n_kv_at: usize,
    n_tensors_at: usize,
    end_of_infos: usize,
}

#[derive(Debug)]
struct TensorFields {
    name: String,
    n_dims_at: usize,
    dims_at: Vec<usize>,
    type_at: usize,
    offset_at: usize,
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
    out: Layout,
}

impl Walker<'_> {
    fn field(&mut self, label: String, len: usize) {
        self.out.fields.push((self.pos, label));
        self.pos += len;
    }
    fn string(&mut self, label: &str) -> String {
        let n = rd_u64(self.b, self.pos) as usize;
        self.out.lengths.push((format!("{label} length"), self.pos));
        self.field(format!("{label} length"), 8);
        let s = String::from_utf8(self.b[self.pos..self.pos + n].to_vec()).unwrap();
        if n > 0 {
            self.field(label.to_string(), n);
        }
        s
    }
    fn value(&mut self, ty: u32, label: &str) {
        match ty {
            0 | 1 | 7 => self.field(label.into(), 1),
            2 | 3 => self.field(label.into(), 2),
            4..=6 => self.field(label.into(), 4),
            10..=12 => self.field(label.into(), 8),
            8 => {
                self.string(label);
            }
            9 => {
                let ety = rd_u32(self.b, self.pos);
                self.field(format!("{label} array element type"), 4);
                let n = rd_u64(self.b, self.pos);
                self.out
                    .lengths
                    .push((format!("{label} array length"), self.pos));
                self.field(format!("{label} array length"), 8);
                for i in 0..n {
                    self.value(ety, &format!("{label}[{i}]"));
                }
            }
            other => panic!("walker: type {other}"),
        }
    }
    fn walk(mut self) -> Layout {
        self.field("header magic".into(), 4);
        self.field("header version".into(), 4);
        let n_tensors = rd_u64(self.b, self.pos);
        self.out.n_tensors_at = self.pos;
        self.field("header tensor_count".into(), 8);
        let n_kv = rd_u64(self.b, self.pos);
        self.out.n_kv_at = self.pos;
        self.field("header metadata_kv_count".into(), 8);
        for i in 0..n_kv {
            let key = self.string(&format!("metadata[{i}] key"));
            let ty = rd_u32(self.b, self.pos);
            let ty_at = self.pos;
            self.field(format!("metadata '{key}' value type"), 4);
            self.out.kvs.push((key.clone(), ty_at, self.pos));
            self.value(ty, &format!("metadata '{key}'"));
        }
        for i in 0..n_tensors {
            let name = self.string(&format!("tensor_info[{i}] name"));
            let n_dims_at = self.pos;
            let nd = rd_u32(self.b, self.pos);
            self.field(format!("tensor '{name}' n_dims"), 4);
            let mut dims_at = Vec::new();
            for d in 0..nd {
                dims_at.push(self.pos);
                self.field(format!("tensor '{name}' dims[{d}]"), 8);
            }
            let type_at = self.pos;
            self.field(format!("tensor '{name}' type"), 4);
            let offset_at = self.pos;
            self.field(format!("tensor '{name}' offset"), 8);
            self.out.tensors.push(TensorFields {
                name,
                n_dims_at,
                dims_at,
                type_at,
                offset_at,
            });
        }
        self.out.end_of_infos = self.pos;
        self.out
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

struct Case {
    what: String,
    bytes: Vec<u8>,
    /// The error must contain one of these.
    expect: Vec<String>,
}

fn valid_model(dir: &Path) -> Vec<u8> {
    let p = dir.join("valid.gguf");
    presets::write_preset(Preset::TinyGpt2, GgmlType::Q8_0, 5, &p).unwrap();
    std::fs::read(&p).unwrap()
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("llorch-gguf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn corpus(valid: &[u8]) -> (Vec<Case>, Vec<Case>) {
    let l = Walker {
        b: valid,
        pos: 0,
        out: Layout::default(),
    }
    .walk();
    let header_counts = [
        "header metadata_kv_count".to_string(),
        "header tensor_count".to_string(),
    ];

    // Truncated at every field boundary of the header, at the data section and inside each tensor.
    let mut truncated = Vec::new();
    for (i, (at, label)) in l.fields.iter().enumerate() {
        let mut expect = vec![label.clone()];
        // Cutting a string between its length and its bytes is caught at the length.
        if i > 0 && l.fields[i - 1].1 == format!("{label} length") {
            expect.push(format!("{label} length"));
        }
        // Inside an array, the array's length is checked against what remains before any element.
        for (len_label, _) in &l.lengths {
            if let Some(base) = len_label.strip_suffix(" array length") {
                if label.starts_with(&format!("{base}[")) {
                    expect.push(len_label.clone());
                }
            }
        }
        expect.extend(header_counts.iter().cloned());
        truncated.push(Case {
            what: format!("truncated at byte {at} ({label})"),
            bytes: valid[..*at].to_vec(),
            expect,
        });
    }
    truncated.push(Case {
        what: "truncated after the tensor infos".into(),
        bytes: valid[..l.end_of_infos].to_vec(),
        expect: vec!["data section".into()],
    });
    let f = GgufFile::from_bytes(valid.to_vec()).unwrap();
    for t in f.tensors() {
        let cut = t.offset as usize + t.n_bytes / 2;
        truncated.push(Case {
            what: format!("truncated inside tensor '{}'", t.name),
            bytes: valid[..cut].to_vec(),
            expect: vec![format!("tensor '{}' offset", t.name)],
        });
    }

    let mut cases = Vec::new();
    let mut case = |what: &str, expect: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = valid.to_vec();
        edit(&mut b);
        cases.push(Case {
            what: what.into(),
            bytes: b,
            expect: vec![expect.to_string()],
        });
    };
    case("bad magic", "header magic", &|b| b[0] = b'X');
    case("version 1", "header version", &|b| put_u32(b, 4, 1));
    case("version 4", "header version", &|b| put_u32(b, 4, 4));
    case("big-endian version", "header version", &|b| {
        put_u32(b, 4, 3u32.swap_bytes())
    });
    case(
        "metadata count u64::MAX",
        "header metadata_kv_count",
        &|b| put_u64(b, l.n_kv_at, u64::MAX),
    );
    case("tensor count 2^40", "header tensor_count", &|b| {
        put_u64(b, l.n_tensors_at, 1 << 40)
    });
    let key0_len = l
        .lengths
        .iter()
        .find(|(s, _)| s == "metadata[0] key length")
        .unwrap()
        .1;
    case("key length u64::MAX", "metadata[0] key length", &|b| {
        put_u64(b, key0_len, u64::MAX)
    });
    let arch_len = l
        .lengths
        .iter()
        .find(|(s, _)| s == "metadata 'general.architecture' length")
        .unwrap()
        .1;
    case(
        "string length 2^50",
        "metadata 'general.architecture' length",
        &|b| put_u64(b, arch_len, 1 << 50),
    );
    let toks = l
        .lengths
        .iter()
        .find(|(s, _)| s == "metadata 'tokenizer.ggml.tokens' array length")
        .unwrap()
        .1;
    case(
        "array length u64::MAX",
        "metadata 'tokenizer.ggml.tokens' array length",
        &|b| put_u64(b, toks, u64::MAX),
    );
    case(
        "array length 2^32",
        "metadata 'tokenizer.ggml.tokens' array length",
        &|b| put_u64(b, toks, 1 << 32),
    );
    let merge0 = l
        .lengths
        .iter()
        .find(|(s, _)| s == "metadata 'tokenizer.ggml.merges'[0] length")
        .unwrap()
        .1;
    case(
        "array element string length 2^40",
        "metadata 'tokenizer.ggml.merges'[0] length",
        &|b| put_u64(b, merge0, 1 << 40),
    );
    let kv = |k: &str| l.kvs.iter().find(|(key, _, _)| key == k).unwrap();
    let (_, arch_ty, _) = kv("general.architecture");
    case(
        "unknown metadata value type 13",
        "metadata 'general.architecture' value type",
        &|b| put_u32(b, *arch_ty, 13),
    );
    case(
        "metadata value type u32::MAX",
        "metadata 'general.architecture' value type",
        &|b| put_u32(b, *arch_ty, u32::MAX),
    );
    let (_, _, toks_val) = kv("tokenizer.ggml.tokens");
    case(
        "unknown array element type 99",
        "metadata 'tokenizer.ggml.tokens' array element type",
        &|b| put_u32(b, *toks_val, 99),
    );
    let (_, _, add_bos) = kv("tokenizer.ggml.add_bos_token");
    case(
        "bool byte 7",
        "metadata 'tokenizer.ggml.add_bos_token'",
        &|b| b[*add_bos] = 7,
    );
    case("invalid UTF-8 in a key", "metadata[0] key", &|b| {
        b[key0_len + 8] = 0xFF
    });
    case("empty key", "metadata[0] key", &|b| put_u64(b, key0_len, 0));

    let t0 = &l.tensors[0];
    let t1 = &l.tensors[1];
    let tl = l.tensors.last().unwrap();
    let n0 = format!("tensor '{}'", t0.name);
    case("n_dims 5", &format!("{n0} n_dims"), &|b| {
        put_u32(b, t0.n_dims_at, 5)
    });
    case("n_dims u32::MAX", &format!("{n0} n_dims"), &|b| {
        put_u32(b, t0.n_dims_at, u32::MAX)
    });
    case("dims overflow", &format!("{n0} dims[1]"), &|b| {
        put_u64(b, t0.dims_at[0], 1 << 40);
        put_u64(b, t0.dims_at[1], 1 << 40);
    });
    case("dim beyond int64", &format!("{n0} dims[0]"), &|b| {
        put_u64(b, t0.dims_at[0], u64::MAX)
    });
    case("row not whole blocks", &format!("{n0} dims"), &|b| {
        put_u64(b, t0.dims_at[0], 33)
    });
    case(
        "unknown tensor type 99",
        &format!("{n0} (type field at byte {})", t0.type_at),
        &|b| put_u32(b, t0.type_at, 99),
    );
    case(
        "removed tensor type 4 (Q4_2)",
        &format!("{n0} (type field"),
        &|b| put_u32(b, t0.type_at, 4),
    );
    case("offset past the end", &format!("{n0} offset"), &|b| {
        put_u64(b, t0.offset_at, 1 << 30)
    });
    case("offset u64::MAX - 31", &format!("{n0} offset"), &|b| {
        put_u64(b, t0.offset_at, u64::MAX - 31)
    });
    case(
        "misaligned offset",
        &format!("tensor '{}' offset", t1.name),
        &|b| {
            let v = rd_u64(b, t1.offset_at);
            put_u64(b, t1.offset_at, v + 16)
        },
    );
    case(
        "overlapping tensors",
        &format!("tensor '{}' offset", t1.name),
        &|b| put_u64(b, t1.offset_at, 0),
    );
    case(
        "oversized last tensor",
        &format!("tensor '{}' offset", tl.name),
        &|b| {
            let d = *tl.dims_at.last().unwrap();
            let v = rd_u64(b, d);
            put_u64(b, d, v + 1000)
        },
    );
    case(
        "oversized tensor overlapping the next",
        &format!("tensor '{}' offset", t1.name),
        &|b| {
            let d = *t0.dims_at.last().unwrap();
            let v = rd_u64(b, d);
            put_u64(b, d, v + 8)
        },
    );

    // One pair too many: the first tensor info is read as a pair, and whatever follows fails.
    let mut b = valid.to_vec();
    put_u64(&mut b, l.n_kv_at, rd_u64(valid, l.n_kv_at) + 1);
    cases.push(Case {
        what: "metadata count +1".into(),
        bytes: b,
        expect: vec!["metadata".into(), "tensor_info[0]".into()],
    });
    let mut b = valid.to_vec();
    put_u64(&mut b, l.n_tensors_at, rd_u64(valid, l.n_tensors_at) + 1);
    let n = l.tensors.len();
    cases.push(Case {
        what: "tensor count +1".into(),
        bytes: b,
        expect: vec![
            format!("tensor_info[{n}]"),
            "tensor '".into(),
            "data section".into(),
        ],
    });

    // Hand-made files for what the valid model cannot be edited into.
    let mut nested = Vec::new();
    nested.extend_from_slice(b"GGUF");
    nested.extend_from_slice(&3u32.to_le_bytes());
    nested.extend_from_slice(&0u64.to_le_bytes());
    nested.extend_from_slice(&1u64.to_le_bytes());
    nested.extend_from_slice(&1u64.to_le_bytes());
    nested.push(b'k');
    nested.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10_000 {
        nested.extend_from_slice(&9u32.to_le_bytes());
        nested.extend_from_slice(&1u64.to_le_bytes());
    }
    cases.push(Case {
        what: "arrays nested 10000 deep".into(),
        bytes: nested,
        expect: vec!["nested deeper".into()],
    });

    let dup = |second: &[u8], align: Option<&[u8]>| {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&(2u64 + u64::from(align.is_some())).to_le_bytes());
        for k in [b"abc".as_slice(), second] {
            b.extend_from_slice(&(k.len() as u64).to_le_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(&0u32.to_le_bytes());
            b.push(1);
        }
        if let Some(v) = align {
            b.extend_from_slice(&17u64.to_le_bytes());
            b.extend_from_slice(b"general.alignment");
            b.extend_from_slice(v);
        }
        b
    };
    cases.push(Case {
        what: "duplicate key".into(),
        bytes: dup(b"abc", None),
        expect: vec!["metadata[1] key".into()],
    });
    let mut align = 4u32.to_le_bytes().to_vec();
    align.extend_from_slice(&48u32.to_le_bytes());
    cases.push(Case {
        what: "alignment 48".into(),
        bytes: dup(b"abd", Some(&align)),
        expect: vec!["general.alignment".into()],
    });
    let mut align = 0u32.to_le_bytes().to_vec();
    align.push(32);
    cases.push(Case {
        what: "alignment as u8".into(),
        bytes: dup(b"abd", Some(&align)),
        expect: vec!["general.alignment".into()],
    });
    let mut two = Vec::new();
    two.extend_from_slice(b"GGUF");
    two.extend_from_slice(&3u32.to_le_bytes());
    two.extend_from_slice(&2u64.to_le_bytes());
    two.extend_from_slice(&0u64.to_le_bytes());
    for _ in 0..2 {
        two.extend_from_slice(&1u64.to_le_bytes());
        two.push(b't');
        two.extend_from_slice(&1u32.to_le_bytes());
        two.extend_from_slice(&8u64.to_le_bytes());
        two.extend_from_slice(&0u32.to_le_bytes());
        two.extend_from_slice(&0u64.to_le_bytes());
    }
    two.resize(96, 0);
    cases.push(Case {
        what: "duplicate tensor name".into(),
        bytes: two,
        expect: vec!["tensor_info[1] name".into()],
    });
    cases.push(Case {
        what: "empty file".into(),
        bytes: Vec::new(),
        expect: vec!["header magic".into()],
    });
    (truncated, cases)
}

fn check_reader(c: &Case) -> String {
    let err = match GgufFile::from_bytes(c.bytes.clone()) {
        Ok(_) => panic!("{}: the reader accepted it", c.what),
        Err(e) => e.to_string(),
    };
    assert!(
        c.expect.iter().any(|e| err.contains(e.as_str())),
        "{}: error does not name {:?}: {err}",
        c.what,
        c.expect
    );
    assert!(!err.contains('\n'), "{}: multi-line error", c.what);
    err
}

fn check_inspect(dir: &Path, i: usize, c: &Case) {
    let p = dir.join(format!("case{i}.gguf"));
    std::fs::write(&p, &c.bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llorch-diff"))
        .arg("inspect")
        .arg(&p)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}: inspect exit code; stderr: {stderr}",
        c.what
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{}: stderr should be one line: {stderr}",
        c.what
    );
    assert!(stderr.starts_with("error: "), "{}: {stderr}", c.what);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{}: {stderr}",
        c.what
    );
    assert!(
        c.expect.iter().any(|e| stderr.contains(e.as_str())),
        "{}: {stderr}",
        c.what
    );
    assert!(
        out.stdout.is_empty(),
        "{}: printed a report for a broken file",
        c.what
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn reader_refuses_every_broken_file_naming_the_field() {
    let dir = scratch("corrupt-reader");
    let valid = valid_model(&dir);
    GgufFile::from_bytes(valid.clone()).expect("the base model is valid");
    let (truncated, cases) = corpus(&valid);
    for c in truncated.iter().chain(&cases) {
        check_reader(c);
    }
    for c in &cases {
        println!("{:<40} {}", c.what, check_reader(c));
    }
    println!(
        "{} truncations and {} edits refused",
        truncated.len(),
        cases.len()
    );
    assert!(
        truncated.len() > 2000,
        "the tiny model's header has thousands of fields"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_exits_2_with_one_line_on_broken_files() {
    let dir = scratch("corrupt-inspect");
    let valid = valid_model(&dir);
    let (truncated, cases) = corpus(&valid);
    // Every edit, and the truncations at the fixed header, every 97th field and inside tensors.
    let n = truncated.len();
    let picked = truncated
        .iter()
        .enumerate()
        .filter(|(i, c)| *i < 8 || i % 97 == 0 || *i >= n - 60 || c.bytes.len() < 30);
    let mut count = 0;
    for (i, c) in picked.map(|(_, c)| c).chain(&cases).enumerate() {
        check_inspect(&dir, i, c);
        count += 1;
    }
    println!("inspect refused {count} broken files with exit code 2");
    // And the valid one passes.
    let p = dir.join("valid.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_llorch-diff"))
        .arg("inspect")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(env!("CARGO_BIN_EXE_llorch-diff"))
        .args(["inspect", "--json"])
        .arg(&p)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"]["n_layer"], 4);
    assert_eq!(v["tokenizer"]["merges"], 255);
    let _ = std::fs::remove_dir_all(&dir);
}
