//! gemma3 against llama.cpp on tiny-gemma3 (five sliding-window layers with a window of 16,
//! then a global one; sqrt(512) embedding scale; Q/K norms; post-attention and post-FFN
//! norms; GELU-gated FFN): every checkpoint byte-identical in ggml mode and within the gates
//! in exact mode, for every weight type below, KV f32 and f16, prompts of 1, 9 and 40 tokens
//! (40 is longer than the window) and 4 decode steps; and the faults that touch what gemma3
//! adds caught at the first checkpoint they touch. llama.cpp runs with CPU weight repacking on
//! (its default).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use llorch_diff::checkpoint::DumpFolder;
use llorch_diff::compare::{compare_folders, Comparison, Tolerances};
use llorch_diff::cpu_config::CpuConfig;
use llorch_diff::gguf::presets::{write_preset, Preset, GEMMA3_SLIDING_WINDOW};
use llorch_diff::llamacpp::extract::{extract, ExtractOptions, ExtractSummary};
use llorch_diff::llamacpp::{set_verbose, KvType};
use llorch_diff::quant::GgmlType;
use llorch_diff::reference::{reference, Fault, Mode, ReferenceOptions};

/// Prompts of 1 (BOS alone), 9 and 40 tokens with the preset's vocabulary (no space prefix).
const PROMPTS: [(&str, usize); 3] = [
    ("", 1),
    ("The old woman made bread", 9),
    (
        "Once upon a time there was a little town by the sea. The old woman made bread in the \
         town, and the children ate",
        40,
    ),
];

const TYPES: [GgmlType; 7] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4K,
    GgmlType::IQ4XS,
];

fn llama_cpp(model: &Path, prompt: &str, kv: KvType, out: &Path) -> ExtractSummary {
    set_verbose(false);
    let opts = ExtractOptions {
        steps: 4,
        kv_type: kv,
        threads: 1,
        repack: true,
        filter: None,
    };
    extract(model, prompt, out, &opts).unwrap()
}

fn ref_opts(mode: Mode, kv: KvType, ex: &ExtractSummary) -> ReferenceOptions {
    ReferenceOptions {
        mode,
        steps: 4,
        kv_type: kv,
        cpu: CpuConfig::from_env(true),
        threads: 0,
        filter: None,
        fault: None,
        token_ids: None,
        decode_tokens: Some(ex.generated_tokens.clone()),
    }
}

fn judge(expected: &Path, candidate: &Path) -> Comparison {
    compare_folders(
        &DumpFolder::open(expected).unwrap(),
        &DumpFolder::open(candidate).unwrap(),
        &Tolerances::builtin(),
    )
    .unwrap()
}

/// Checkpoints of `b` whose file differs from `a`'s, and how many there are.
fn differing(a: &Path, b: &Path) -> (Vec<String>, usize) {
    let folder = DumpFolder::open(a).unwrap();
    let differ = folder
        .entries
        .iter()
        .filter(|e| {
            let rel = e.path.strip_prefix(a).unwrap();
            std::fs::read(&e.path).unwrap() != std::fs::read(b.join(rel)).unwrap()
        })
        .map(|e| e.id.to_string())
        .collect();
    (differ, folder.entries.len())
}

fn model(dir: &Path, quant: GgmlType) -> PathBuf {
    let out = dir.join(format!("tiny-gemma3-{}.gguf", quant.name()));
    write_preset(Preset::TinyGemma3, quant, 11, &out).unwrap();
    out
}

#[test]
fn tiny_gemma3_is_reproduced_in_every_type_kv_type_and_prompt_length() {
    assert!(PROMPTS[2].1 > GEMMA3_SLIDING_WINDOW);
    let dir = common::scratch("gemma3_matrix");
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    let mut runs = 0;
    for quant in TYPES {
        let model = model(&dir, quant);
        for kv in [KvType::F32, KvType::F16] {
            for (i, &(prompt, n_tokens)) in PROMPTS.iter().enumerate() {
                let tag = format!("{}-{}-p{n_tokens}", quant.name(), kv.as_str());
                let ex_dir = dir.join(format!("ex-{tag}"));
                let ex = llama_cpp(&model, prompt, kv, &ex_dir);
                assert_eq!(ex.prompt_tokens.len(), n_tokens, "prompt {i}");
                let mut line = format!("tiny-gemma3 {tag:<18}");
                for mode in [Mode::Ggml, Mode::Exact] {
                    let out = dir.join(format!("ref-{}-{tag}", mode.as_str()));
                    let r = reference(&model, prompt, &out, &ref_opts(mode, kv, &ex)).unwrap();
                    assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{tag}: tokenization");
                    let c = judge(&ex_dir, &out);
                    assert!(c.passed, "{tag} {mode:?}: {:?}", c.first_divergence);
                    if mode == Mode::Ggml {
                        let (differ, total) = differing(&ex_dir, &out);
                        assert!(differ.is_empty(), "{tag}: not bit-identical: {differ:?}");
                        assert_eq!(r.generated_tokens, ex.generated_tokens, "{tag}");
                        line += &format!(" ggml {total}/{total} identical;");
                    } else {
                        for res in &c.results {
                            if let Some(n) = res.nmse() {
                                let kind = res.id.name.kind_str().to_string();
                                let w = worst.entry(kind).or_insert(0.0);
                                *w = w.max(n);
                            }
                        }
                        line += " exact passes";
                    }
                    std::fs::remove_dir_all(&out).unwrap();
                    runs += 1;
                }
                std::fs::remove_dir_all(&ex_dir).unwrap();
                println!("{line}");
            }
        }
    }
    println!("tiny-gemma3: {runs} reference runs passed; exact mode's largest NMSE per kind:");
    for (kind, n) in &worst {
        println!("  {kind:<16} {n:.2e}");
    }
}

/// The checkpoint each fault touches first (step, name) on tiny-gemma3 with a 40-token
/// prompt (longer than the window).
fn first_touched(f: Fault) -> (u32, &'static str) {
    match f {
        Fault::RopeBase | Fault::RopeNeox | Fault::LocalRopeBase => (0, "blk.0.Qcur_rope"),
        Fault::GqaModulo | Fault::NoAttnScale | Fault::NoSwa => (0, "blk.0.kq_soft_max"),
        // Layer 5 is the first global layer.
        Fault::SwaEverywhere => (0, "blk.5.kq_soft_max"),
        Fault::EpsX10 => (0, "blk.0.attn_norm"),
        Fault::PosOffByOne => (1, "blk.0.Qcur_rope"),
        Fault::GateUpSwap => (0, "blk.0.ffn_gate"),
        Fault::KvF32 => (0, "blk.0.cache_k"),
        Fault::SkipQkNorm => (0, "blk.0.Qcur_normed"),
        Fault::NoEmbdScale => (0, "inp_embd"),
        Fault::SkipPostNorm => (0, "blk.0.attn_post_norm"),
        Fault::NoQkBias => unreachable!("tiny-gemma3 has no Q/K bias"),
    }
}

#[test]
fn faults_are_caught_at_the_first_checkpoint_they_touch() {
    let dir = common::scratch("gemma3_faults");
    let prompt = PROMPTS[2].0;
    let model = model(&dir, GgmlType::Q8_0);
    let ex_dir = dir.join("ex");
    // An F16 cache, so that keeping K and V in f32 is a fault at all.
    let ex = llama_cpp(&model, prompt, KvType::F16, &ex_dir);
    let clean = dir.join("clean");
    reference(
        &model,
        prompt,
        &clean,
        &ref_opts(Mode::Ggml, KvType::F16, &ex),
    )
    .unwrap();
    assert!(judge(&ex_dir, &clean).passed, "unfaulted run fails");
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| f.applies_to(Preset::TinyGemma3.params().arch, false))
        .collect();
    for added in [
        Fault::NoEmbdScale,
        Fault::SkipPostNorm,
        Fault::SwaEverywhere,
        Fault::NoSwa,
        Fault::LocalRopeBase,
        Fault::SkipQkNorm,
    ] {
        assert!(faults.contains(&added), "{added:?}");
    }
    println!("{:<15} {:<24} {:>10}", "fault", "first divergence", "NMSE");
    for fault in faults {
        let out = dir.join(fault.name());
        let mut opts = ref_opts(Mode::Ggml, KvType::F16, &ex);
        opts.fault = Some(fault);
        reference(&model, prompt, &out, &opts).unwrap();
        let c = judge(&ex_dir, &out);
        assert!(!c.passed, "{} was not caught", fault.name());
        let d = c.first_divergence.unwrap();
        println!(
            "{:<15} step{} {:<18} {:>10.2e}",
            fault.name(),
            d.step,
            d.checkpoint,
            d.nmse.unwrap_or(f64::NAN)
        );
        if fault == Fault::EpsX10 {
            // An epsilon of 1e-6 times ten moves attn_norm by an NMSE under ggml mode's gate;
            // the KV cache's tighter gate is the first to see it, in the same layer.
            assert_eq!(d.step, 0, "eps-x10: {}", d.reason);
            assert!(
                ["blk.0.attn_norm", "blk.0.cache_k"].contains(&d.checkpoint.as_str()),
                "eps-x10: {}: {}",
                d.checkpoint,
                d.reason
            );
            continue;
        }
        assert_eq!(
            (d.step, d.checkpoint.as_str()),
            first_touched(fault),
            "{}: {}",
            fault.name(),
            d.reason
        );
    }
}

/// What the published files may set beyond tiny-gemma3, each added to it with `edit.rs`: the
/// final logit soft-capping (Gemma 2's 30), another layer pattern and local RoPE base, no
/// sliding window at all (every layer global), and a per-layer pattern array. Each is
/// byte-identical in ggml mode with the 40-token prompt.
#[test]
fn gemma3_variants_are_reproduced_bit_for_bit() {
    use llorch_diff::gguf::edit::{copy_with, Edit};
    use llorch_diff::gguf::MetaValue;
    let dir = common::scratch("gemma3_variants");
    let base = model(&dir, GgmlType::Q8_0);
    let prompt = PROMPTS[2].0;
    let pattern: Vec<MetaValue> = [true, false, true, true, false, true]
        .into_iter()
        .map(MetaValue::Bool)
        .collect();
    let variants: Vec<(&str, Edit)> = vec![
        (
            "softcap",
            Edit::default().set("gemma3.final_logit_softcapping", MetaValue::F32(30.0)),
        ),
        (
            "pattern3-localbase",
            Edit::default()
                .set("gemma3.attention.sliding_window_pattern", MetaValue::U32(3))
                .set("gemma3.rope.freq_base_swa", MetaValue::F32(20000.0)),
        ),
        (
            "no-window",
            Edit::default().remove("gemma3.attention.sliding_window"),
        ),
        (
            "pattern-array",
            Edit::default().set(
                "gemma3.attention.sliding_window_pattern",
                MetaValue::Array(pattern),
            ),
        ),
    ];
    let base_ex = dir.join("ex-base");
    llama_cpp(&base, prompt, KvType::F32, &base_ex);
    for (name, edit) in variants {
        let file = dir.join(format!("{name}.gguf"));
        copy_with(&base, &file, &edit).unwrap();
        let ex_dir = dir.join(format!("ex-{name}"));
        let ex = llama_cpp(&file, prompt, KvType::F32, &ex_dir);
        let out = dir.join(format!("ref-{name}"));
        reference(&file, prompt, &out, &ref_opts(Mode::Ggml, KvType::F32, &ex)).unwrap();
        let (differ, total) = differing(&ex_dir, &out);
        assert!(differ.is_empty(), "{name}: not bit-identical: {differ:?}");
        // The variant changes what llama.cpp computes: it differs from the base file's run.
        let (moved, _) = differing(&base_ex, &ex_dir);
        assert!(
            !moved.is_empty(),
            "{name}: llama.cpp computed the same as without it"
        );
        println!(
            "{name}: {total}/{total} identical; first checkpoint moved from the base: {}",
            moved[0]
        );
    }
}
