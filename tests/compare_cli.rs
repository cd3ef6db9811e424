//! `llorch-diff compare` through the binary: verdicts, first divergence, reports, exit codes.

mod compare_common;

use std::path::Path;
use std::process::{Command, Output};

use compare_common::{manifest, pair, perturb, scratch, write_folder, Edit, Spec};
use llorch_diff::checkpoint::catalogue::CheckpointName;
use llorch_diff::checkpoint::Kind;

fn compare(a: &Path, b: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llorch-diff"))
        .arg("compare")
        .arg(a)
        .arg(b)
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn ffn_out(layer: u32) -> CheckpointName {
    CheckpointName::layer(layer, Kind::FfnOut)
}

#[test]
fn identical_folders_pass_with_exit_0() {
    let root = scratch("cli-identical");
    let spec = Spec::tiny();
    let (a, b) = pair(&root, &spec, "ggml");
    let o = compare(&a, &b, &[]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "stdout:\n{out}\nstderr:\n{err}");
    let total = (spec.steps as usize + 1) * (4 + 18 * spec.n_layer as usize);
    assert!(out.starts_with("expected (A): llama.cpp"), "{out}");
    assert!(
        out.contains(&format!("PASS: {total} checkpoints: {total} PASS, 0 FAIL")),
        "{out}"
    );
    assert!(out.contains("FIRST DIVERGENCE: none"), "{out}");
    // Compact: one row per step × layer plus tokens, inp_embd, result_norm, result_output.
    let rows = out.lines().filter(|l| l.contains("blk.")).count();
    assert_eq!(
        rows,
        (spec.steps as usize + 1) * spec.n_layer as usize,
        "{out}"
    );
    // Verbose: every checkpoint.
    let o = compare(&a, &b, &["--verbose"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0);
    assert!(
        out.contains("blk.2.kq_soft_max") && out.contains("blk.3.Kcur_rope"),
        "{out}"
    );
}

#[test]
fn perturbed_checkpoint_is_the_first_divergence() {
    let root = scratch("cli-perturbed");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    // Step 1 layer 2's ffn_out off by ~1e-2 (NMSE ~1e-4), and the residual stream after it
    // increasingly off, as a real divergence would propagate.
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 1 && *name == ffn_out(2) {
                perturb(t, 1e-2, "x");
            }
            if step == 1 && name.kind() == Some(Kind::LOut) && name.layer_index() >= Some(2) {
                let l = name.layer_index().unwrap() as i32;
                perturb(t, 10f64.powi(l - 4), "y");
            }
            Edit::Keep
        },
    );
    let report = root.join("out/report.md");
    let json = root.join("out/c.json");
    let junit = root.join("out/junit.xml");
    let o = compare(
        &a,
        &b,
        &[
            "--report",
            report.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "stdout:\n{out}\nstderr:\n{err}");
    let fd = out
        .lines()
        .find(|l| l.starts_with("FIRST DIVERGENCE"))
        .unwrap();
    assert!(
        fd.starts_with("FIRST DIVERGENCE: step 1, layer 2, blk.2.ffn_out: FAIL (nmse "),
        "{fd}"
    );
    let growth = out
        .lines()
        .find(|l| l.contains("l_out NMSE by layer, step 1: "))
        .unwrap();
    assert!(
        growth.contains(": grows ") && growth.contains("orders of magnitude from layer 2 ("),
        "{growth}"
    );
    // The first divergence comes before the table.
    assert!(out.find("FIRST DIVERGENCE").unwrap() < out.find("┌").unwrap());

    // Markdown and its heatmap.
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("Step 1, layer 2, `blk.2.ffn_out`: **FAIL**"),
        "{md}"
    );
    assert!(md.contains("![error heatmap: log10 NMSE per layer and checkpoint kind](report.svg)"));
    assert!(
        md.contains("| prompt | \"Hello \\| world\" |"),
        "prompt is escaped in tables"
    );
    assert!(
        md.contains("| llama.cpp | b0000 (synthetic) | - |"),
        "producer details listed"
    );
    let svg = std::fs::read_to_string(root.join("out/report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("step 1 blk.2.ffn_out: FAIL"),
        "tooltip of the failing cell"
    );

    // JSON: first divergence near the top, one result per checkpoint.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["format"], "llorch-diff-comparison/1");
    assert_eq!(v["passed"], false);
    assert_eq!(v["first_divergence"]["checkpoint"], "blk.2.ffn_out");
    assert_eq!(v["first_divergence"]["step"], 1);
    let results = v["results"].as_array().unwrap();
    let failing: Vec<&str> = results
        .iter()
        .filter(|r| r["verdict"] != "PASS")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["blk.2.ffn_out", "blk.2.l_out", "blk.3.l_out"]);

    // JUnit: one testcase per checkpoint plus the run's, failures carry the metric message.
    let x = std::fs::read_to_string(&junit).unwrap();
    let cases = junit_cases(&x);
    assert_eq!(cases.len(), results.len() + 1, "{x}");
    let failing: Vec<&(String, String, Option<JunitNonSuccess>)> =
        cases.iter().filter(|c| c.2.is_some()).collect();
    assert_eq!(
        failing.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        ["blk.2.ffn_out", "blk.2.l_out", "blk.3.l_out"],
        "{x}"
    );
    let (class, _, f) = failing[0];
    assert_eq!(class, "llorch-diff.step1");
    let f = f.as_ref().unwrap();
    assert_eq!((f.error, f.ty.as_str()), (false, "FAIL"));
    assert!(f.message.starts_with("nmse "), "{}", f.message);
    assert!(f.text.contains("step 1 blk.2.ffn_out"), "{}", f.text);
}

/// A testcase that did not pass, as read back from JUnit XML.
#[derive(Debug)]
struct JunitNonSuccess {
    error: bool,
    ty: String,
    message: String,
    text: String,
}

/// Every testcase of a JUnit report, parsed: classname, name, and how it did not pass.
fn junit_cases(xml: &str) -> Vec<(String, String, Option<JunitNonSuccess>)> {
    use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
    let report = Report::deserialize_from_str(xml).expect("well-formed JUnit XML");
    let s = |x: &Option<quick_junit::XmlString>| {
        x.as_ref()
            .map(|x| x.as_str().to_string())
            .unwrap_or_default()
    };
    report
        .test_suites
        .iter()
        .flat_map(|suite| &suite.test_cases)
        .map(|c| {
            let bad = match &c.status {
                TestCaseStatus::NonSuccess {
                    kind,
                    message,
                    ty,
                    description,
                    ..
                } => Some(JunitNonSuccess {
                    error: *kind == NonSuccessKind::Error,
                    ty: s(ty),
                    message: s(message),
                    text: s(description),
                }),
                _ => None,
            };
            (s(&c.classname), c.name.as_str().to_string(), bad)
        })
        .collect()
}

#[test]
fn missing_and_shape() {
    let root = scratch("cli-missing-shape");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 0 && *name == CheckpointName::layer(1, Kind::Vcur) {
                return Edit::Drop;
            }
            if step == 0 && *name == CheckpointName::layer(3, Kind::KqSoftMax) {
                // Same element count, other shape: must not compare as equal data.
                let s = t.shape.clone();
                t.shape = vec![s[0] * s[1], s[2]];
            }
            Edit::Keep
        },
    );
    let o = compare(&a, &b, &["--verbose"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in\n{out}"))
            .to_string()
    };
    assert!(
        line("blk.1.Vcur ").contains("MISSING")
            && line("blk.1.Vcur ").contains("missing from the candidate (B)")
    );
    let s = line("blk.3.kq_soft_max");
    assert!(
        s.contains("SHAPE") && s.contains("[4, 3, 3] (A) vs [12, 3] (B)"),
        "{s}"
    );
    assert!(
        out.contains("FIRST DIVERGENCE: step 0, layer 1, blk.1.Vcur: MISSING"),
        "{out}"
    );
    assert!(out.contains("1 MISSING, 1 SHAPE"), "{out}");
    // The other direction: present only in A is MISSING from B, and vice versa.
    let o = compare(&b, &a, &[]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).0.contains("missing from the expected (A)"));
}

#[test]
fn broken_files_are_errors_and_nan_fails() {
    let root = scratch("cli-broken");
    let spec = Spec::tiny();
    let (a, b) = pair(&root, &spec, "ggml");
    // Truncated data, a wrong header, NaN values: none may pass numerically.
    let trunc = b.join("step0/blk.0.attn_norm.bin");
    let bytes = std::fs::read(&trunc).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() - 10]).unwrap();
    let header = b.join("step0/blk.1.Qcur.bin");
    let mut bytes = std::fs::read(&header).unwrap();
    bytes[0..4].copy_from_slice(&99i32.to_le_bytes());
    std::fs::write(&header, bytes).unwrap();
    let nan = b.join("step1/blk.2.ffn_up.bin");
    let mut bytes = std::fs::read(&nan).unwrap();
    let at = bytes.len() - 8;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&nan, bytes).unwrap();
    let junit = root.join("j.xml");

    let o = compare(&a, &b, &["--verbose", "--junit", junit.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "stdout:\n{out}\nstderr:\n{err}");
    // The first row of that name that did not pass (the same names recur in every step).
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(name) && !l.contains("PASS"))
            .unwrap()
            .to_string()
    };
    let l = line("blk.0.attn_norm");
    assert!(
        l.contains("ERROR") && l.contains("candidate (B)") && l.contains("needs 192 data bytes"),
        "{l}"
    );
    let l = line("blk.1.Qcur ");
    assert!(l.contains("ERROR") && l.contains("n_dims is 99"), "{l}");
    let l = line("blk.2.ffn_up");
    assert!(
        l.contains("FAIL")
            && l.contains("non-finite values: expected none, candidate 1 NaN (first at [0, 22])"),
        "{l}"
    );
    assert!(
        out.contains("FIRST DIVERGENCE: step 0, layer 0, blk.0.attn_norm: ERROR"),
        "{out}"
    );
    let x = std::fs::read_to_string(junit).unwrap();
    let (errors, failures): (Vec<JunitNonSuccess>, Vec<JunitNonSuccess>) = junit_cases(&x)
        .into_iter()
        .filter_map(|c| c.2)
        .partition(|f| f.error);
    assert_eq!(errors.len(), 2, "{x}");
    assert!(errors.iter().all(|f| f.ty == "ERROR"), "{errors:?}");
    // The NaN is a failure, named in its message.
    assert!(
        failures
            .iter()
            .any(|f| f.ty == "FAIL" && f.message.contains("non-finite values")),
        "{failures:?}"
    );
}

#[test]
fn manifests_prompt_tokens_fail_and_model_differs_warns() {
    let root = scratch("cli-manifests");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let mut m = manifest(&spec, "reference", Some("ggml"));
    m.model.sha256 = "cd".repeat(32);
    let b = write_folder(&root.join("b"), &spec, m, |_, _, _| Edit::Keep);
    let o = compare(&a, &b, &[]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0, "a different model file is a warning: {out}");
    assert!(
        out.lines()
            .nth(3)
            .unwrap()
            .starts_with("WARNING: models differ: synthetic.gguf sha256 abab"),
        "{out}"
    );

    let mut m = manifest(&spec, "reference", Some("ggml"));
    m.prompt_tokens[1] += 1;
    let c = write_folder(&root.join("c"), &spec, m, |_, _, _| Edit::Keep);
    let o = compare(&a, &c, &[]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(out.starts_with("expected (A)"));
    assert!(
        out.lines()
            .nth(3)
            .unwrap()
            .starts_with("RUN FAILURE: prompt tokens differ (first at position 1)"),
        "{out}"
    );
}

#[test]
fn tolerance_flags_and_files() {
    let root = scratch("cli-tolerances");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 0 && *name == CheckpointName::layer(0, Kind::FfnGate) {
                // NMSE ~1e-5: over ggml's NMSE gate, within its cosine gate (1-cos ~ NMSE/2).
                perturb(t, 3e-3, "z");
            }
            Edit::Keep
        },
    );
    assert_eq!(code(&compare(&a, &b, &[])), 1);
    assert_eq!(code(&compare(&a, &b, &["--nmse", "1e-3"])), 0);
    assert_eq!(
        code(&compare(&a, &b, &["--mode", "exact"])),
        0,
        "exact mode is looser"
    );
    let o = compare(&a, &b, &["--nmse", "1e-3", "--max-abs", "1e-3"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).0.contains("max_abs"), "{}", text(&o).0);
    let f = root.join("t.toml");
    std::fs::write(&f, "[ggml.ffn_gate]\nnmse = 1e-3\n").unwrap();
    assert_eq!(
        code(&compare(&a, &b, &["--tolerances", f.to_str().unwrap()])),
        0
    );
    std::fs::write(&f, "[ggml.ffn_gatee]\nnmse = 1e-2\n").unwrap();
    let o = compare(&a, &b, &["--tolerances", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(text(&o).1.contains("ffn_gatee"), "{}", text(&o).1);
    let o = compare(&a, &b, &["--mode", "turbo"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).1.contains("no tolerances for mode \"turbo\""),
        "{}",
        text(&o).1
    );
}

#[test]
fn json_to_stdout_and_input_errors_exit_2() {
    let root = scratch("cli-json-errors");
    let spec = Spec::tiny();
    let (a, b) = pair(&root, &spec, "ggml");
    let o = compare(&a, &b, &["--json", "-"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is only JSON");
    assert_eq!(v["passed"], true);
    assert!(
        text(&o).1.contains("FIRST DIVERGENCE: none"),
        "the table goes to stderr"
    );

    let o = compare(&a, &root.join("nope"), &[]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o)
            .1
            .starts_with("error: opening the candidate folder"),
        "{}",
        text(&o).1
    );
    std::fs::write(b.join("manifest.json"), "{ not json").unwrap();
    let o = compare(&a, &b, &[]);
    assert_eq!(code(&o), 2);
    assert!(text(&o).1.contains("invalid manifest"), "{}", text(&o).1);
}
