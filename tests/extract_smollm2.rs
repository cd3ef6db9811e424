//! llama.cpp's side on the real model: the catalogue is complete and well-shaped, the dumped
//! logits are llama.cpp's own, and dumps are deterministic.

mod common;

use llorch_diff::checkpoint::catalogue::{step_checkpoints, CheckpointId};
use llorch_diff::checkpoint::{CheckpointName, DumpFolder, Kind};
use llorch_diff::llamacpp::capture::{self, GraphFamily};
use llorch_diff::llamacpp::extract::{extract, ExtractOptions};
use llorch_diff::llamacpp::{KvType, Session};

fn opts(steps: u32) -> ExtractOptions {
    ExtractOptions {
        steps,
        kv_type: KvType::F32,
        threads: 2,
        repack: true,
        filter: None,
    }
}

#[test]
fn hello_world_full_catalogue_three_steps() {
    let model = common::smollm2();
    let out = common::scratch("extract_hello").join("hello");
    let s = extract(&model, "Hello world", &out, &opts(2)).unwrap();
    assert_eq!(s.prompt_tokens.len(), 2);
    let session = Session::open(&model, 64, KvType::F32, 1, true).unwrap();
    let d = session.dims();
    assert_eq!((d.n_layer, d.n_head, d.n_head_kv), (30, 9, 3));
    let head_dim = d.n_embd / d.n_head;

    let folder = DumpFolder::open(&out).unwrap();
    let mut expected: Vec<CheckpointId> = Vec::new();
    for step in 0..3 {
        expected.extend(
            step_checkpoints(&Kind::LLAMA, 30)
                .into_iter()
                .map(|name| CheckpointId { step, name }),
        );
    }
    let got: Vec<CheckpointId> = folder.entries.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        got, expected,
        "every catalogued checkpoint of every layer and step, in graph order"
    );

    for e in &folder.entries {
        let t = folder.load(e).unwrap();
        let (tokens, filled) = if e.id.step == 0 {
            (2, 2)
        } else {
            (1, 2 + e.id.step as usize)
        };
        let want: Vec<usize> = match &e.id.name {
            CheckpointName::Tokens => vec![tokens],
            CheckpointName::ResultOutput => vec![tokens, d.n_vocab],
            CheckpointName::Layer { kind, .. } => match kind {
                Kind::Qcur | Kind::QcurRope => vec![tokens, d.n_head, head_dim],
                Kind::Kcur | Kind::KcurRope | Kind::Vcur => vec![tokens, d.n_head_kv, head_dim],
                Kind::CacheK | Kind::CacheV => vec![filled, d.n_head_kv, head_dim],
                Kind::KqSoftMax => vec![d.n_head, tokens, filled],
                Kind::FfnGate | Kind::FfnUp | Kind::FfnSwiglu => vec![tokens, 1536],
                _ => vec![tokens, d.n_embd],
            },
            _ => vec![tokens, d.n_embd],
        };
        assert_eq!(t.shape, want, "{}", e.id);
        assert!(
            t.data.iter().all(|v| v.is_finite()),
            "{} has non-finite values",
            e.id
        );
        if e.id.name.kind() == Some(Kind::KqSoftMax) {
            for row in t.data.chunks(filled) {
                let sum: f32 = row.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-5,
                    "{}: softmax row sums to {sum}",
                    e.id
                );
            }
        }
    }
    // cache_k grows by exactly the new position: earlier cells are unchanged.
    let k0 = folder
        .load(
            folder
                .entries
                .iter()
                .find(|e| e.id.step == 0 && e.id.name.to_string() == "blk.5.cache_k")
                .unwrap(),
        )
        .unwrap();
    let k1 = folder
        .load(
            folder
                .entries
                .iter()
                .find(|e| e.id.step == 1 && e.id.name.to_string() == "blk.5.cache_k")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(&k1.data[..k0.data.len()], &k0.data[..]);
    // ... and its newest cell is that step's Kcur after RoPE.
    let kr = folder
        .load(
            folder
                .entries
                .iter()
                .find(|e| e.id.step == 1 && e.id.name.to_string() == "blk.5.Kcur_rope")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(&k1.data[k0.data.len()..], &kr.data[..]);
}

#[test]
fn dumped_logits_are_llama_get_logits_bit_for_bit() {
    let model = common::smollm2();
    let mut session = Session::open(&model, 64, KvType::F32, 2, true).unwrap();
    let d = session.dims();
    let tokens = session
        .tokenize("The quick brown fox", true, false)
        .unwrap();
    let rules = capture::rules(GraphFamily::Llama, d.n_layer as u32);
    let rule = rules
        .iter()
        .find(|r| r.name == CheckpointName::ResultOutput)
        .unwrap();
    session
        .capture_names(std::slice::from_ref(&rule.node))
        .unwrap();
    let captures = session.decode(&tokens, 0).unwrap();
    let dumped = capture::take(rule, &captures, tokens.len()).unwrap();
    assert_eq!(dumped.shape, vec![tokens.len(), d.n_vocab]);
    for (i, row) in dumped.data.chunks(d.n_vocab).enumerate() {
        let api = session.logits(i, d.n_vocab).unwrap();
        let same = row
            .iter()
            .zip(&api)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "row {i} of result_output differs from llama_get_logits_ith"
        );
    }
}

#[test]
fn two_runs_are_byte_identical() {
    let model = common::smollm2();
    let dir = common::scratch("extract_determinism");
    let o = ExtractOptions {
        kv_type: KvType::F16,
        ..opts(2)
    };
    extract(&model, "Determinism, twice.", &dir.join("a"), &o).unwrap();
    extract(&model, "Determinism, twice.", &dir.join("b"), &o).unwrap();
    let (a, b) = (
        common::read_tree(&dir.join("a")),
        common::read_tree(&dir.join("b")),
    );
    assert!(a.len() > 1000);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(
            v == &b[k],
            "{} differs between two identical runs",
            k.display()
        );
    }
}

#[test]
fn filter_limits_checkpoints() {
    let model = common::smollm2();
    let out = common::scratch("extract_filter").join("f");
    let matcher = llorch_diff::glob::Glob::new("blk.*.l_out").unwrap();
    let o = ExtractOptions {
        filter: Some(matcher),
        ..opts(1)
    };
    extract(&model, "Hi", &out, &o).unwrap();
    let folder = DumpFolder::open(&out).unwrap();
    assert_eq!(folder.entries.len(), 2 * 30);
    assert!(folder
        .entries
        .iter()
        .all(|e| e.id.name.kind() == Some(Kind::LOut)));
}
