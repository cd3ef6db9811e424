//! The reference against llama.cpp on tiny-llama written in every I-quant, ternary and FP4 type
//! (make-model's path: ggml's own quantizer): ggml mode bit-identical with weight repacking off
//! (llama.cpp repacks IQ4_NL and MXFP4 otherwise), for a one-batch prompt of four tokens
//! (vec_dot, and llamafile's tinyBLAS_Q0 for IQ4_NL) and one-token decode steps; exact mode
//! within its gates. The types ggml's tiled GEMM takes also for a prompt of 25 tokens and more
//! (the tiled GEMM from eight activation rows on), with llama.cpp's default CPU configuration.

mod common;

use std::path::Path;

use llorch_diff::checkpoint::DumpFolder;
use llorch_diff::compare::{compare_folders, Tolerances};
use llorch_diff::cpu_config::CpuConfig;
use llorch_diff::gguf::presets::{write_preset, Preset};
use llorch_diff::llamacpp::extract::{extract, ExtractOptions};
use llorch_diff::llamacpp::{set_verbose, KvType};
use llorch_diff::quant::GgmlType::{self, *};
use llorch_diff::reference::{reference, Mode, ReferenceOptions};

const TYPES: [GgmlType; 12] = [
    IQ4NL, IQ4XS, MXFP4, IQ3S, IQ3XXS, IQ2S, IQ2XS, IQ2XXS, IQ1M, IQ1S, TQ2_0, TQ1_0,
];

/// Dump files (manifests aside) of `b` byte-identical to those of `a`, and how many `a` has.
fn identical(a: &Path, b: &Path) -> (usize, usize) {
    let folder = DumpFolder::open(a).unwrap();
    let same = folder
        .entries
        .iter()
        .filter(|e| {
            let rel = e.path.strip_prefix(a).unwrap();
            std::fs::read(&e.path).unwrap() == std::fs::read(b.join(rel)).unwrap()
        })
        .count();
    (same, folder.entries.len())
}

#[test]
fn new_types_agree_with_llama_cpp() {
    set_verbose(false);
    let dir = common::scratch("ref_iq");
    let steps = 2;
    for ty in TYPES {
        let model = dir.join(format!("tiny-llama-{ty}.gguf"));
        write_preset(Preset::TinyLlama, ty, 1, &model).unwrap();
        let ex_dir = dir.join(format!("ex-{ty}"));
        let opts = ExtractOptions {
            steps,
            kv_type: KvType::F32,
            threads: 2,
            repack: false,
            filter: None,
        };
        let ex = extract(&model, "Hello", &ex_dir, &opts).unwrap();
        for mode in [Mode::Ggml, Mode::Exact] {
            let ref_dir = dir.join(format!("ref-{ty}-{}", mode.as_str()));
            let r = reference(
                &model,
                "Hello",
                &ref_dir,
                &ReferenceOptions {
                    mode,
                    steps,
                    kv_type: KvType::F32,
                    cpu: CpuConfig::from_env(false),
                    threads: 0,
                    filter: None,
                    fault: None,
                    token_ids: None,
                    decode_tokens: Some(ex.generated_tokens.clone()),
                },
            )
            .unwrap();
            assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{ty}: tokenization");
            let c = compare_folders(
                &DumpFolder::open(&ex_dir).unwrap(),
                &DumpFolder::open(&ref_dir).unwrap(),
                &Tolerances::builtin(),
            )
            .unwrap();
            assert!(c.passed, "{ty} {}: {:?}", mode.as_str(), c.first_divergence);
            if mode == Mode::Ggml {
                let (same, total) = identical(&ex_dir, &ref_dir);
                println!(
                    "{ty}: {} prompt tokens + {steps} steps, {same}/{total} checkpoints bit-identical",
                    ex.prompt_tokens.len()
                );
                assert_eq!(same, total, "{ty}: ggml mode not bit-identical");
            }
        }
    }
}

/// The I-quants of ggml's tiled GEMM (`ggml_tiled_supported`) on a prompt long enough for it:
/// every checkpoint bit-identical in ggml mode.
#[test]
fn tiled_i_quants_agree_with_llama_cpp_on_a_long_prompt() {
    const TILED: [GgmlType; 8] = [IQ4XS, IQ2XXS, IQ2XS, IQ2S, IQ3XXS, IQ3S, IQ1S, IQ1M];
    const PROMPT: &str = "The quick brown fox jumps over the lazy dog near the river bank.";
    set_verbose(false);
    let dir = common::scratch("ref_iq_tiled");
    let steps = 2;
    for ty in TILED {
        let model = dir.join(format!("tiny-llama-{ty}.gguf"));
        write_preset(Preset::TinyLlama, ty, 1, &model).unwrap();
        let ex_dir = dir.join(format!("ex-{ty}"));
        let opts = ExtractOptions {
            steps,
            kv_type: KvType::F16,
            threads: 2,
            repack: true,
            filter: None,
        };
        let ex = extract(&model, PROMPT, &ex_dir, &opts).unwrap();
        assert!(
            ex.prompt_tokens.len() >= 25,
            "{ty}: {}",
            ex.prompt_tokens.len()
        );
        let ref_dir = dir.join(format!("ref-{ty}"));
        let r = reference(
            &model,
            PROMPT,
            &ref_dir,
            &ReferenceOptions {
                mode: Mode::Ggml,
                steps,
                kv_type: KvType::F16,
                cpu: CpuConfig::from_env(true),
                threads: 0,
                filter: None,
                fault: None,
                token_ids: None,
                decode_tokens: Some(ex.generated_tokens.clone()),
            },
        )
        .unwrap();
        assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{ty}: tokenization");
        let (same, total) = identical(&ex_dir, &ref_dir);
        println!(
            "{ty}: {} prompt tokens + {steps} steps, {same}/{total} checkpoints bit-identical",
            ex.prompt_tokens.len()
        );
        assert_eq!(same, total, "{ty}: ggml mode not bit-identical");
    }
}
