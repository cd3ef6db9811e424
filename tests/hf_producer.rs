//! The HF transformers producer (`llorch-diff hf`, `run --with-hf`). It needs PyTorch,
//! transformers and gguf in the project's `.venv`, which scripts/test.sh installs
//! (`scripts/python-env.sh hf`); without them these tests fail with that instruction, they are
//! never skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bin, scratch, smollm2};
use llorch_diff::checkpoint::DumpFolder;
use llorch_diff::compare::{compare_folders, Tolerances};

fn venv_python() -> PathBuf {
    let p = llorch_diff::hf::python();
    assert!(
        p.is_file(),
        "{} is missing: {}",
        p.display(),
        llorch_diff::hf::INSTALL_HINT
    );
    p
}

fn llorch(args: &[&str]) -> Output {
    venv_python();
    Command::new(bin()).args(args).output().unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// llama.cpp's and transformers' layer outputs and logits on `model` (2 steps, transformers
/// following llama.cpp's tokens), in `dir/llama.cpp` and `dir/hf`. The filter is what
/// transformers dumps for an architecture outside the reference's families (llama.cpp's
/// universal checkpoints are more).
fn llama_cpp_and_hf_outputs(model: &Path, prompt: &str, dir: &Path) -> (DumpFolder, DumpFolder) {
    let a = dir.join("llama.cpp");
    let b = dir.join("hf");
    ok(
        &llorch(&[
            "extract",
            s(model),
            prompt,
            "--steps",
            "2",
            "--filter",
            "{tokens,inp_embd,blk.*.l_out,result_norm,result_output}",
            "--out",
            s(&a),
        ]),
        "extract",
    );
    ok(
        &llorch(&[
            "hf",
            s(model),
            prompt,
            "--steps",
            "2",
            "--follow",
            s(&a),
            "--out",
            s(&b),
        ]),
        "hf",
    );
    (DumpFolder::open(&a).unwrap(), DumpFolder::open(&b).unwrap())
}

/// The bar: on SmolLM2, transformers against the reference in exact mode (two f32
/// computations of the same mathematics) within NMSE 1e-9 on every checkpoint, with every
/// llama catalogue kind dumped.
#[test]
fn smollm2_matches_exact_reference_within_1e_9() {
    let dir = scratch("hf-smollm2");
    let model = smollm2();
    let exact = dir.join("exact");
    let hf = dir.join("hf");
    let o = llorch(&[
        "reference",
        s(&model),
        "The capital of France is",
        "--mode",
        "exact",
        "--steps",
        "2",
        "--out",
        s(&exact),
    ]);
    ok(&o, "reference --mode exact");
    let o = llorch(&[
        "hf",
        s(&model),
        "The capital of France is",
        "--steps",
        "2",
        "--follow",
        s(&exact),
        "--out",
        s(&hf),
    ]);
    ok(&o, "hf");
    let a = DumpFolder::open(&exact).unwrap();
    let b = DumpFolder::open(&hf).unwrap();
    let m = b.manifest.as_ref().unwrap();
    assert_eq!(m.producer, "transformers");
    assert!(
        m.producer_detail.contains_key("torch") && m.producer_detail.contains_key("transformers")
    );
    assert_eq!(m.model.sha256, common::SMOLLM2_SHA256);
    assert_eq!(
        a.entries.len(),
        b.entries.len(),
        "transformers dumps every checkpoint the reference does"
    );
    let c = compare_folders(&a, &b, &Tolerances::builtin()).unwrap();
    assert_eq!(c.mode, "hf-exact");
    assert!(c.passed, "{}", c.headline());
    let worst = c
        .results
        .iter()
        .filter_map(|r| r.nmse().map(|n| (n, r.name.clone())))
        .fold(
            (0.0f64, String::new()),
            |w, x| if x.0 > w.0 { x } else { w },
        );
    assert!(worst.0 <= 1e-9, "largest NMSE {:e} at {}", worst.0, worst.1);
    // Not trivially zero: an independent implementation differs in the last bits somewhere.
    assert!(worst.0 > 0.0);
}

fn three_way_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `run --with-hf` on tiny-qwen3 (f32): three pairs, each passing, with the modes chosen per
/// pair, the table on stdout and the section in the Markdown report.
#[test]
fn run_with_hf_prints_the_three_way_table() {
    let dir = scratch("hf-run-qwen3");
    let json = dir.join("r.json");
    let md = dir.join("r.md");
    let o = llorch(&[
        "run",
        "tiny-qwen3",
        "Hello world, this is",
        "--quant",
        "f32",
        "--steps",
        "2",
        "--with-hf",
        "--out",
        s(&dir.join("out")),
        "--report",
        s(&md),
        "--json",
        s(&json),
    ]);
    ok(&o, "run --with-hf");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for want in [
        "A-B llama.cpp vs reference",
        "A-C llama.cpp vs transformers",
        "B-C reference vs transformers",
        "THREE-WAY: all three agree",
        "blk.3",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    let j = three_way_json(&json);
    let pairs = j["pairs"].as_array().unwrap();
    let modes: Vec<&str> = pairs
        .iter()
        .map(|p| p["comparison"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["ggml", "hf", "hf"]);
    assert_eq!(j["passed"], true);
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(report.contains("## Three-way"), "{report}");
    // Every Qwen3 kind, Qcur_normed included, is judged in the HF pairs.
    let names: Vec<&str> = pairs[1]["comparison"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"blk.0.Qcur_normed") && names.contains(&"blk.3.kq_soft_max"));
    assert_eq!(pairs[1]["left_out"], 0);
}

/// A fault in the reference: llama.cpp and transformers still agree, so the verdict names the
/// reference as the one that stands apart, and the run fails.
#[test]
fn a_faulty_reference_stands_apart() {
    let dir = scratch("hf-run-fault");
    let json = dir.join("r.json");
    let o = llorch(&[
        "run",
        "tiny-llama",
        "Hello world",
        "--quant",
        "f32",
        "--steps",
        "1",
        "--with-hf",
        "--inject-fault",
        "rope-base",
        "--out",
        s(&dir.join("out")),
        "--report",
        s(&dir.join("r.md")),
        "--json",
        s(&json),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j = three_way_json(&json);
    let passed: Vec<bool> = j["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["comparison"]["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(passed, [false, true, false]);
    assert!(
        j["verdict"]
            .as_str()
            .unwrap()
            .starts_with("the reference (B) stands apart"),
        "{}",
        j["verdict"]
    );
    let fd = &j["pairs"][0]["comparison"]["first_divergence"]["checkpoint"];
    assert_eq!(
        fd, "blk.0.Qcur_rope",
        "RoPE's base is the first thing a wrong base changes"
    );
}

/// phi3, which the Rust reference does not implement: llama.cpp's and transformers' layer
/// outputs and logits agree.
#[test]
fn phi3_layer_outputs_and_logits_agree_with_llama_cpp() {
    let dir = scratch("hf-phi3");
    let llama = dir.join("tiny-llama.gguf");
    let phi3 = dir.join("tiny-phi3.gguf");
    ok(
        &llorch(&[
            "make-model",
            "--preset",
            "tiny-llama",
            "--quant",
            "f32",
            "--seed",
            "5",
            "--out",
            s(&llama),
        ]),
        "make-model",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/make_phi3.py");
    let o = Command::new(venv_python())
        .args([s(&script), s(&llama), s(&phi3)])
        .output()
        .unwrap();
    ok(&o, "make_phi3.py");
    let (fa, fb) = llama_cpp_and_hf_outputs(&phi3, "Hello world", &dir);
    assert_eq!(fb.manifest.as_ref().unwrap().model.architecture, "phi3");
    let names: Vec<String> = fb.entries.iter().map(|e| e.id.to_string()).collect();
    for want in [
        "step0/inp_embd",
        "step0/blk.3.l_out",
        "step2/result_norm",
        "step2/result_output",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let c = compare_folders(&fa, &fb, &Tolerances::builtin()).unwrap();
    assert_eq!(c.mode, "hf");
    assert!(c.passed, "{}", c.headline());
    assert_eq!(c.counts.total, fb.entries.len());
}

/// Without the environment: one line saying how to install it, exit 2.
#[test]
fn missing_environment_says_how_to_install_it() {
    let dir = scratch("hf-missing");
    let o = Command::new(bin())
        .env(llorch_diff::hf::PYTHON_ENV, dir.join("no-such-python"))
        .args(["hf", s(&smollm2()), "Hello", "--out", s(&dir.join("out"))])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("scripts/python-env.sh hf"), "{err}");
    assert!(!dir.join("out").exists());
}

/// An interpreter without the packages (a bare virtual environment): the same one line, exit 2.
#[test]
fn missing_packages_say_how_to_install_them() {
    let dir = scratch("hf-no-packages");
    let venv = dir.join("venv");
    let o = Command::new("python3")
        .args(["-m", "venv", "--without-pip", s(&venv)])
        .output()
        .unwrap();
    ok(&o, "python3 -m venv");
    let o = Command::new(bin())
        .env(llorch_diff::hf::PYTHON_ENV, venv.join("bin/python3"))
        .args(["hf", s(&smollm2()), "Hello", "--out", s(&dir.join("out"))])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("missing Python package") && err.contains("scripts/python-env.sh hf"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
}

/// gemma3 (tiny-gemma3 in f32, a prompt longer than its sliding window): transformers, with the
/// query scale and the global layers' RoPE scaling taken from the file, computes llama.cpp's
/// layer outputs and logits; what remains is llama.cpp's f16 GELU table against the exact tanh
/// GELU (NMSE about 1e-7), far below any real difference.
#[test]
fn gemma3_layer_outputs_agree_with_llama_cpp() {
    let dir = scratch("hf-gemma3");
    let model = dir.join("tiny-gemma3.gguf");
    ok(
        &llorch(&[
            "make-model",
            "--preset",
            "tiny-gemma3",
            "--quant",
            "f32",
            "--seed",
            "1",
            "--out",
            s(&model),
        ]),
        "make-model",
    );
    let prompt = "The quick brown fox jumps over the lazy dog";
    let (fa, fb) = llama_cpp_and_hf_outputs(&model, prompt, &dir);
    let c = compare_folders(&fa, &fb, &Tolerances::builtin()).unwrap();
    assert!(c.passed, "{}", c.headline());
    assert_eq!(c.counts.total, fb.entries.len());
    let worst = c
        .results
        .iter()
        .filter_map(|r| r.nmse())
        .fold(0.0, f64::max);
    assert!(worst < 1e-6, "largest NMSE {worst:e}");
}
