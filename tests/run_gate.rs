//! `run` (extract + reference + compare + report in one command) and `gate` (fresh runs against
//! the committed baselines in checkpoints/), through the binary.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn llorch(args: &[&str]) -> Out {
    llorch_env(args, &[])
}

fn llorch_env(args: &[&str], env: &[(&str, &Path)]) -> Out {
    let mut c = Command::new(common::bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The verdict column of every row of every compact table in `stdout`.
fn table_verdicts(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|l| l.contains('┆') && !l.contains("verdict"))
        .map(|l| {
            let cols: Vec<&str> = l.trim_matches('│').split('┆').map(str::trim).collect();
            (format!("step {} {}", cols[0], cols[1]), cols[4].to_string())
        })
        .collect()
}

fn assert_all_pass(o: &Out, min_rows: usize) {
    let rows = table_verdicts(&o.stdout);
    assert!(
        rows.len() >= min_rows,
        "expected at least {min_rows} table rows:\n{}",
        o.stdout
    );
    let failing: Vec<_> = rows.iter().filter(|(_, v)| v != "PASS").collect();
    assert!(
        failing.is_empty(),
        "rows not PASS: {failing:?}\n{}",
        o.stdout
    );
}

fn assert_one_line_exit_2(o: &Out, needle: &str) {
    assert_eq!(o.code, 2, "stdout {}\nstderr {}", o.stdout, o.stderr);
    assert_eq!(
        o.stderr.trim_end().lines().count(),
        1,
        "one line expected: {:?}",
        o.stderr
    );
    assert!(
        o.stderr.contains(needle),
        "{:?} should mention {needle:?}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

fn baseline(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("checkpoints")
        .join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes, for checking that nothing was rewritten.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(snapshot(&p));
        } else {
            v.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
    v.sort();
    v
}

#[test]
fn run_default_model_passes_and_writes_the_report() {
    let dir = common::scratch("run_default");
    let out = dir.join("out");
    let md = dir.join("reports/default.md");
    let o = llorch(&["run", "--out", s(&out), "--report", s(&md)]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    // 5 steps (prompt + 4 decode steps) x (tokens, inp_embd, 4 layers, result_norm, result_output).
    assert_all_pass(&o, 5 * 8);
    assert!(o.stdout.contains("PASS: 380 checkpoints"), "{}", o.stdout);
    for phase in ["extract", "reference", "compare+report"] {
        assert!(
            o.stderr.contains(phase),
            "timing of {phase} missing: {}",
            o.stderr
        );
    }
    assert!(out.join("llama.cpp/manifest.json").is_file());
    assert!(out.join("reference/manifest.json").is_file());

    let text = fs::read_to_string(&md).unwrap();
    let svg = md.with_extension("svg");
    let picture = fs::read_to_string(&svg).unwrap();
    assert!(!picture.is_empty());
    let head = picture.trim_start();
    assert!(
        head.starts_with("<svg") || head.starts_with("<?xml"),
        "not SVG: {}",
        &picture[..picture.len().min(80)]
    );
    assert!(picture.contains("</svg>"), "SVG not closed");
    assert!(
        text.contains("](default.svg)"),
        "the Markdown does not link its picture:\n{text}"
    );
    println!(
        "{}",
        o.stdout.lines().take(4).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn run_smollm2_hello_passes() {
    let model = common::smollm2();
    let dir = common::scratch("run_smollm2");
    let o = llorch(&[
        "run",
        s(&model),
        "Hello",
        "--out",
        s(&dir.join("out")),
        "--report",
        s(&dir.join("smollm2.md")),
    ]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    // 30 layers, 5 steps.
    assert_all_pass(&o, 5 * 34);
    assert!(dir.join("smollm2.svg").is_file());
    println!("{}", o.stderr.trim_end());
}

#[test]
fn run_with_an_injected_fault_fails_at_the_first_divergence() {
    let dir = common::scratch("run_fault");
    let o = llorch(&[
        "run",
        "--inject-fault",
        "gqa-modulo",
        "--out",
        s(&dir.join("out")),
        "--report",
        s(&dir.join("fault.md")),
    ]);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("FIRST DIVERGENCE"))
        .unwrap_or_default();
    assert!(
        line.contains("step 0, layer 0, blk.0.kq_soft_max"),
        "{}",
        o.stdout
    );
    // The report is written for a failing run too.
    assert!(fs::read_to_string(dir.join("fault.md"))
        .unwrap()
        .contains("blk.0.kq_soft_max"));
    println!("{line}");
}

#[test]
fn run_bad_model_is_an_input_error_and_leaves_nothing() {
    let dir = common::scratch("run_bad_model");
    let out = dir.join("outputs/run");
    let md = dir.join("reports/r.md");

    let o = llorch(&[
        "run",
        "/nonexistent/model.gguf",
        "--out",
        s(&out),
        "--report",
        s(&md),
    ]);
    assert_one_line_exit_2(&o, "/nonexistent/model.gguf");
    println!("{}", o.stderr.trim_end());

    let text = dir.join("notes.gguf");
    fs::write(&text, b"this is not a model, just text\n").unwrap();
    let o = llorch(&["run", s(&text), "--out", s(&out), "--report", s(&md)]);
    assert_one_line_exit_2(&o, "notes.gguf");
    println!("{}", o.stderr.trim_end());

    for p in [dir.join("outputs"), dir.join("reports")] {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
}

#[test]
fn gate_passes_on_the_committed_baselines() {
    for (name, n_layer) in [
        ("tiny-llama-q8_0", 4),
        ("tiny-gpt2-q8_0", 4),
        ("tiny-qwen2-q8_0", 4),
        ("tiny-qwen3-q4_k", 4),
        ("tiny-gemma3-q8_0", 6),
    ] {
        let b = baseline(name);
        let before = snapshot(&b);
        let out = common::scratch(&format!("gate_{name}"));
        let o = llorch(&["gate", "--baseline", s(&b), "--out", s(&out)]);
        assert_eq!(o.code, 0, "{name}:\n{}\n{}", o.stdout, o.stderr);
        // Two tables (llama.cpp, reference) of 3 steps x (tokens, inp_embd, one row per layer,
        // result_norm, result_output).
        assert_all_pass(&o, 2 * 3 * (4 + n_layer));
        let last = o.stdout.trim_end().lines().last().unwrap();
        assert!(last.contains("PASS"), "{last}");
        assert!(snapshot(&b) == before, "gate rewrote {name}");
        println!("{last}");
    }
}

#[test]
fn gate_fails_on_a_perturbed_baseline_until_update_restores_it() {
    let dir = common::scratch("gate_perturbed");
    let b = dir.join("tiny-gpt2-q8_0");
    copy_tree(&baseline("tiny-gpt2-q8_0"), &b);
    let work = dir.join("work");

    // One float of one stored file changes; its header and size stay as they were.
    let file = b.join("llama.cpp/step1/blk.2.ffn_up.bin");
    let mut bytes = fs::read(&file).unwrap();
    let n_dims = i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let at = 4 + 8 * n_dims + 4 * 7;
    let x = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(x + 0.25).to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    let perturbed = snapshot(&b);

    let o = llorch(&["gate", "--baseline", s(&b), "--out", s(&work)]);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let last = o.stdout.trim_end().lines().last().unwrap();
    assert!(
        last.contains("FAIL") && last.contains("step 1, blk.2.ffn_up"),
        "{last}"
    );
    assert!(
        o.stdout
            .contains("FIRST DIVERGENCE: step 1, layer 2, blk.2.ffn_up: FAIL"),
        "{}",
        o.stdout
    );
    assert!(
        snapshot(&b) == perturbed,
        "a failing gate rewrote the baseline"
    );
    println!("{last}");

    let o = llorch(&["gate", "--baseline", s(&b), "--out", s(&work), "--update"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(
        fs::read(&file).unwrap(),
        fs::read(baseline("tiny-gpt2-q8_0").join("llama.cpp/step1/blk.2.ffn_up.bin")).unwrap(),
        "--update stores llama.cpp's values again"
    );
    println!("{}", o.stdout.trim_end().lines().last().unwrap());

    let o = llorch(&["gate", "--baseline", s(&b), "--out", s(&work)]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    println!("{}", o.stdout.trim_end().lines().last().unwrap());
}

#[test]
fn gate_reports_a_reference_that_moved() {
    let out = common::scratch("gate_fault");
    let o = llorch(&[
        "gate",
        "--baseline",
        s(&baseline("tiny-llama-q8_0")),
        "--out",
        s(&out),
        "--inject-fault",
        "rope-base",
    ]);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let last = o.stdout.trim_end().lines().last().unwrap();
    assert!(
        last.contains("the reference moved") && last.contains("blk.0.Qcur_rope"),
        "{last}"
    );
    println!("{last}");
}

#[test]
fn gate_creates_a_new_baseline_only_when_asked() {
    let dir = common::scratch("gate_new");
    let b = dir.join("baselines/new");
    let work = dir.join("work");
    let describe = [
        "--preset",
        "tiny-gpt2",
        "--quant",
        "q4_0",
        "--prompt",
        "Hi all",
        "--steps",
        "1",
    ];

    // Without --update the flags are refused and nothing is created.
    let mut args = vec!["gate", "--baseline", s(&b), "--out", s(&work)];
    args.extend(describe);
    assert_one_line_exit_2(&llorch(&args), "--update");
    assert!(!b.exists());

    args.push("--update");
    let o = llorch(&args);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let spec = fs::read_to_string(b.join("gate.toml")).unwrap();
    for line in [
        "preset = \"tiny-gpt2\"",
        "quant = \"q4_0\"",
        "seed = 1",
        "prompt = \"Hi all\"",
        "steps = 1",
    ] {
        assert!(spec.contains(line), "{line:?} missing from\n{spec}");
    }
    assert!(b.join("llama.cpp/manifest.json").is_file());

    // Now it is a baseline: it gates, and the describing flags are refused.
    let o = llorch(&["gate", "--baseline", s(&b), "--out", s(&work)]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert_one_line_exit_2(&llorch(&args), "already exists");
}

#[test]
fn gate_without_a_complete_baseline_is_an_input_error() {
    let dir = common::scratch("gate_missing");
    let work = dir.join("work");

    let missing = dir.join("no-such-baseline");
    let o = llorch(&["gate", "--baseline", s(&missing), "--out", s(&work)]);
    assert_one_line_exit_2(&o, "no baseline folder");
    println!("{}", o.stderr.trim_end());

    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = llorch(&["gate", "--baseline", s(&empty), "--out", s(&work)]);
    assert_one_line_exit_2(&o, "gate.toml");
    println!("{}", o.stderr.trim_end());
    let o = llorch(&["gate", "--baseline", s(&empty), "--update"]);
    assert_one_line_exit_2(&o, "--preset");

    let no_dumps = dir.join("no-dumps");
    fs::create_dir_all(&no_dumps).unwrap();
    fs::copy(
        baseline("tiny-llama-q8_0").join("gate.toml"),
        no_dumps.join("gate.toml"),
    )
    .unwrap();
    let o = llorch(&["gate", "--baseline", s(&no_dumps), "--out", s(&work)]);
    assert_one_line_exit_2(&o, "no stored dumps");
    println!("{}", o.stderr.trim_end());

    assert!(!work.exists(), "no work folder for an input error");
}

/// Copies a committed baseline into `dir` with one stored float of step 1, blk.2.ffn_up moved.
fn perturbed_copy(name: &str, dir: &Path) -> PathBuf {
    let b = dir.join(name);
    copy_tree(&baseline(name), &b);
    let file = b.join("llama.cpp/step1/blk.2.ffn_up.bin");
    let mut bytes = fs::read(&file).unwrap();
    let n_dims = i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let at = 4 + 8 * n_dims + 4 * 7;
    let x = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(x + 0.25).to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    b
}

/// The lines after `== summary ==`.
fn summary_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip_while(|l| *l != "== summary ==")
        .skip(1)
        .collect()
}

#[test]
fn gate_several_baselines_one_summary_line_each_and_the_worst_exit_code() {
    let dir = common::scratch("gate_several");
    let good = baseline("tiny-llama-q8_0");
    let bad = perturbed_copy("tiny-gpt2-q8_0", &dir);
    let summary = dir.join("step-summary.md");
    fs::write(&summary, "earlier step\n").unwrap();
    let work = dir.join("work");
    // The flag and the positional form mixed.
    let o = llorch_env(
        &["gate", "--baseline", s(&good), s(&bad), "--out", s(&work)],
        &[("GITHUB_STEP_SUMMARY", &summary)],
    );
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let lines = summary_lines(&o.stdout);
    assert_eq!(lines.len(), 3, "{}", o.stdout);
    assert!(
        lines[0].starts_with(&format!("gate {}: PASS", good.display())),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("gate {}: FAIL", bad.display()))
            && lines[1].contains("step 1, blk.2.ffn_up"),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "gate: 2 baselines: 1 passed, 1 failed, 0 could not be judged"
    );
    // Each baseline's fresh dumps in its own folder under --out.
    for name in ["tiny-llama-q8_0", "tiny-gpt2-q8_0"] {
        assert!(work.join(name).join("llama.cpp/manifest.json").is_file());
    }

    // The job summary: appended to, a section per baseline, then the total.
    let md = fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("earlier step\n"), "{md}");
    let a = md
        .find(&format!("## llorch-diff gate {}", good.display()))
        .expect("the first baseline's section");
    let b = md
        .find(&format!("## llorch-diff gate {}", bad.display()))
        .expect("the second baseline's section");
    let total = md.find("## llorch-diff gate: summary").expect("the total");
    assert!(a < b && b < total, "{md}");
    assert!(md[a..b].contains("**PASS"), "{}", &md[a..b]);
    assert!(
        md[b..total].contains("**FAIL") && md[b..total].contains("| 1 | blk.2 |"),
        "{}",
        &md[b..total]
    );
    assert!(
        md.contains("**gate: 2 baselines: 1 passed, 1 failed, 0 could not be judged**"),
        "{md}"
    );
}

#[test]
fn gate_several_baselines_with_one_missing_exits_2_after_judging_the_others() {
    let dir = common::scratch("gate_several_missing");
    let good = baseline("tiny-gpt2-q8_0");
    let missing = dir.join("no-such-baseline");
    let o = llorch(&["gate", s(&good), s(&missing), "--out", s(&dir.join("work"))]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    let lines = summary_lines(&o.stdout);
    assert_eq!(lines.len(), 3, "{}", o.stdout);
    assert!(lines[0].contains(": PASS"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("gate {}: ERROR: ", missing.display())),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "gate: 2 baselines: 1 passed, 0 failed, 1 could not be judged"
    );
    assert!(
        o.stderr.contains("1 of 2 baselines could not be judged"),
        "{}",
        o.stderr
    );
}

#[test]
fn gate_without_a_baseline_is_a_usage_error() {
    let o = llorch(&["gate"]);
    assert_one_line_exit_2(&o, "name a baseline folder");
}

#[test]
fn run_and_compare_append_their_verdict_to_the_step_summary() {
    let dir = common::scratch("step_summary");
    let summary = dir.join("summary.md");
    let out = dir.join("out");
    let env = [("GITHUB_STEP_SUMMARY", summary.as_path())];
    let o = llorch_env(
        &["run", "--out", s(&out), "--report", s(&dir.join("r.md"))],
        &env,
    );
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let md = fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("### llorch-diff run tiny-llama-q8_0-seed1.gguf"),
        "{md}"
    );
    assert!(md.contains("**PASS: 380 checkpoints"), "{md}");
    assert!(md.contains("| 4 | result_output | 1/1 |"), "{md}");

    // compare with a fault: the second section says FAIL and names the first divergence.
    let faulty = dir.join("faulty");
    let o = llorch(&[
        "reference",
        s(&out.join("model/tiny-llama-q8_0-seed1.gguf")),
        "Hello",
        "--steps",
        "4",
        "--out",
        s(&faulty),
        "--inject-fault",
        "gqa-modulo",
    ]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let o = llorch_env(&["compare", s(&out.join("llama.cpp")), s(&faulty)], &env);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let md2 = fs::read_to_string(&summary).unwrap();
    assert!(md2.starts_with(&md), "the run's section was not kept");
    let added = &md2[md.len()..];
    assert!(added.starts_with("### llorch-diff compare "), "{added}");
    assert!(added.contains("**FAIL"), "{added}");
    assert!(added.contains("FIRST DIVERGENCE: step 0"), "{added}");

    // Unset: nothing is written.
    let o = llorch(&[
        "compare",
        s(&out.join("llama.cpp")),
        s(&out.join("reference")),
    ]);
    assert_eq!(o.code, 0);
    assert_eq!(fs::read_to_string(&summary).unwrap(), md2);
}
