//! The Rust reference against llama.cpp on the real model and on every synthetic preset: ggml
//! mode agrees (bit for bit, and within the built-in gates), exact mode stays within its
//! measured gates, every injected fault is caught at the first checkpoint it touches, and runs
//! are deterministic whatever the thread count.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use llorch_diff::checkpoint::DumpFolder;
use llorch_diff::compare::{compare_folders, Comparison, Tolerances};
use llorch_diff::cpu_config::CpuConfig;
use llorch_diff::gguf::presets::{write_preset, Preset};
use llorch_diff::gguf::Arch;
use llorch_diff::llamacpp::extract::{extract, ExtractOptions, ExtractSummary};
use llorch_diff::llamacpp::quantize::{quantize_model, FileType};
use llorch_diff::llamacpp::{set_verbose, KvType};
use llorch_diff::quant::GgmlType;
use llorch_diff::reference::{reference, Fault, Mode, ReferenceOptions};

const PRESET_PROMPT: &str = "The quick brown fox jumps over the lazy dog";

fn llama_cpp(model: &Path, prompt: &str, kv: KvType, steps: u32, out: &Path) -> ExtractSummary {
    set_verbose(false);
    let opts = ExtractOptions {
        steps,
        kv_type: kv,
        threads: 2,
        repack: true,
        filter: None,
    };
    extract(model, prompt, out, &opts).unwrap()
}

/// Reference options that tokenize the prompt with the Rust tokenizer and follow llama.cpp's
/// decode inputs.
fn ref_opts(mode: Mode, kv: KvType, steps: u32, ex: &ExtractSummary) -> ReferenceOptions {
    ReferenceOptions {
        mode,
        steps,
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

/// Files of two dump folders (manifests aside) that are byte-identical, and how many there are.
fn identical_files(a: &Path, b: &Path) -> (usize, usize, Vec<String>) {
    let folder = DumpFolder::open(a).unwrap();
    let mut same = 0;
    let mut differ = Vec::new();
    for e in &folder.entries {
        let rel = e.path.strip_prefix(a).unwrap();
        if std::fs::read(&e.path).unwrap() == std::fs::read(b.join(rel)).unwrap() {
            same += 1;
        } else {
            differ.push(e.id.to_string());
        }
    }
    (same, folder.entries.len(), differ)
}

/// Largest NMSE per checkpoint kind.
fn worst_by_kind(c: &Comparison, into: &mut BTreeMap<String, f64>) {
    for r in &c.results {
        if let Some(n) = r.nmse() {
            let w = into.entry(r.kind.clone()).or_insert(0.0);
            *w = w.max(n);
        }
    }
}

#[test]
fn smollm2_ggml_mode_reproduces_llama_cpp_bit_for_bit() {
    let model = common::smollm2();
    let dir = common::scratch("ref_smollm2_ggml");
    let prompts = [
        "Hello world",
        "The capital of France is Paris, and the capital of Germany is Berlin. What is the capital of Italy?",
    ];
    for (i, prompt) in prompts.iter().enumerate() {
        for kv in [KvType::F32, KvType::F16] {
            let tag = format!("p{i}-{}", kv.as_str());
            let ex = llama_cpp(&model, prompt, kv, 4, &dir.join(format!("ex-{tag}")));
            let r = reference(
                &model,
                prompt,
                &dir.join(format!("ref-{tag}")),
                &ref_opts(Mode::Ggml, kv, 4, &ex),
            )
            .unwrap();
            assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{tag}: tokenization");
            assert_eq!(
                r.generated_tokens, ex.generated_tokens,
                "{tag}: greedy tokens"
            );
            let c = judge(
                &dir.join(format!("ex-{tag}")),
                &dir.join(format!("ref-{tag}")),
            );
            assert!(c.passed, "{tag}: {:?}", c.first_divergence);
            let (same, total, differ) = identical_files(
                &dir.join(format!("ex-{tag}")),
                &dir.join(format!("ref-{tag}")),
            );
            println!(
                "SmolLM2 {tag}: {} prompt tokens + 4 steps, {same}/{total} checkpoints bit-identical",
                ex.prompt_tokens.len()
            );
            assert_eq!(same, total, "{tag}: not bit-identical: {differ:?}");
        }
    }
}

#[test]
fn presets_agree_in_every_written_type_and_kv_type() {
    let dir = common::scratch("ref_presets");
    let mut exact_worst = BTreeMap::new();
    let mut runs = 0;
    for preset in [Preset::TinyLlama, Preset::TinyGpt2] {
        for quant in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
        ] {
            let model = dir.join(format!("{preset}-{quant}.gguf"));
            write_preset(preset, quant, 7, &model).unwrap();
            for kv in [KvType::F32, KvType::F16] {
                let tag = format!("{preset}-{quant}-{}", kv.as_str());
                let ex_dir = dir.join(format!("ex-{tag}"));
                let ex = llama_cpp(&model, PRESET_PROMPT, kv, 4, &ex_dir);
                for mode in [Mode::Ggml, Mode::Exact] {
                    let out = dir.join(format!("ref-{}-{tag}", mode.as_str()));
                    let r = reference(&model, PRESET_PROMPT, &out, &ref_opts(mode, kv, 4, &ex))
                        .unwrap();
                    assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{tag}: tokenization");
                    let c = judge(&ex_dir, &out);
                    assert!(c.passed, "{tag} {mode:?}: {:?}", c.first_divergence);
                    match mode {
                        Mode::Ggml => {
                            assert_eq!(r.generated_tokens, ex.generated_tokens, "{tag}");
                            let (same, total, differ) = identical_files(&ex_dir, &out);
                            assert_eq!(same, total, "{tag}: not bit-identical: {differ:?}");
                        }
                        Mode::Exact => worst_by_kind(&c, &mut exact_worst),
                    }
                    runs += 1;
                }
            }
        }
    }
    println!(
        "{runs} preset runs passed (ggml ones bit-identical); exact mode's largest NMSE by kind:"
    );
    for (kind, nmse) in &exact_worst {
        println!("  {kind:<14} {nmse:.2e}");
    }
}

/// The checkpoint each fault touches first (step, name).
fn first_touched(f: Fault) -> (u32, &'static str) {
    match f {
        Fault::RopeBase | Fault::RopeNeox => (0, "blk.0.Qcur_rope"),
        Fault::GqaModulo | Fault::NoAttnScale => (0, "blk.0.kq_soft_max"),
        Fault::EpsX10 => (0, "blk.0.attn_norm"),
        Fault::PosOffByOne => (1, "blk.0.Qcur_rope"),
        Fault::GateUpSwap => (0, "blk.0.ffn_gate"),
        Fault::KvF32 => (0, "blk.0.cache_k"),
        Fault::NoQkBias => (0, "blk.0.Qcur"),
        Fault::SkipQkNorm => (0, "blk.0.Qcur_normed"),
        // gemma3's own, proven in tests/gemma3_family.rs.
        Fault::NoEmbdScale
        | Fault::SkipPostNorm
        | Fault::SwaEverywhere
        | Fault::NoSwa
        | Fault::LocalRopeBase => unreachable!("{f:?} applies to gemma3 only"),
    }
}

/// Runs every fault on `model` with `prompt` (KV f16, 2 steps) and checks that each is caught at
/// the first checkpoint it touches while the unfaulted reference passes.
fn faults_are_caught(model: &Path, prompt: &str, dir: &Path) {
    // An F16 cache, so that keeping K and V in f32 is a fault at all.
    let ex = llama_cpp(model, prompt, KvType::F16, 2, &dir.join("ex"));
    let clean = dir.join("clean");
    reference(
        model,
        prompt,
        &clean,
        &ref_opts(Mode::Ggml, KvType::F16, 2, &ex),
    )
    .unwrap();
    let c = judge(&dir.join("ex"), &clean);
    assert!(
        c.passed,
        "the unfaulted reference fails: {:?}",
        c.first_divergence
    );
    println!("{:<15} {:<22} {:>10}", "fault", "first divergence", "NMSE");
    // SmolLM2 has no Q/K/V biases and no Q/K norm: those faults are proven on the qwen
    // presets (tests/qwen_families.rs).
    for fault in Fault::ALL
        .into_iter()
        .filter(|f| f.applies_to(Arch::Llama, false))
    {
        let out = dir.join(fault.name());
        let mut opts = ref_opts(Mode::Ggml, KvType::F16, 2, &ex);
        opts.fault = Some(fault);
        reference(model, prompt, &out, &opts).unwrap();
        let manifest = DumpFolder::open(&out).unwrap().manifest.unwrap();
        assert_eq!(
            manifest.producer_detail.get("fault"),
            Some(&fault.name()),
            "a faulted run says so"
        );
        let c = judge(&dir.join("ex"), &out);
        assert!(!c.passed, "{} was not caught", fault.name());
        let d = c.first_divergence.unwrap();
        println!(
            "{:<15} step{} {:<16} {:>10.2e}",
            fault.name(),
            d.step,
            d.checkpoint,
            d.nmse.unwrap_or(f64::NAN)
        );
        assert_eq!(
            (d.step, d.checkpoint.as_str()),
            first_touched(fault),
            "{}: {}",
            fault.name(),
            d.reason
        );
    }
}

#[test]
fn every_fault_is_caught_at_the_first_checkpoint_it_touches() {
    let dir = common::scratch("ref_faults");
    faults_are_caught(&common::smollm2(), "Hello world", &dir);
}

/// The same on what users download: SmolLM2 re-quantized to Q4_K_M by llama.cpp (Q4_K weights
/// repacked, Q6_K through the tiled GEMM, Q5_0 and Q8_0 through tinyBLAS_Q0) and a prompt long
/// enough for every kernel.
#[test]
fn every_fault_is_caught_on_q4_k_m_with_a_long_prompt() {
    let dir = common::scratch("ref_faults_q4km");
    let model = dir.join("q4km.gguf");
    quantize_model(
        &common::smollm2(),
        &model,
        FileType::parse("Q4_K_M").unwrap(),
        2,
    )
    .unwrap();
    let prompt = "In the quiet village by the river, the old clockmaker repaired watches for \
                  farmers, teachers and travelers who passed through on their way to the coast.";
    faults_are_caught(&model, prompt, &dir);
}

/// Exact mode's gates are loose enough for ggml's Q8 activation rounding (up to the one-token
/// decodes of a Q4_K_M model), and still catch every gross fault: the faults are run in exact
/// mode (F32 cache, 4 decode steps) on a 22-token prompt and must fail at a checkpoint of the
/// kind they touch first. (Not necessarily its first layer: a RoPE base ten times too small
/// barely moves the first positions' angles; on PROMPT it is caught only at step 3,
/// blk.1, NMSE 2.0e-2 against the gate 2e-2.) A norm epsilon ten times too large (NMSE ~1e-5) is below what exact
/// mode can tell from Q8 rounding, and keeping K and V in f32 is what exact mode does anyway:
/// those two are proven in ggml mode only.
#[test]
fn exact_mode_catches_gross_faults() {
    let model = common::smollm2();
    let dir = common::scratch("ref_faults_exact");
    const PROMPT: &str = "The capital of France is Paris, and the capital of Germany is Berlin. \
                          What is the capital of Italy?";
    let ex = llama_cpp(&model, PROMPT, KvType::F32, 4, &dir.join("ex"));
    let clean = dir.join("clean");
    reference(
        &model,
        PROMPT,
        &clean,
        &ref_opts(Mode::Exact, KvType::F32, 4, &ex),
    )
    .unwrap();
    let c = judge(&dir.join("ex"), &clean);
    assert!(
        c.passed,
        "the unfaulted exact reference fails: {:?}",
        c.first_divergence
    );
    println!("{:<15} {:<22} {:>10}", "fault", "first divergence", "NMSE");
    for fault in Fault::ALL
        .into_iter()
        .filter(|f| f.applies_to(Arch::Llama, false) && !matches!(f, Fault::EpsX10 | Fault::KvF32))
    {
        let out = dir.join(fault.name());
        let mut opts = ref_opts(Mode::Exact, KvType::F32, 4, &ex);
        opts.fault = Some(fault);
        reference(&model, PROMPT, &out, &opts).unwrap();
        let c = judge(&dir.join("ex"), &out);
        assert!(!c.passed, "{} was not caught in exact mode", fault.name());
        let d = c.first_divergence.unwrap();
        println!(
            "{:<15} step{} {:<16} {:>10.2e}",
            fault.name(),
            d.step,
            d.checkpoint,
            d.nmse.unwrap_or(f64::NAN)
        );
        assert_eq!(
            (d.step, d.checkpoint.as_str()),
            first_touched(fault),
            "{}: {}",
            fault.name(),
            d.reason
        );
    }
}

#[test]
fn reference_dumps_are_deterministic_whatever_the_thread_count() {
    let model = common::smollm2();
    let dir = common::scratch("ref_determinism");
    for mode in [Mode::Ggml, Mode::Exact] {
        let mut folders = Vec::new();
        for threads in [1, 2, 1] {
            let out = dir.join(format!("{}-{threads}-{}", mode.as_str(), folders.len()));
            let opts = ReferenceOptions {
                mode,
                steps: 2,
                kv_type: KvType::F16,
                cpu: CpuConfig::from_env(true),
                threads,
                filter: None,
                fault: None,
                token_ids: None,
                decode_tokens: None,
            };
            reference(&model, "Hello world", &out, &opts).unwrap();
            folders.push(common::read_tree(&out));
        }
        // The manifest records the thread count; everything else is byte-identical.
        let strip = |m: &BTreeMap<PathBuf, Vec<u8>>| {
            let mut m = m.clone();
            m.remove(Path::new("manifest.json"));
            m
        };
        assert_eq!(folders[0], folders[2], "{mode:?}: two runs differ");
        assert_eq!(
            strip(&folders[0]),
            strip(&folders[1]),
            "{mode:?}: threads change results"
        );
        assert!(folders[0].len() > 1000);
    }
}
