//! `run --candidate CMD`: another engine run as a subprocess and judged against llama.cpp and
//! the reference. A stand-in engine (tests/data/candidate_copy.py, through
//! python/llorch_dump.py) shows the plumbing; candidates that crash, time out, exit non-zero or
//! write no folder or a broken one each get one error line and exit code 2, never a pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// The stand-in engine's command line, with the project's Python (scripts/python-env.sh).
fn copy_engine(noise: &str, variant: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python3");
    assert!(
        py.is_file(),
        "{} is missing: run scripts/python-env.sh",
        py.display()
    );
    format!(
        "{} {} {{out}} {{prompt_tokens}} {noise} {variant}",
        py.display(),
        root.join("tests/data/candidate_copy.py").display()
    )
}

/// `run` on the default tiny-llama preset with one decode step and a candidate.
fn run_candidate(name: &str, cmd: &str, extra: &[&str]) -> (Out, PathBuf) {
    let dir = common::scratch(name);
    let out = dir.join("out");
    let json = dir.join("run.json");
    let report = dir.join("report.md");
    let mut args = vec![
        "run",
        "--steps",
        "1",
        "--out",
        s(&out),
        "--report",
        s(&report),
        "--json",
        s(&json),
        "--candidate",
        cmd,
    ];
    args.extend_from_slice(extra);
    (llorch(&args), dir)
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

/// The last stderr line is the verdict: `error: ...` naming `needle`; exit code 2; no output
/// folder and no report left behind.
fn assert_cannot_be_judged(o: &Out, dir: &Path, needle: &str) {
    assert_eq!(o.code, 2, "stdout {}\nstderr {}", o.stdout, o.stderr);
    let last = o.stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "last line {last:?} should be an error naming {needle:?}\n{}",
        o.stderr
    );
    assert!(!o.stdout.contains("PASS"), "{}", o.stdout);
    assert!(
        !dir.join("out").exists(),
        "a failed run leaves no output folder"
    );
    assert!(!dir.join("report.md").exists() && !dir.join("run.json").exists());
}

#[test]
fn a_candidate_is_judged_against_llama_cpp_and_the_reference() {
    // The engine also leaves a stray folder beside its {out}: removed before the output folder
    // is committed, so that a later run may replace it.
    let cmd = format!("{} && mkdir {{out}}/../.stray", copy_engine("1e-4", ""));
    let (o, dir) = run_candidate("cand_ok", &cmd, &["--candidate-mode", "ggml"]);
    assert_eq!(o.code, 0, "stdout {}\nstderr {}", o.stdout, o.stderr);
    let j = json(&dir);
    assert_eq!(j["passed"], true);
    let pairs = j["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0]["against"], "llama.cpp");
    assert_eq!(pairs[0]["tolerances"], "independent");
    assert_eq!(pairs[1]["against"], "reference (ggml)");
    assert_eq!(pairs[1]["tolerances"], "independent-ggml");
    // tiny-llama has 4 layers: l_out of each and the logits, at steps 0 and 1.
    for p in pairs {
        let c = &p["comparison"];
        assert_eq!(c["counts"]["total"], 10, "{c}");
        assert_eq!(c["counts"]["pass"], 10, "{c}");
    }
    // The folders and the report: both pairs' sections.
    assert!(dir.join("out/candidate/manifest.json").is_file());
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("Candidate vs llama.cpp") && md.contains("Candidate vs reference (ggml)"));
    assert!(o
        .stdout
        .contains("candidate vs llama.cpp [independent]: PASS"));
}

#[test]
fn a_wrong_candidate_fails_at_its_first_checkpoint() {
    let (o, dir) = run_candidate("cand_noisy", &copy_engine("1.0", ""), &["--no-reference"]);
    assert_eq!(o.code, 1, "stdout {}\nstderr {}", o.stdout, o.stderr);
    let j = json(&dir);
    assert_eq!(j["passed"], false);
    let pairs = j["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "--no-reference: llama.cpp only");
    let d = &pairs[0]["comparison"]["first_divergence"];
    assert_eq!(
        (d["step"].as_u64(), d["checkpoint"].as_str()),
        (Some(0), Some("blk.0.l_out"))
    );
    assert!(
        o.stdout.contains("first divergence at step 0 blk.0.l_out"),
        "{}",
        o.stdout
    );
}

#[test]
fn claimed_checkpoints_that_are_not_dumped_are_missing() {
    let (o, dir) = run_candidate(
        "cand_claims",
        &copy_engine("0", "claims"),
        &["--no-reference"],
    );
    assert_eq!(o.code, 1, "stdout {}\nstderr {}", o.stdout, o.stderr);
    let c = &json(&dir)["pairs"][0]["comparison"];
    // Claimed: 4 l_out + logits per step, 2 steps; dumped: blk.0.l_out per step.
    assert_eq!(c["counts"]["total"], 10, "{c}");
    assert_eq!(c["counts"]["pass"], 2, "{c}");
    assert_eq!(c["counts"]["missing"], 8, "{c}");
}

#[test]
fn a_crashing_candidate_is_named_with_its_signal_and_stderr() {
    let (o, dir) = run_candidate(
        "cand_crash",
        "echo 'engine: about to fault' >&2; kill -SEGV $$",
        &[],
    );
    assert_cannot_be_judged(&o, &dir, "crashed: killed by signal 11 (SIGSEGV)");
    assert!(
        o.stderr.contains("  | engine: about to fault"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_candidate_exiting_non_zero_is_named_with_its_status() {
    let (o, dir) = run_candidate("cand_exit", "echo 'no such tensor' >&2; exit 3", &[]);
    assert_cannot_be_judged(&o, &dir, "failed: exit status 3");
    assert!(o.stderr.contains("  | no such tensor"), "{}", o.stderr);
}

#[test]
fn a_candidate_that_hangs_is_killed_with_its_process_group() {
    let dir = common::scratch("cand_timeout_pid");
    let pidfile = dir.join("pid");
    // A background grandchild in the same group: it must die with the shell.
    let cmd = format!("sleep 60 & echo $! > {}; sleep 60", s(&pidfile));
    let t = Instant::now();
    let (o, dir) = run_candidate("cand_timeout", &cmd, &["--candidate-timeout", "1"]);
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "took {:?}",
        t.elapsed()
    );
    assert_cannot_be_judged(&o, &dir, "timed out after 1 s");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    assert!(pid.parse::<u32>().is_ok(), "pid file: {pid:?}");
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Gone, or a zombie awaiting its (dead) parent's reaper.
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "pid {pid} lives on: {stat}"
    );
}

#[test]
fn a_candidate_writing_no_folder_or_a_broken_one_cannot_be_judged() {
    let (o, dir) = run_candidate("cand_none", "true", &[]);
    assert_cannot_be_judged(&o, &dir, "wrote no dump folder");
    let (o, dir) = run_candidate("cand_broken", &copy_engine("0", "broken"), &[]);
    assert_cannot_be_judged(&o, &dir, "dump folder is broken");
    assert!(o.stderr.contains("blk.0.l_out"), "{}", o.stderr);
    let (o, dir) = run_candidate(
        "cand_manifest",
        "mkdir -p {out} && echo '{{\"format\": 1' > {out}/manifest.json",
        &[],
    );
    assert_cannot_be_judged(&o, &dir, "invalid manifest");
}

#[test]
fn placeholders_are_checked_before_anything_runs() {
    let (o, dir) = run_candidate("cand_placeholder", "engine {model} {outt}", &[]);
    assert_cannot_be_judged(&o, &dir, "unknown placeholder {outt}");
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
}

#[test]
fn sigint_while_the_candidate_runs_kills_its_group_and_exits_130() {
    let dir = common::scratch("cand_sigint");
    let pidfile = dir.join("pid");
    let cmd = format!("sleep 60 & echo $! > {}; sleep 60", s(&pidfile));
    let child = Command::new(common::bin())
        .args(["run", "--steps", "1", "--out"])
        .arg(dir.join("out"))
        .arg("--report")
        .arg(dir.join("report.md"))
        .args(["--candidate", &cmd])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !pidfile.is_file() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the candidate never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    assert!(pid.parse::<u32>().is_ok(), "pid file: {pid:?}");
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "pid {pid} lives on: {stat}"
    );
    assert!(!dir.join("out").exists() && !dir.join("report.md").exists());
}

#[test]
fn filter_narrows_both_sides() {
    // The engine dumps every l_out and the logits; --filter keeps the l_out of both sides.
    let (o, dir) = run_candidate(
        "cand_filter",
        &copy_engine("1e-4", ""),
        &["--no-reference", "--filter", "blk.*.l_out"],
    );
    assert_eq!(o.code, 0, "stdout {}\nstderr {}", o.stdout, o.stderr);
    let c = &json(&dir)["pairs"][0]["comparison"];
    assert_eq!(c["counts"]["total"], 8, "{c}");
    assert_eq!(c["counts"]["pass"], 8, "{c}");
}
