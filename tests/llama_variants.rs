//! The llama family as it is published: Llama 3.x RoPE frequency factors
//! (`rope_freqs.weight`), linear and YaRN RoPE scaling, optional Q/K/V biases. Each variant is
//! made from SmolLM2 or a preset by copying it with the tensor or keys added; ggml mode must
//! reproduce llama.cpp bit for bit and exact mode stay within its gates. Files with something
//! the reference does not implement are refused with exit code 2, naming it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use llorch_diff::checkpoint::DumpFolder;
use llorch_diff::compare::{compare_folders, Comparison, Tolerances};
use llorch_diff::cpu_config::CpuConfig;
use llorch_diff::gguf::edit::{copy_with, llama3_rope_factors, Edit};
use llorch_diff::gguf::presets::{self, write_preset, Preset};
use llorch_diff::gguf::{GgufFile, MetaValue};
use llorch_diff::llamacpp::extract::{extract, ExtractOptions};
use llorch_diff::llamacpp::{set_verbose, KvType};
use llorch_diff::quant::GgmlType;
use llorch_diff::reference::{reference, Mode, ReferenceOptions};

/// About forty tokens for SmolLM2.
const LONG_PROMPT: &str = "The capital of France is Paris, and the capital of Germany is \
    Berlin. What is the capital of Italy? Rome is, and it lies on the river Tiber, which runs \
    through the city.";

fn judge(expected: &Path, candidate: &Path) -> Comparison {
    compare_folders(
        &DumpFolder::open(expected).unwrap(),
        &DumpFolder::open(candidate).unwrap(),
        &Tolerances::builtin(),
    )
    .unwrap()
}

/// Checkpoint files of `b` that differ from `a`'s, and how many there are.
fn differing_files(a: &Path, b: &Path) -> (Vec<String>, usize) {
    let folder = DumpFolder::open(a).unwrap();
    let mut differ = Vec::new();
    for e in &folder.entries {
        let rel = e.path.strip_prefix(a).unwrap();
        if std::fs::read(&e.path).unwrap() != std::fs::read(b.join(rel)).unwrap() {
            differ.push(e.id.to_string());
        }
    }
    (differ, folder.entries.len())
}

/// llama.cpp, then the reference in ggml mode (every checkpoint byte-identical) and in exact
/// mode (within the built-in gates), on one model, prompt and KV type.
fn check(label: &str, model: &Path, prompt: &str, kv: KvType, steps: u32, dir: &Path) -> PathBuf {
    check_modes(
        label,
        model,
        prompt,
        kv,
        steps,
        dir,
        &[Mode::Ggml, Mode::Exact],
    )
}

fn check_modes(
    label: &str,
    model: &Path,
    prompt: &str,
    kv: KvType,
    steps: u32,
    dir: &Path,
    modes: &[Mode],
) -> PathBuf {
    set_verbose(false);
    let tag = format!("{label}-{}-{}", prompt.len(), kv.as_str());
    let ex_dir = dir.join(format!("ex-{tag}"));
    let ex = extract(
        model,
        prompt,
        &ex_dir,
        &ExtractOptions {
            steps,
            kv_type: kv,
            threads: 2,
            repack: true,
            filter: None,
        },
    )
    .unwrap();
    let mut line = format!(
        "{label:<28} kv {:<3} {:>2} prompt tokens + {steps} steps:",
        kv.as_str(),
        ex.prompt_tokens.len()
    );
    for &mode in modes {
        let out = dir.join(format!("ref-{}-{tag}", mode.as_str()));
        let opts = ReferenceOptions {
            mode,
            steps,
            kv_type: kv,
            cpu: CpuConfig::from_env(true),
            threads: 0,
            filter: None,
            fault: None,
            token_ids: None,
            decode_tokens: Some(ex.generated_tokens.clone()),
        };
        let r = reference(model, prompt, &out, &opts).unwrap();
        assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{tag}: tokenization");
        let c = judge(&ex_dir, &out);
        assert!(c.passed, "{tag} {mode:?}: {:?}", c.first_divergence);
        if mode == Mode::Ggml {
            let (differ, total) = differing_files(&ex_dir, &out);
            assert!(differ.is_empty(), "{tag}: not bit-identical: {differ:?}");
            assert_eq!(r.generated_tokens, ex.generated_tokens, "{tag}");
            line += &format!(" ggml {total}/{total} identical,");
        } else {
            line += &format!(" exact passes ({} checkpoints)", c.results.len());
        }
    }
    println!("{line}");
    ex_dir
}

/// llama.cpp's layer-0 rotated keys at step 1 (the first decode step).
fn kcur_rope(ex_dir: &Path) -> Vec<u8> {
    std::fs::read(ex_dir.join("step1/blk.0.Kcur_rope.bin")).unwrap()
}

fn llama3_factors_for(model: &Path) -> Vec<f32> {
    let f = GgufFile::open(model).unwrap();
    let p = llorch_diff::gguf::ModelParams::from_gguf(&f).unwrap();
    // Llama 3.1's settings: factor 8, low 1, high 4, original context 8192.
    llama3_rope_factors(p.rope_freq_base, p.rope_dim, 8.0, 1.0, 4.0, 8192.0)
}

fn with_rope_freqs(src: &Path, dst: &Path) -> PathBuf {
    let factors = llama3_factors_for(src);
    assert!(factors.contains(&1.0) && factors.contains(&8.0));
    copy_with(
        src,
        dst,
        &Edit::default().add_f32("rope_freqs.weight", factors),
    )
    .unwrap();
    dst.to_path_buf()
}

fn tiny_llama(dir: &Path, quant: GgmlType) -> PathBuf {
    let out = dir.join(format!("tiny-llama-{}.gguf", quant.name()));
    write_preset(Preset::TinyLlama, quant, 5, &out).unwrap();
    out
}

fn f32m(x: f32) -> MetaValue {
    MetaValue::F32(x)
}

#[test]
fn smollm2_with_llama3_rope_factors_is_reproduced() {
    let dir = common::scratch("variants_smollm2_rope_freqs");
    let model = with_rope_freqs(&common::smollm2(), &dir.join("smollm2-rope-freqs.gguf"));
    for prompt in ["Hi", LONG_PROMPT] {
        for kv in [KvType::F32, KvType::F16] {
            check("smollm2 + rope_freqs", &model, prompt, kv, 3, &dir);
        }
    }
}

#[test]
fn rope_scaling_variants_are_reproduced() {
    let dir = common::scratch("variants_rope_scaling");
    let base = tiny_llama(&dir, GgmlType::Q8_0);
    let k = |s: &str| format!("llama.{s}");
    let variants: Vec<(&str, Edit)> = vec![
        (
            "linear x4",
            Edit::default()
                .set(k("rope.scaling.type"), MetaValue::Str("linear".into()))
                .set(k("rope.scaling.factor"), f32m(4.0)),
        ),
        (
            "yarn x4, orig ctx 64",
            Edit::default()
                .set(k("rope.scaling.type"), MetaValue::Str("yarn".into()))
                .set(k("rope.scaling.factor"), f32m(4.0))
                .set(
                    k("rope.scaling.original_context_length"),
                    MetaValue::U32(64),
                ),
        ),
        (
            "yarn x8 + attn_factor 0.9",
            Edit::default()
                .set(k("rope.scaling.type"), MetaValue::Str("yarn".into()))
                .set(k("rope.scaling.factor"), f32m(8.0))
                .set(k("rope.scaling.attn_factor"), f32m(0.9)),
        ),
        (
            "scale_linear x2 (old key)",
            Edit::default().set(k("rope.scale_linear"), f32m(2.0)),
        ),
        (
            "type none, factor 4",
            Edit::default()
                .set(k("rope.scaling.type"), MetaValue::Str("none".into()))
                .set(k("rope.scaling.factor"), f32m(4.0)),
        ),
        (
            "rope_freqs (llama3)",
            Edit::default().add_f32("rope_freqs.weight", llama3_factors_for(&base)),
        ),
    ];
    let plain = check("unscaled", &base, LONG_PROMPT, KvType::F32, 3, &dir);
    for (i, (label, edit)) in variants.iter().enumerate() {
        let model = dir.join(format!("variant-{i}.gguf"));
        copy_with(&base, &model, edit).unwrap();
        for prompt in ["", LONG_PROMPT] {
            for kv in [KvType::F32, KvType::F16] {
                let ex = check(label, &model, prompt, kv, 3, &dir);
                // The variant changes llama.cpp's computation (all but `none`, which llama.cpp
                // reads as no scaling whatever the factor).
                if prompt == LONG_PROMPT && kv == KvType::F32 {
                    let changed = kcur_rope(&ex) != kcur_rope(&plain);
                    assert_eq!(changed, !label.starts_with("type none"), "{label}");
                }
            }
        }
    }
}

#[test]
fn optional_qkv_biases_are_reproduced() {
    let dir = common::scratch("variants_qkv_bias");
    let p = Preset::TinyLlama.params();
    let (q, kv) = (p.n_head * p.head_dim, p.n_head_kv * p.head_dim);
    for quant in [GgmlType::F32, GgmlType::Q4_1] {
        let base = tiny_llama(&dir, quant);
        let mut edit = Edit::default();
        for l in 0..p.n_layer {
            // Preset-style values: the q bias of layer 0 from the generator's stream.
            let bias = |n: usize, salt: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| (((i * 37 + salt * 11 + l * 5) % 23) as f32 - 11.0) * 0.01)
                    .collect()
            };
            edit = edit
                .add_f32(format!("blk.{l}.attn_q.bias"), bias(q, 1))
                .add_f32(format!("blk.{l}.attn_k.bias"), bias(kv, 2))
                .add_f32(format!("blk.{l}.attn_v.bias"), bias(kv, 3));
        }
        let model = dir.join(format!("bias-{}.gguf", quant.name()));
        copy_with(&base, &model, &edit).unwrap();
        for kv in [KvType::F32, KvType::F16] {
            check(
                &format!("q/k/v biases {}", quant.name()),
                &model,
                LONG_PROMPT,
                kv,
                2,
                &dir,
            );
        }
    }
    // The generator is not involved: the biases are the only change.
    assert!(presets::tensor_types(Preset::TinyLlama, GgmlType::F32)
        .iter()
        .all(|(n, _)| !n.ends_with(".bias")));
}

/// `llorch-diff run MODEL`: the exit code and the standard error.
fn run_cli(model: &Path, out: &Path) -> (i32, String) {
    let o = Command::new(common::bin())
        .args(["run"])
        .arg(model)
        .arg("Hello")
        .args(["--steps", "1", "--out"])
        .arg(out)
        .arg("--report")
        .arg(out.with_extension("md"))
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn what_the_reference_does_not_implement_is_refused_by_name() {
    let dir = common::scratch("variants_refused");
    let base = tiny_llama(&dir, GgmlType::Q8_0);
    let k = |s: &str| format!("llama.{s}");
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "unknown tensor",
            Edit::default().add_f32("blk.0.attn_gate.weight", vec![0.5; 256]),
            "tensor 'blk.0.attn_gate.weight' is not implemented by the reference for llama".into(),
        ),
        (
            "output bias",
            Edit::default().add_f32("blk.1.attn_output.bias", vec![0.0; 256]),
            "tensor 'blk.1.attn_output.bias' is not implemented by the reference for llama".into(),
        ),
        (
            "unknown scaling type",
            Edit::default().set(k("rope.scaling.type"), MetaValue::Str("ntk".into())),
            "llama.rope.scaling.type".into(),
        ),
        (
            "longrope",
            Edit::default().set(k("rope.scaling.type"), MetaValue::Str("longrope".into())),
            "'longrope'".into(),
        ),
        (
            "attention scale",
            Edit::default().set(k("attention.scale"), f32m(0.125)),
            "metadata key 'llama.attention.scale' is not implemented by the reference for llama"
                .into(),
        ),
        (
            "experts",
            Edit::default().set(k("expert_count"), MetaValue::U32(8)),
            "metadata key 'llama.expert_count' = 8 is not implemented".into(),
        ),
        (
            "non-causal",
            Edit::default().set(k("attention.causal"), MetaValue::Bool(false)),
            "'llama.attention.causal' = false".into(),
        ),
    ];
    for (i, (label, edit, want)) in cases.iter().enumerate() {
        let model = dir.join(format!("refused-{i}.gguf"));
        copy_with(&base, &model, edit).unwrap();
        let out = dir.join(format!("out-{i}"));
        let (code, stderr) = run_cli(&model, &out);
        println!("{label}: exit {code}: {}", stderr.trim());
        assert_eq!(code, 2, "{label}: {stderr}");
        assert!(stderr.contains(want.as_str()), "{label}: {stderr}");
        assert!(!out.exists(), "{label}: a refused run leaves no output");
    }
    // The unmodified copy runs.
    let same = dir.join("same.gguf");
    copy_with(&base, &same, &Edit::default()).unwrap();
    let (code, stderr) = run_cli(&same, &dir.join("out-same"));
    assert_eq!(code, 0, "{stderr}");
}
