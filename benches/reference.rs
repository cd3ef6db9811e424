//! The Rust reference's speed and memory: a SmolLM2 run (prompt + decode steps) in each mode
//! beside llama.cpp's extract of the same, and the process's peak resident memory.
//! `cargo bench --bench reference` (needs models/SmolLM2-135M-Instruct.Q4_1.gguf, see
//! scripts/fetch-model.sh; `LLORCH_BENCH_MODEL=path.gguf` benchmarks another model, e.g. a
//! `llama2-7b-shape` preset).

use std::path::PathBuf;
use std::time::Instant;

use llorch_diff::checkpoint::KvType;
use llorch_diff::llamacpp::extract::{extract, ExtractOptions};
use llorch_diff::llamacpp::set_verbose;
use llorch_diff::reference::{reference, Mode, ReferenceOptions};

/// Peak resident set of this process so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let model = std::env::var_os("LLORCH_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !model.is_file() {
        eprintln!(
            "error: {} is missing: run scripts/fetch-model.sh or set LLORCH_BENCH_MODEL",
            model.display()
        );
        std::process::exit(2);
    }
    let prompt = "The capital of France is Paris, and the capital of Germany is";
    let steps = 8;
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-reference");
    set_verbose(false);
    println!("model {}, {steps} decode steps", model.display());
    for run in 1..=2 {
        let t = Instant::now();
        let ex = extract(
            &model,
            prompt,
            &out.join("llama.cpp"),
            &ExtractOptions {
                steps,
                kv_type: KvType::F32,
                threads: 2,
                repack: true,
                filter: None,
            },
        )
        .unwrap();
        let t_ex = t.elapsed().as_secs_f64();
        let mut line = format!(
            "run {run}: llama.cpp extract {:.2} s ({} prompt tokens)",
            t_ex,
            ex.prompt_tokens.len()
        );
        for mode in [Mode::Ggml, Mode::Exact] {
            let t = Instant::now();
            reference(
                &model,
                prompt,
                &out.join(mode.as_str()),
                &ReferenceOptions {
                    mode,
                    steps,
                    kv_type: KvType::F32,
                    cpu: llorch_diff::cpu_config::CpuConfig::from_env(true),
                    threads: 0,
                    filter: None,
                    fault: None,
                    token_ids: Some(ex.prompt_tokens.clone()),
                    decode_tokens: Some(ex.generated_tokens.clone()),
                },
            )
            .unwrap();
            line += &format!(
                ", reference {} {:.2} s",
                mode.as_str(),
                t.elapsed().as_secs_f64()
            );
        }
        println!("{line}; peak RSS {:.0} MiB", peak_rss_mib());
    }
    let size = std::fs::metadata(&model).map_or(0, |m| m.len());
    println!(
        "model file {:.0} MiB (mapped, not copied; the reference never holds its weights as f32)",
        size as f64 / (1 << 20) as f64
    );
}
