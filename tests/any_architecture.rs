//! `extract` on an architecture without a catalogue: a tiny-llama file relabelled as `xverse`
//! (an architecture llama.cpp loads with exactly llama's tensors and graph). llama.cpp still
//! gives the universal checkpoints, each equal to the llama run's catalogued one, and with
//! `--all-nodes` every node of every step's graph; `compare` judges two such folders;
//! `inspect` shows the file's hyperparameters; `run` refuses it in one line, exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use llorch_diff::checkpoint::{CheckpointName, DumpFolder, Manifest};
use llorch_diff::gguf::edit::{copy_with, Edit};
use llorch_diff::gguf::presets::{write_preset, Preset};
use llorch_diff::gguf::{GgufFile, MetaValue};
use llorch_diff::llamacpp::extract::{extract_nodes, ExtractOptions};
use llorch_diff::llamacpp::{set_verbose, KvType};
use llorch_diff::quant::GgmlType;

const PROMPT: &str = "The old woman made bread in the town.";

/// tiny-llama with every `llama.*` key renamed to `xverse.*`.
fn xverse_model(dir: &Path) -> (PathBuf, PathBuf) {
    let llama = dir.join("tiny-llama.gguf");
    write_preset(Preset::TinyLlama, GgmlType::Q8_0, 5, &llama).unwrap();
    let f = GgufFile::open(&llama).unwrap();
    let mut edit = Edit::default().set("general.architecture", MetaValue::Str("xverse".into()));
    for (k, v) in f.metadata() {
        if let Some(rest) = k.strip_prefix("llama.") {
            edit = edit
                .remove(k.clone())
                .set(format!("xverse.{rest}"), v.clone());
        }
    }
    let xverse = dir.join("tiny-xverse.gguf");
    copy_with(&llama, &xverse, &edit).unwrap();
    (llama, xverse)
}

fn opts(kv: KvType, threads: usize) -> ExtractOptions {
    ExtractOptions {
        steps: 2,
        kv_type: kv,
        threads,
        repack: true,
        filter: None,
    }
}

fn manifest(dir: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn an_architecture_without_catalogue_is_extracted_compared_inspected_and_refused() {
    set_verbose(false);
    let dir = common::scratch("any_architecture");
    let (llama, xverse) = xverse_model(&dir);

    // The universal checkpoints and every node.
    let xv = dir.join("xverse");
    extract_nodes(&xverse, PROMPT, &xv, &opts(KvType::F32, 1), true).unwrap();
    let m = manifest(&xv);
    assert_eq!(m.model.architecture, "xverse");
    let universal = [
        "attn_norm",
        "kqv_out",
        "ffn_inp",
        "ffn_norm",
        "ffn_out",
        "l_out",
    ];
    for step in 0..=2u32 {
        let names: Vec<&str> = m
            .checkpoints
            .iter()
            .filter(|e| e.step == step && e.op.is_none())
            .map(|e| e.name.as_str())
            .collect();
        let mut want = vec!["tokens".to_string(), "inp_embd".to_string()];
        for l in 0..4 {
            want.extend(universal.iter().map(|k| format!("blk.{l}.{k}")));
        }
        want.extend(["result_norm".to_string(), "result_output".to_string()]);
        assert_eq!(names, want, "step {step}: universal checkpoints");

        // Every node, in graph order, with its op; names are safe file names.
        let nodes: Vec<_> = m
            .checkpoints
            .iter()
            .filter(|e| e.step == step && e.op.is_some())
            .collect();
        assert!(nodes.len() > 100, "step {step}: {} nodes", nodes.len());
        for (i, e) in nodes.iter().enumerate() {
            assert!(
                e.name.starts_with(&format!("node.{i:05}.")),
                "{} at {i}",
                e.name
            );
            assert!(e
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
            assert!(e.name.ends_with(e.op.as_deref().unwrap()));
            assert!(xv.join(&e.file).is_file());
        }
        let has = |node: &str, op: &str| {
            nodes
                .iter()
                .any(|e| e.name.contains(&format!(".{node}.")) && e.op.as_deref() == Some(op))
        };
        assert!(has("Qcur-0", "ROPE") && has("Qcur-0", "RESHAPE"));
        assert!(has("cache_k_l3__view_", "VIEW"));
        assert!(has("kq_soft_max-3", "SOFT_MAX"));
        assert!(has("result_output", "MUL_MAT"));
    }

    // Each universal checkpoint is the same tensor as llama's catalogued one on the same
    // weights (xverse's graph is llama's).
    let ll = dir.join("llama");
    extract_nodes(&llama, PROMPT, &ll, &opts(KvType::F32, 1), false).unwrap();
    let (a, b) = (
        DumpFolder::open(&xv).unwrap(),
        DumpFolder::open(&ll).unwrap(),
    );
    let mut same = 0;
    for e in a
        .entries
        .iter()
        .filter(|e| !matches!(e.id.name, CheckpointName::Other(_)))
    {
        let other = b.entries.iter().find(|o| o.id == e.id).unwrap();
        assert_eq!(
            std::fs::read(&e.path).unwrap(),
            std::fs::read(&other.path).unwrap(),
            "{}",
            e.id
        );
        same += 1;
    }
    assert_eq!(same, 3 * (2 + 4 * 6 + 2));

    // compare on two llama.cpp folders of that architecture: another thread count is
    // identical; an F16 cache is not.
    let xv2 = dir.join("xverse-2threads");
    extract_nodes(&xverse, PROMPT, &xv2, &opts(KvType::F32, 2), true).unwrap();
    let xv16 = dir.join("xverse-f16");
    extract_nodes(&xverse, PROMPT, &xv16, &opts(KvType::F16, 1), true).unwrap();
    let compare = |x: &Path, y: &Path| {
        Command::new(common::bin())
            .args(["compare"])
            .arg(x)
            .arg(y)
            .output()
            .unwrap()
    };
    let same = compare(&xv, &xv2);
    let text =
        String::from_utf8_lossy(&same.stdout).to_string() + &String::from_utf8_lossy(&same.stderr);
    assert_eq!(same.status.code(), Some(0), "{text}");
    let n_entries = m.checkpoints.len();
    assert!(text.contains(&n_entries.to_string()), "{text}");
    let f16 = compare(&xv, &xv16);
    let text = String::from_utf8_lossy(&f16.stdout).to_string();
    assert!(
        text.contains("cache_k") || text.contains("kq_soft_max") || text.contains("kqv_out"),
        "{text}"
    );

    // inspect shows the stored hyperparameters.
    let out = Command::new(common::bin())
        .arg("inspect")
        .arg(&xverse)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for key in [
        "block_count",
        "embedding_length",
        "attention.head_count_kv",
        "rope.freq_base",
    ] {
        assert!(text.contains(key), "inspect lacks {key}:\n{text}");
    }

    // run refuses it in one line, before running anything long.
    let started = std::time::Instant::now();
    let out = Command::new(common::bin())
        .arg("run")
        .arg(&xverse)
        .arg(PROMPT)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("does not cover architecture \"xverse\""),
        "{err}"
    );
    for family in ["llama", "qwen2", "qwen3", "gpt2"] {
        assert!(err.contains(family), "{err}");
    }
    assert!(started.elapsed().as_secs() < 10);
    assert!(!dir.join("run").join("llama.cpp").exists());
}
