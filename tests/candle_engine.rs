//! The worked example of `run --candidate`: examples/candle-engine (a llama forward pass on
//! candle-core's ops and quantized GGUF matmuls, dumping through llorch-dump). On the tiny-llama
//! preset it passes against llama.cpp (`independent`) and against the reference
//! (`independent-exact` / `independent-ggml`). On SmolLM2, a norm epsilon ten times too large
//! and a wrong RoPE base (on a short prompt) still pass against llama.cpp, whose activation
//! quantization drowns them, and the exact reference catches each at the first checkpoint the
//! fault touches.
//!
//! The engine is its own workspace package, built by scripts/test.sh before the tests
//! (`cargo build --release -p candle-engine`); a missing binary fails these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn engine() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let p = target.join("release/candle-engine");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release -p candle-engine` (scripts/test.sh does)",
        p.display()
    );
    p
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    json: serde_json::Value,
}

/// `run MODEL PROMPT --steps 2 --candidate candle-engine` (with `--dequantize` and
/// `--candidate-mode exact`, or quantized with `--candidate-mode ggml`).
fn run(name: &str, model: &[&str], prompt: &str, dequantize: bool, fault: Option<&str>) -> Run {
    let dir = common::scratch(name);
    let json = dir.join("run.json");
    let cmd = format!(
        "{} {{model}} {{out}} --prompt-tokens {{prompt_tokens}} --tokens {{tokens}} --steps {{steps}}{}",
        engine().display(),
        if dequantize { " --dequantize" } else { "" }
    );
    let mut c = Command::new(common::bin());
    c.arg("run")
        .args(model)
        .args([prompt, "--steps", "2"])
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--report")
        .arg(dir.join("report.md"))
        .arg("--json")
        .arg(&json)
        .args(["--candidate", &cmd])
        .args([
            "--candidate-mode",
            if dequantize { "exact" } else { "ggml" },
        ]);
    match fault {
        Some(f) => c.env("CANDLE_ENGINE_FAULT", f),
        None => c.env_remove("CANDLE_ENGINE_FAULT"),
    };
    let o = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let json = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no JSON report\nstdout {stdout}\nstderr {stderr}"));
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout,
        stderr,
        json,
    }
}

fn pair(r: &Run, i: usize) -> &serde_json::Value {
    &r.json["pairs"][i]
}

fn first_divergence(r: &Run, i: usize) -> (u64, String) {
    let d = &pair(r, i)["comparison"]["first_divergence"];
    (
        d["step"].as_u64().unwrap_or(u64::MAX),
        d["checkpoint"].as_str().unwrap_or("none").to_string(),
    )
}

#[test]
fn candle_f32_passes_against_llama_cpp_and_the_exact_reference() {
    let r = run(
        "candle_f32",
        &["tiny-llama", "--quant", "q4_0"],
        PROMPT,
        true,
        None,
    );
    assert_eq!(r.code, 0, "stdout {}\nstderr {}", r.stdout, r.stderr);
    assert_eq!(pair(&r, 0)["tolerances"], "independent");
    assert_eq!(pair(&r, 1)["against"], "reference (exact)");
    assert_eq!(pair(&r, 1)["tolerances"], "independent-exact");
    // Every llama-family checkpoint of the 4 layers, tokens, embeddings, norm and logits, 3 steps.
    let total = pair(&r, 0)["comparison"]["counts"]["total"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 3 * (4 * 18 + 4), "{}", r.stdout);
    for i in 0..2 {
        assert_eq!(pair(&r, i)["passed"], true, "{}", r.stdout);
    }
}

#[test]
fn candle_quantized_passes_against_llama_cpp_and_the_ggml_reference() {
    let r = run(
        "candle_q",
        &["tiny-llama", "--quant", "q4_1"],
        PROMPT,
        false,
        None,
    );
    assert_eq!(r.code, 0, "stdout {}\nstderr {}", r.stdout, r.stderr);
    assert_eq!(pair(&r, 1)["against"], "reference (ggml)");
    assert_eq!(pair(&r, 1)["tolerances"], "independent-ggml");
}

fn smollm2() -> String {
    common::smollm2().to_str().unwrap().to_string()
}

#[test]
fn an_epsilon_ten_times_too_large_passes_llama_cpp_but_not_the_reference() {
    let m = smollm2();
    let r = run("candle_eps10", &[&m], PROMPT, true, Some("eps10"));
    assert_eq!(r.code, 1, "stdout {}\nstderr {}", r.stdout, r.stderr);
    assert_eq!(
        pair(&r, 0)["passed"],
        true,
        "against llama.cpp alone the fault hides in its activation quantization\n{}",
        r.stdout
    );
    assert_eq!(pair(&r, 1)["passed"], false);
    assert_eq!(first_divergence(&r, 1), (0, "blk.0.attn_norm".to_string()));
    assert!(r.stderr.contains("fault Eps10 injected"), "{}", r.stderr);
}

#[test]
fn a_wrong_rope_base_passes_llama_cpp_but_not_the_reference_on_a_short_prompt() {
    // SmolLM2's base is 100000; the fault uses the common default 10000. "Hello" is one token:
    // position 0 is not rotated, so the first checkpoint the fault touches is step 1's rotated
    // query, and over positions 1..2 the angles differ too little to show against llama.cpp.
    let m = smollm2();
    let r = run("candle_rope", &[&m], "Hello", true, Some("rope-base"));
    assert_eq!(r.code, 1, "stdout {}\nstderr {}", r.stdout, r.stderr);
    assert_eq!(pair(&r, 0)["passed"], true, "{}", r.stdout);
    assert_eq!(pair(&r, 1)["passed"], false);
    assert_eq!(first_divergence(&r, 1), (1, "blk.0.Qcur_rope".to_string()));
}

#[test]
fn a_wrong_rope_base_on_a_long_prompt_is_caught_by_both() {
    // tiny-llama's base is 10000; the fault uses 500000. Over 44 positions both pairs see it at
    // the first rotated query.
    let r = run(
        "candle_rope_tiny",
        &["tiny-llama", "--quant", "q4_0"],
        PROMPT,
        true,
        Some("rope-base"),
    );
    assert_eq!(r.code, 1, "stdout {}\nstderr {}", r.stdout, r.stderr);
    for i in 0..2 {
        assert_eq!(first_divergence(&r, i), (0, "blk.0.Qcur_rope".to_string()));
    }
}
