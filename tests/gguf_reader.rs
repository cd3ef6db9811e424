//! The reader on a real model, checked against what llama.cpp reports for the same file.

use std::path::PathBuf;

use llorch_diff::gguf::{Arch, GgufFile, ModelParams};
use llorch_diff::llamacpp::{KvType, Session};
use llorch_diff::quant::GgmlType;

fn smollm2() -> PathBuf {
    let p = std::env::var_os("LLORCH_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "SmolLM2 model not found at {}: run scripts/fetch-model.sh (or set LLORCH_SMOLLM2)",
        p.display()
    );
    p
}

#[test]
fn smollm2_params_match_llama_cpp() {
    let path = smollm2();
    let f = GgufFile::open(&path).expect("open SmolLM2");
    let p = ModelParams::from_gguf(&f).expect("params");
    let s = Session::open(&path, 64, KvType::F32, 1, true).expect("llama.cpp loads SmolLM2");
    let d = s.dims();
    println!("reader: {p:?}\nllama.cpp: {d:?}");
    assert_eq!(p.arch, Arch::Llama);
    assert_eq!(p.n_layer, d.n_layer);
    assert_eq!(p.n_embd, d.n_embd);
    assert_eq!(p.n_head, d.n_head);
    assert_eq!(p.n_head_kv, d.n_head_kv);
    assert_eq!(p.n_vocab, d.n_vocab);
    assert_eq!(p.n_ctx_train, d.n_ctx_train);
    assert_eq!(p.head_dim * p.n_head, p.n_embd);
    // Values llama.cpp only exposes as metadata strings.
    let meta_f32 = |k: &str| {
        s.meta(k)
            .unwrap_or_else(|| panic!("llama.cpp has no {k}"))
            .parse::<f32>()
            .unwrap()
    };
    assert_eq!(
        p.norm_eps,
        meta_f32("llama.attention.layer_norm_rms_epsilon")
    );
    assert_eq!(p.rope_freq_base, meta_f32("llama.rope.freq_base"));
    assert_eq!(p.n_ff, meta_f32("llama.feed_forward_length") as usize);
    assert_eq!(p.tied_output, !f.has_tensor("output.weight"));
    assert!(p.tied_output, "SmolLM2 ties its output to token_embd");
}

#[test]
fn smollm2_tensors_are_consistent() {
    let f = GgufFile::open(&smollm2()).expect("open SmolLM2");
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    let p = ModelParams::from_gguf(&f).unwrap();
    // Layout: sorted by offset the tensors tile the data section with only alignment padding.
    let mut ts: Vec<_> = f.tensors().to_vec();
    ts.sort_by_key(|t| t.offset);
    assert_eq!(ts[0].offset, f.data_offset());
    for w in ts.windows(2) {
        let end = w[0].offset + w[0].n_bytes as u64;
        assert!(
            w[1].offset >= end && w[1].offset - end < f.alignment() as u64,
            "{} -> {}",
            w[0].name,
            w[1].name
        );
    }
    let last = ts.last().unwrap();
    assert!(last.offset + last.n_bytes as u64 <= f.file_size());

    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.info.dims, vec![p.n_embd as u64, p.n_vocab as u64]);
    assert_eq!(emb.info.ggml_type, GgmlType::Q8_0);
    assert_eq!(emb.row_len(), p.n_embd);
    assert_eq!(emb.n_rows(), p.n_vocab);
    assert_eq!(emb.row_bytes(), p.n_embd / 32 * 34);
    assert_eq!(emb.row(p.n_vocab - 1).len(), emb.row_bytes());
    let q = f.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(
        q.info.dims,
        vec![p.n_embd as u64, (p.n_head_kv * p.head_dim) as u64]
    );
    assert_eq!(q.info.ggml_type, GgmlType::Q4_1);
    let norm = f.tensor("blk.29.ffn_norm.weight").unwrap();
    assert_eq!(norm.info.ggml_type, GgmlType::F32);
    assert_eq!(norm.data.len(), p.n_embd * 4);

    let counts = |t: GgmlType| f.tensors().iter().filter(|x| x.ggml_type == t).count();
    println!(
        "tensors: {} (q4_1 {}, f32 {}, q8_0 {})",
        f.tensors().len(),
        counts(GgmlType::Q4_1),
        counts(GgmlType::F32),
        counts(GgmlType::Q8_0)
    );
    assert_eq!(
        counts(GgmlType::Q4_1) + counts(GgmlType::F32) + counts(GgmlType::Q8_0),
        f.tensors().len()
    );

    let err = f.tensor("blk.30.attn_q.weight").unwrap_err().to_string();
    assert!(err.contains("blk.30.attn_q.weight"), "{err}");
    let toks = f
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .unwrap();
    assert_eq!(toks.len(), p.n_vocab);
    assert_eq!(
        f.get("tokenizer.ggml.pre").and_then(|v| v.as_str()),
        Some("smollm")
    );
}
