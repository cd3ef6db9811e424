//! Writer -> reader round trips, preset determinism, and llama.cpp loading every preset.

use std::path::{Path, PathBuf};

use llorch_diff::gguf::presets::{self, Preset};
use llorch_diff::gguf::{GgufError, GgufFile, GgufWriter, MetaValue, ModelParams};
use llorch_diff::llamacpp::{self, ggml, KvType, Session};
use llorch_diff::quant::GgmlType;

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("llorch-gguf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn all_value_kinds() -> Vec<(String, MetaValue)> {
    use MetaValue::*;
    vec![
        ("general.architecture".into(), Str("llama".into())),
        ("t.u8".into(), U8(250)),
        ("t.i8".into(), I8(-7)),
        ("t.u16".into(), U16(65000)),
        ("t.i16".into(), I16(-30000)),
        ("t.u32".into(), U32(4_000_000_000)),
        ("t.i32".into(), I32(-2_000_000_000)),
        ("t.f32".into(), F32(-1.5e-7)),
        ("t.bool".into(), Bool(true)),
        ("t.str".into(), Str("héllo ▁wörld \u{1F600}".into())),
        ("t.empty_str".into(), Str(String::new())),
        ("t.u64".into(), U64(u64::MAX)),
        ("t.i64".into(), I64(i64::MIN)),
        ("t.f64".into(), F64(std::f64::consts::PI)),
        ("t.arr_u8".into(), Array(vec![U8(1), U8(2), U8(3)])),
        (
            "t.arr_str".into(),
            Array(vec![
                Str("a b".into()),
                Str(String::new()),
                Str("ĠĊ".into()),
            ]),
        ),
        (
            "t.arr_f32".into(),
            Array(vec![F32(0.25), F32(-0.0), F32(f32::MAX)]),
        ),
        ("t.arr_empty".into(), Array(vec![])),
        (
            "t.arr_nested".into(),
            Array(vec![
                Array(vec![I32(1), I32(-2)]),
                Array(vec![]),
                Array(vec![I32(3)]),
            ]),
        ),
        (
            "t.arr_deep".into(),
            Array(vec![Array(vec![Array(vec![Bool(false), Bool(true)])])]),
        ),
    ]
}

fn pattern(info_name: &str, buf: &mut [u8]) {
    let h = info_name
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    for (i, b) in buf.iter_mut().enumerate() {
        *b = h.wrapping_add(i as u8).wrapping_mul(13);
    }
}

#[test]
fn round_trip_field_for_field() {
    for alignment in [None, Some(64u32), Some(1)] {
        let dir = Scratch::new(&format!("rt{}", alignment.unwrap_or(0)));
        let out = dir.path("rt.gguf");
        let mut w = GgufWriter::new();
        for (k, v) in all_value_kinds() {
            w.add_meta(k, v).unwrap();
        }
        if let Some(a) = alignment {
            w.set_alignment(a).unwrap();
        }
        w.add_tensor("a.f32", &[5], GgmlType::F32).unwrap();
        w.add_tensor("b.q8_0", &[64, 3], GgmlType::Q8_0).unwrap();
        w.add_tensor("c.q4_1", &[32, 2, 3], GgmlType::Q4_1).unwrap();
        w.add_tensor("d.f16", &[3, 1, 2, 2], GgmlType::F16).unwrap();
        w.add_tensor("e.scalar", &[], GgmlType::F32).unwrap();
        w.add_tensor("f.empty", &[0, 4], GgmlType::F16).unwrap();
        w.add_tensor("g.q4_k", &[256, 2], GgmlType::Q4K).unwrap();
        w.write(&out, |t, buf| {
            pattern(&t.name, buf);
            Ok(())
        })
        .unwrap();

        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), alignment.unwrap_or(32));
        assert_eq!(f.metadata(), w.metadata());
        for (k, v) in w.metadata() {
            assert_eq!(f.get(k), Some(v), "{k}");
        }
        assert_eq!(f.tensors(), w.tensors().as_slice());
        for t in w.tensors() {
            let view = f.tensor(&t.name).unwrap();
            assert_eq!(view.info.offset % u64::from(f.alignment()), 0);
            let mut expect = vec![0u8; t.n_bytes];
            pattern(&t.name, &mut expect);
            assert_eq!(view.data, expect.as_slice(), "{}", t.name);
        }
        let c = f.tensor("c.q4_1").unwrap();
        assert_eq!((c.row_len(), c.n_rows(), c.row_bytes()), (32, 6, 20));
        assert_eq!(c.row(5), &c.data[100..120]);
        assert_eq!(f.tensor("e.scalar").unwrap().data.len(), 4);
        assert!(f.tensor("f.empty").unwrap().data.is_empty());
        // GGUF v2 has the same layout (64-bit counts); only the version differs.
        let mut v2 = std::fs::read(&out).unwrap();
        v2[4..8].copy_from_slice(&2u32.to_le_bytes());
        let f2 = GgufFile::from_bytes(v2).unwrap();
        assert_eq!(
            (f2.version(), f2.metadata(), f2.tensors()),
            (2, f.metadata(), f.tensors())
        );
        // The file ends with the last tensor's padding.
        let last = f.tensors().last().unwrap();
        let a = u64::from(f.alignment());
        assert_eq!(
            f.file_size(),
            (last.offset + last.n_bytes as u64).div_ceil(a) * a
        );
    }
}

#[test]
fn writer_refuses_what_gguf_cannot_hold() {
    let mut w = GgufWriter::new();
    w.add_meta("k", MetaValue::U8(1)).unwrap();
    assert!(w.add_meta("k", MetaValue::U8(2)).is_err(), "duplicate key");
    assert!(w
        .add_meta(
            "mixed",
            MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I8(1)])
        )
        .is_err());
    assert!(w.add_meta("general.alignment", MetaValue::U32(3)).is_err());
    assert!(w.set_alignment(48).is_err());
    assert!(
        w.add_tensor("t", &[33], GgmlType::Q8_0).is_err(),
        "row not whole blocks"
    );
    assert!(
        w.add_tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32).is_err(),
        "5 dims"
    );
    assert!(
        w.add_tensor("x".repeat(64), &[1], GgmlType::F32).is_err(),
        "name too long"
    );
    w.add_tensor("t", &[32], GgmlType::F32).unwrap();
    assert!(
        w.add_tensor("t", &[32], GgmlType::F32).is_err(),
        "duplicate tensor"
    );
}

#[test]
fn failed_write_leaves_nothing() {
    let dir = Scratch::new("fail");
    let out = dir.path("x.gguf");
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::Str("llama".into()))
        .unwrap();
    w.add_tensor("a", &[32], GgmlType::F32).unwrap();
    w.add_tensor("b", &[32], GgmlType::F32).unwrap();
    let err = w
        .write(&out, |t, _| {
            if t.name == "b" {
                Err(GgufError::Write("boom".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(err.to_string().contains("boom"));
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "temporary file left behind"
    );
    // An existing file is replaced only by a complete one.
    std::fs::write(&out, b"old").unwrap();
    let _ = w.write(&out, |t, _| {
        if t.name == "b" {
            Err(GgufError::Write("boom".into()))
        } else {
            Ok(())
        }
    });
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
}

fn quants() -> Vec<GgmlType> {
    use GgmlType::*;
    vec![
        F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2K, Q3K, Q4K, Q5K, Q6K,
    ]
}

#[test]
fn presets_round_trip_and_match_ggml_codecs() {
    let dir = Scratch::new("presets");
    for preset in [Preset::TinyLlama, Preset::TinyGpt2] {
        for q in quants() {
            let out = dir.path(&format!("{preset}-{q}.gguf"));
            presets::write_preset(preset, q, 7, &out).unwrap();
            let f = GgufFile::open(&out).unwrap();
            assert_eq!(
                ModelParams::from_gguf(&f).unwrap(),
                preset.params(),
                "{preset} {q}"
            );
            let types = presets::tensor_types(preset, q);
            assert_eq!(f.tensors().len(), types.len());
            for (info, (name, ty)) in f.tensors().iter().zip(&types) {
                assert_eq!((&info.name, info.ggml_type), (name, *ty));
            }
            // Every tensor's bytes are ggml's own encoding of the preset's values.
            for info in f.tensors() {
                let vals = presets::tensor_values(preset, 7, &info.name).unwrap();
                let view = f.tensor(&info.name).unwrap();
                for r in [0, view.n_rows() - 1] {
                    let src = &vals[r * view.row_len()..(r + 1) * view.row_len()];
                    let expect = if info.ggml_type == GgmlType::F32 {
                        src.iter().flat_map(|x| x.to_le_bytes()).collect()
                    } else {
                        ggml::quantize_ref(info.ggml_type, src).unwrap()
                    };
                    assert_eq!(
                        view.row(r),
                        expect.as_slice(),
                        "{preset} {q} {} row {r}",
                        info.name
                    );
                }
            }
        }
    }
}

#[test]
fn presets_are_deterministic_per_seed() {
    let dir = Scratch::new("seed");
    let (a, b, c) = (dir.path("a.gguf"), dir.path("b.gguf"), dir.path("c.gguf"));
    presets::write_preset(Preset::TinyGpt2, GgmlType::Q8_0, 3, &a).unwrap();
    presets::write_preset(Preset::TinyGpt2, GgmlType::Q8_0, 3, &b).unwrap();
    presets::write_preset(Preset::TinyGpt2, GgmlType::Q8_0, 4, &c).unwrap();
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(a.len(), c.len());
    assert_ne!(a, c);
    assert!(Preset::parse("tiny-LLAMA").is_ok());
    // Activation-only formats are refused, and nothing is left behind.
    let err = presets::write_preset(Preset::TinyLlama, GgmlType::Q8K, 0, &dir.path("k.gguf"))
        .unwrap_err();
    assert!(err.to_string().contains("q8_K"), "{err}");
    assert!(!dir.path("k.gguf").exists());
    assert!(Preset::parse("huge")
        .unwrap_err()
        .to_string()
        .contains("tiny-llama"));
}

fn std_of(x: &[f32]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    (x.iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// Loads a model in llama.cpp, decodes a prompt, and checks that the dims agree with the reader,
/// that every layer's output and the logits are finite and of a sane scale.
fn check_in_llama_cpp(path: &Path, prompt: &str) -> (Vec<f64>, f64) {
    llamacpp::set_verbose(false);
    let f = GgufFile::open(path).unwrap();
    let p = ModelParams::from_gguf(&f).unwrap();
    let mut s = Session::open(path, 64, KvType::F32, 2, true)
        .unwrap_or_else(|e| panic!("llama.cpp rejects {}: {e}", path.display()));
    let d = s.dims();
    assert_eq!(
        (
            d.n_layer,
            d.n_embd,
            d.n_head,
            d.n_head_kv,
            d.n_vocab,
            d.n_ctx_train
        ),
        (
            p.n_layer,
            p.n_embd,
            p.n_head,
            p.n_head_kv,
            p.n_vocab,
            p.n_ctx_train
        )
    );
    let toks = s.tokenize(prompt, true, false).unwrap();
    assert!(
        toks.len() >= 3 && toks.len() < prompt.len(),
        "learned pieces should beat bytes: {toks:?}"
    );
    let names: Vec<String> = (0..p.n_layer).map(|i| format!("l_out-{i}")).collect();
    s.capture_names(&names).unwrap();
    let caps = s.decode(&toks, 0).unwrap();
    let mut layer_std = Vec::new();
    for n in &names {
        let c = caps
            .iter()
            .find(|c| &c.name == n)
            .unwrap_or_else(|| panic!("{n} not captured"));
        assert!(c.data.iter().all(|v| v.is_finite()), "{n} not finite");
        layer_std.push(std_of(&c.data));
    }
    let logits = s.logits(toks.len() - 1, d.n_vocab).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    let lstd = std_of(&logits);
    for (i, sd) in layer_std.iter().enumerate() {
        assert!((0.05..50.0).contains(sd), "l_out-{i} std {sd}");
    }
    assert!((0.3..20.0).contains(&lstd), "logit std {lstd}");
    (layer_std, lstd)
}

#[test]
fn llama_cpp_loads_every_tiny_preset() {
    let dir = Scratch::new("llama");
    for preset in [Preset::TinyLlama, Preset::TinyGpt2] {
        for q in quants() {
            let out = dir.path(&format!("{preset}-{q}.gguf"));
            presets::write_preset(preset, q, 11, &out).unwrap();
            let (layers, lstd) = check_in_llama_cpp(&out, "The old woman made bread in the town.");
            let ls: Vec<String> = layers.iter().map(|s| format!("{s:.2}")).collect();
            println!(
                "{preset:>10} {q:>5}: l_out std [{}], logits std {lstd:.2}",
                ls.join(", ")
            );
        }
    }
}

#[test]
fn llama_cpp_tokenizes_with_the_preset_vocabularies() {
    let dir = Scratch::new("tok");
    let l = dir.path("l.gguf");
    let g = dir.path("g.gguf");
    presets::write_preset(Preset::TinyLlama, GgmlType::F16, 1, &l).unwrap();
    presets::write_preset(Preset::TinyGpt2, GgmlType::F16, 1, &g).unwrap();
    llamacpp::set_verbose(false);
    {
        let s = Session::open(&l, 64, KvType::F32, 1, true).unwrap();
        let t = s.tokenize("the town", true, false).unwrap();
        assert_eq!(t[0], 1, "SPM preset adds BOS");
        assert_eq!(String::from_utf8(s.token_to_piece(t[1])).unwrap(), " the");
        // A character outside the corpus falls back to byte tokens.
        let t = s.tokenize("é", false, false).unwrap();
        assert_eq!(
            String::from_utf8(s.token_to_piece(t[0])).unwrap(),
            " ",
            "the space prefix"
        );
        assert_eq!(t[1..], [3 + 0xC3, 3 + 0xA9]);
    }
    {
        let s = Session::open(&g, 64, KvType::F32, 1, true).unwrap();
        let t = s.tokenize("the town", true, false).unwrap();
        assert_ne!(t[0], 511, "GPT-2 preset adds no BOS");
        let text: Vec<u8> = t.iter().flat_map(|&id| s.token_to_piece(id)).collect();
        assert_eq!(text, b"the town");
        assert!(t.len() <= 3, "{t:?}");
    }
}

/// ~7 GB on disk; run by hand: `cargo test --release --test gguf_writer -- --ignored`.
#[test]
#[ignore]
fn llama2_7b_shape_q8_0_streams_and_loads() {
    let dir = Scratch::new("7b");
    let out = dir.path("7b.gguf");
    let t0 = std::time::Instant::now();
    presets::write_preset(Preset::Llama2_7bShape, GgmlType::Q8_0, 0, &out).unwrap();
    let size = std::fs::metadata(&out).unwrap().len();
    println!("wrote {size} bytes in {:.1} s", t0.elapsed().as_secs_f64());
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(
        ModelParams::from_gguf(&f).unwrap(),
        Preset::Llama2_7bShape.params()
    );
    drop(f);
    let (layers, lstd) = check_in_llama_cpp(&out, "Once upon a time there was a town.");
    println!(
        "l_out std first/last {:.2}/{:.2}, logits std {lstd:.2}",
        layers[0],
        layers[layers.len() - 1]
    );
}
