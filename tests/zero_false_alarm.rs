//! The zero-false-alarm matrix, a fast subset: `llorch-diff matrix` runs llama.cpp (in its
//! default CPU configuration, repacking on) and the reference in ggml mode on the same tokens
//! and requires every checkpoint of every step to be byte-identical. `quantize` makes real
//! weights in the types users download. The whole matrix is `llorch-diff matrix` (README).

mod common;

use std::path::Path;
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn llorch(args: &[&str]) -> Out {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the matrix and asserts every cell identical, and that it ran `cells` cells.
fn assert_matrix_identical(args: &[&str], cells: usize) {
    let o = llorch(args);
    let summary = o
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("matrix:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        o.code == 0 && summary.contains(&format!("{cells} passed, 0 failed")),
        "exit {}: {summary}\n{}\n{}",
        o.code,
        o.stdout,
        o.stderr
    );
}

/// A weight type for every kernel llama.cpp dispatches to (tinyBLAS for F32/F16/BF16,
/// tinyBLAS_Q0 for Q8_0, the repacked GEMV/GEMM for Q4_0, Q4_K, IQ4_NL and MXFP4, vec_dot for Q4_1, Q5_1 and
/// TQ2_0, the tiled GEMM for Q6_K and the I-quants), at prompt lengths on both sides of the batch
/// sizes where it changes kernel (sgemm at 2, repacked GEMM at 4, tiled GEMM at 8), with an F16
/// cache and two threads.
#[test]
fn presets_in_every_type_are_byte_identical() {
    let dir = common::scratch("matrix_presets");
    let types =
        "f32,f16,bf16,q8_0,q4_0,q4_1,q5_1,q4_k,q6_k,iq4_nl,mxfp4,iq4_xs,iq2_xxs,iq3_s,tq2_0";
    let n_types = types.split(',').count();
    let lengths = "1,2,3,5,8,9,33";
    let n_lengths = lengths.split(',').count();
    assert_matrix_identical(
        &[
            "matrix",
            "--presets",
            "tiny-llama,tiny-gpt2",
            "--types",
            types,
            "--lengths",
            lengths,
            "--kv",
            "f16",
            "--threads",
            "2",
            "--out",
            s(&dir),
        ],
        2 * n_types * n_lengths,
    );
}

/// SmolLM2 re-quantized by llama.cpp's own quantizer to what users download, a prompt past
/// every kernel threshold, both cache types.
#[test]
fn smollm2_requantized_is_byte_identical() {
    let model = common::smollm2();
    let dir = common::scratch("matrix_smollm2");
    assert_matrix_identical(
        &[
            "matrix",
            "--presets",
            "",
            "--model",
            s(&model),
            "--quantize-to",
            "Q4_K_M,IQ4_XS,BF16",
            "--lengths",
            "1,33",
            "--kv",
            "f32,f16",
            "--threads",
            "2",
            "--out",
            s(&dir),
        ],
        3 * 2 * 2,
    );
}

#[test]
fn quantize_writes_a_model_llama_cpp_runs() {
    let model = common::smollm2();
    let dir = common::scratch("quantize");
    let out = dir.join("q8.gguf");
    let o = llorch(&["quantize", s(&model), s(&out), "q8_0"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let o = llorch(&["inspect", s(&out)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("q8_0"), "{}", o.stdout);
    // Nothing but the output is left in the folder.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["q8.gguf".to_string()]);
}

#[test]
fn quantize_bad_input_is_one_line_exit_2() {
    let model = common::smollm2();
    let dir = common::scratch("quantize_bad");
    let out = dir.join("x.gguf");
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["quantize", s(&model), s(&out), "Q4_K_X"],
            "unknown file type 'Q4_K_X'",
        ),
        (
            vec!["quantize", "/nonexistent.gguf", s(&out), "Q8_0"],
            "/nonexistent.gguf",
        ),
        (
            vec!["quantize", s(&model), s(&model), "Q8_0"],
            "is the input",
        ),
        (
            vec!["quantize", s(&model), "/nonexistent/dir/x.gguf", "Q8_0"],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        let o = llorch(&args);
        assert_eq!(o.code, 2, "{args:?}: {}\n{}", o.stdout, o.stderr);
        assert_eq!(
            o.stderr.trim_end().lines().count(),
            1,
            "{args:?}: {}",
            o.stderr
        );
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
    }
    assert!(!out.exists());
}

/// `matrix --mode exact`: the reference's mathematics against llama.cpp within the `exact`
/// gates on every family, and a summary per family of each kind's largest NMSE, which is not
/// zero past the embedding lookup (the two sides really do compute differently).
#[test]
fn exact_mode_matrix_passes_and_reports_the_largest_nmse_per_kind() {
    let dir = common::scratch("matrix_exact");
    let presets = "tiny-qwen2,tiny-qwen3,tiny-gemma3";
    let o = llorch(&[
        "matrix",
        "--mode",
        "exact",
        "--presets",
        presets,
        "--types",
        "q4_k",
        "--lengths",
        "1,9",
        "--kv",
        "f16",
        "--threads",
        "2",
        "--steps",
        "2",
        "--out",
        s(&dir),
    ]);
    assert!(
        o.code == 0 && o.stdout.contains("6 passed, 0 failed"),
        "exit {}\n{}\n{}",
        o.code,
        o.stdout,
        o.stderr
    );
    for preset in presets.split(',') {
        let section: Vec<&str> = o
            .stdout
            .lines()
            .skip_while(|l| *l != format!("largest NMSE per kind, {preset}:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        let nmse = |kind: &str| -> f64 {
            let line = section
                .iter()
                .find(|l| l.split_whitespace().next() == Some(kind))
                .unwrap_or_else(|| panic!("{preset}: no {kind} in {section:?}"));
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        assert_eq!(nmse("inp_embd"), 0.0, "{preset}");
        let l_out = nmse("l_out");
        assert!(l_out > 0.0 && l_out < 1e-1, "{preset}: l_out {l_out}");
    }
}
