//! A crash inside llama.cpp (a failed GGML_ASSERT, which aborts; a segfault) during `extract`,
//! `run` or `gate` is reported on one line with llama.cpp's last log line, exits 2 and leaves
//! no output. The crash is real: the shim's test-only trigger `LLORCH_DIFF_TEST_CRASH`
//! (`abort` or `segv`, `:N` for decode N) fails an assertion or writes through a null pointer
//! inside llama_decode's graph compute.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llorch_diff::staging::partial_pid;

struct Out {
    code: i32,
    stderr: String,
}

fn llorch(args: &[&str], crash: Option<&str>) -> Out {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).stdin(Stdio::null());
    match crash {
        Some(c) => cmd.env("LLORCH_DIFF_TEST_CRASH", c),
        None => cmd.env_remove("LLORCH_DIFF_TEST_CRASH"),
    };
    let o = cmd.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Entries of `dir` (staging folders included).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Exit 2, one line on stderr naming the crash and the signal, and a last log line after it.
fn assert_crash_line(o: &Out, signal: &str, assertion: bool) {
    assert_eq!(o.code, 2, "stderr: {}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line on stderr expected: {:?}",
        o.stderr
    );
    let line = lines[0];
    assert!(
        line.contains(&format!("llama.cpp crashed ({signal}")),
        "{line}"
    );
    assert_eq!(
        line.contains("GGML_ASSERT(") && line.contains("failed"),
        assertion,
        "{line}"
    );
    // After the parenthesis: llama.cpp's last log line, not empty.
    let last = line.rsplit("): ").next().unwrap();
    assert!(!last.trim().is_empty() && last != "(no log line)", "{line}");
    assert!(!line.contains('\x1e'), "a protocol marker leaked: {line:?}");
    println!("{line}");
}

fn extract_crash(name: &str, crash: &str, signal: &str, assertion: bool) {
    let dir = common::scratch(name);
    let out = dir.join("dumps");
    let model = common::smollm2();
    let o = llorch(
        &[
            "extract",
            s(&model),
            "The quick brown fox",
            "--steps",
            "2",
            "--out",
            s(&out),
        ],
        Some(crash),
    );
    assert_crash_line(&o, signal, assertion);
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn abort_during_extract_is_reported_and_leaves_nothing() {
    extract_crash("crash_extract_abort", "abort", "signal 6 SIGABRT", true);
}

#[test]
fn segfault_during_extract_is_reported_and_leaves_nothing() {
    // During the first decode step after the prompt.
    extract_crash("crash_extract_segv", "segv:1", "signal 11 SIGSEGV", false);
}

#[test]
fn a_crash_keeps_the_previous_output_folder() {
    let dir = common::scratch("crash_keeps_previous");
    let out = dir.join("dumps");
    let model = common::smollm2();
    let args = ["extract", s(&model), "Hello", "--out", s(&out)];
    let ok = llorch(&args, None);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let before = common::read_tree(&out);
    let o = llorch(&args, Some("abort"));
    assert_crash_line(&o, "signal 6 SIGABRT", true);
    assert!(common::read_tree(&out) == before, "the old output changed");
    assert_eq!(entries(&dir), vec![out.clone()]);
}

fn run_crash(name: &str, crash: &str, signal: &str, assertion: bool) {
    let dir = common::scratch(name);
    let out = dir.join("outputs/run");
    let report = dir.join("reports/run.md");
    let model = common::smollm2();
    let o = llorch(
        &[
            "run",
            s(&model),
            "The quick brown fox",
            "--steps",
            "2",
            "--out",
            s(&out),
            "--report",
            s(&report),
        ],
        Some(crash),
    );
    assert_crash_line(&o, signal, assertion);
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn abort_during_run_is_reported_and_leaves_nothing() {
    // During the second decode step.
    run_crash("crash_run_abort", "abort:2", "signal 6 SIGABRT", true);
}

#[test]
fn segfault_during_run_is_reported_and_leaves_nothing() {
    run_crash("crash_run_segv", "segv", "signal 11 SIGSEGV", false);
}

#[test]
fn a_crash_during_gate_is_reported_and_the_baseline_is_kept() {
    let b = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/tiny-llama-q8_0");
    let before = common::read_tree(&b);
    let dir = common::scratch("crash_gate");
    let out = dir.join("work");
    let o = llorch(
        &["gate", "--baseline", s(&b), "--out", s(&out)],
        Some("segv"),
    );
    assert_eq!(o.code, 2, "stderr: {}", o.stderr);
    assert!(
        o.stderr.contains("llama.cpp crashed (signal 11 SIGSEGV)"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains('\x1e'), "{:?}", o.stderr);
    assert!(common::read_tree(&b) == before, "gate changed the baseline");
    assert!(!out.exists(), "{} was left behind", out.display());
}

/// PIDs of the processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn llama_cpps_process_dies_with_a_killed_parent_and_removes_its_staging_folder() {
    let dir = common::scratch("crash_parent_killed");
    let out = dir.join("dumps");
    let model = common::smollm2();
    let prompt = ["The quick brown fox jumps over the lazy dog."; 30].join(" ");
    let mut parent = Command::new(common::bin())
        .args([
            "extract",
            s(&model),
            &prompt,
            "--steps",
            "400",
            "--out",
            s(&out),
        ])
        .env_remove("LLORCH_DIFF_TEST_CRASH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The child's staging folder carries the parent's PID.
    let started = Instant::now();
    loop {
        let seen = entries(&dir).iter().any(|p| {
            p.file_name().and_then(|n| n.to_str()).and_then(partial_pid) == Some(parent.id())
        });
        if seen {
            break;
        }
        assert!(parent.try_wait().unwrap().is_none(), "ended too early");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no staging folder"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let children = processes_with("__extract-child");
    let ours: Vec<u32> = children
        .into_iter()
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(s(&out)))
        })
        .collect();
    assert_eq!(ours.len(), 1, "llama.cpp's process not found");
    parent.kill().unwrap();
    parent.wait().unwrap();
    let started = Instant::now();
    // Gone, or a zombie nobody reaped yet.
    let alive = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| st.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
    };
    while alive(ours[0]) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "llama.cpp's process {} outlived its parent",
            ours[0]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn nothing_but_the_summary_on_a_stderr_that_is_not_a_terminal() {
    // No progress bar, no protocol line of llama.cpp's process, no log line.
    let dir = common::scratch("crash_quiet_stderr");
    let out = dir.join("dumps");
    let model = common::smollm2();
    let o = llorch(
        &[
            "extract",
            s(&model),
            "Hello",
            "--steps",
            "2",
            "--out",
            s(&out),
        ],
        None,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", o.stderr);
    assert!(lines[0].starts_with("wrote "), "{:?}", o.stderr);
    for c in ['\r', '\x1b', '\x1e'] {
        assert!(!o.stderr.contains(c), "{c:?} in {:?}", o.stderr);
    }
}
