//! SIGINT and SIGTERM stop a long run, remove its staging folders and exit 130 / 143; staging
//! folders of processes that are gone are swept when a new one is created beside them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use llorch_diff::staging::{partial_pid, process_alive};

/// A prompt of a few hundred tokens: llama.cpp and the reference both take seconds on it.
fn long_prompt() -> String {
    ["The quick brown fox jumps over the lazy dog."; 30].join(" ")
}

/// The staging folders (`.NAME.partial-PID`) in `dir`.
fn staging_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_str().and_then(partial_pid).is_some())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `child` has a staging folder in `dir`; panics if it exits or takes too long.
fn wait_for_staging(child: &mut Child, dir: &Path) -> PathBuf {
    let started = Instant::now();
    loop {
        let own: Vec<PathBuf> = staging_in(dir)
            .into_iter()
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).and_then(partial_pid) == Some(child.id())
            })
            .collect();
        if let Some(p) = own.into_iter().next() {
            return p;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its staging folder appeared");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no staging folder appeared in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `args`, waits for its staging folder in `dir`, sends `signal` and returns the exit
/// code, stderr and the staging folder that was seen.
fn interrupt(args: &[&str], dir: &Path, signal: i32) -> (i32, String, PathBuf) {
    let mut child = Command::new(common::bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staging = wait_for_staging(&mut child, dir);
    // Let it write into the staging folder for a moment.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the signal: make it longer"
    );
    // SAFETY: kill takes plain integers; the child is ours and has not been reaped.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(r, 0, "kill failed");
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    // The run stops at its next checkpoint, or after the grace period at the latest.
    assert!(
        took < llorch_diff::staging::GRACE + Duration::from_secs(5),
        "took {took:?} to stop"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr, staging)
}

fn check_interrupted(code: i32, stderr: &str, staging: &Path, out: &Path, want: i32, name: &str) {
    assert_eq!(code, want, "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr expected: {stderr:?}");
    assert!(
        lines[0].contains("interrupted") && lines[0].contains(name),
        "{stderr:?}"
    );
    assert!(!staging.exists(), "{} was left behind", staging.display());
    assert!(
        !out.exists(),
        "{} exists after an interrupted run",
        out.display()
    );
    let parent = out.parent().unwrap();
    assert!(
        staging_in(parent).is_empty(),
        "staging folders left in {}: {:?}",
        parent.display(),
        staging_in(parent)
    );
}

#[test]
fn sigint_during_extract_removes_the_staging_folder_and_exits_130() {
    let model = common::smollm2();
    let dir = common::scratch("signals_extract_int");
    let out = dir.join("dumps");
    let prompt = long_prompt();
    let args = [
        "extract",
        model.to_str().unwrap(),
        &prompt,
        "--steps",
        "400",
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, stderr, staging) = interrupt(&args, &dir, libc::SIGINT);
    check_interrupted(code, &stderr, &staging, &out, 130, "SIGINT");
}

#[test]
fn sigterm_during_reference_removes_the_staging_folder_and_exits_143() {
    let model = common::smollm2();
    let dir = common::scratch("signals_reference_term");
    let out = dir.join("dumps");
    let prompt = long_prompt();
    let args = [
        "reference",
        model.to_str().unwrap(),
        &prompt,
        "--steps",
        "400",
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, stderr, staging) = interrupt(&args, &dir, libc::SIGTERM);
    check_interrupted(code, &stderr, &staging, &out, 143, "SIGTERM");
}

#[test]
fn sigterm_during_run_removes_the_output_staging_folder_and_exits_143() {
    let model = common::smollm2();
    let dir = common::scratch("signals_run_term");
    let out = dir.join("run");
    let report = dir.join("report.md");
    let prompt = long_prompt();
    let args = [
        "run",
        model.to_str().unwrap(),
        &prompt,
        "--steps",
        "400",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let (code, stderr, staging) = interrupt(&args, &dir, libc::SIGTERM);
    check_interrupted(code, &stderr, &staging, &out, 143, "SIGTERM");
    assert!(!report.exists());
}

/// A PID with no process: the highest free one below the kernel's limit.
fn dead_pid() -> u32 {
    (900_000..999_999)
        .rev()
        .find(|p| !Path::new("/proc").join(p.to_string()).exists())
        .expect("a free PID")
}

#[test]
fn stale_staging_folders_of_dead_processes_are_swept() {
    let model = common::smollm2();
    let dir = common::scratch("signals_sweep");
    let dead = dead_pid();
    assert!(!process_alive(dead));
    let me = std::process::id();
    assert!(process_alive(me));

    let stale = dir.join(format!(".x.partial-{dead}"));
    fs::create_dir_all(stale.join("step0")).unwrap();
    fs::write(stale.join("step0/a.bin"), b"junk").unwrap();
    // Kept: a live process's staging folder, a file with the pattern, names off the pattern.
    let live = dir.join(format!(".x.partial-{me}"));
    fs::create_dir_all(&live).unwrap();
    let file = dir.join(format!(".y.partial-{dead}"));
    fs::write(&file, b"not a folder").unwrap();
    let others = [
        dir.join(format!("x.partial-{dead}")),
        dir.join(format!(".x.partial-{dead}x")),
        dir.join(format!(".partial-{dead}")),
        dir.join(format!(".x.partial-{dead}.old")),
    ];
    for o in &others {
        fs::create_dir_all(o).unwrap();
    }

    let out = dir.join("dumps");
    let o = Command::new(common::bin())
        .args([
            "extract",
            model.to_str().unwrap(),
            "Hello",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(out.join("manifest.json").is_file());
    assert!(
        !stale.exists(),
        "the dead process's staging folder was kept"
    );
    assert!(
        stderr.contains("stale staging folder") && stderr.contains(&dead.to_string()),
        "{stderr}"
    );
    assert!(live.is_dir(), "a live process's staging folder was removed");
    assert!(file.is_file(), "a file was removed");
    for o in &others {
        assert!(
            o.is_dir(),
            "{} is off the pattern and was removed",
            o.display()
        );
    }
}

#[test]
fn staging_names_are_parsed_exactly() {
    assert_eq!(partial_pid(".llama.cpp.partial-123"), Some(123));
    assert_eq!(partial_pid(".a.partial-1.partial-7"), Some(7));
    for bad in [
        "llama.cpp.partial-123",
        ".partial-123",
        ".x.partial-",
        ".x.partial-12a",
        ".x.partial--1",
        ".x.partial-99999999999999999999",
    ] {
        assert_eq!(partial_pid(bad), None, "{bad}");
    }
}
