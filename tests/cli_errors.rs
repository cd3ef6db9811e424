//! Bad input gets one line on stderr and exit code 2: never a panic, an abort or a partial output.

mod common;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_exit_2(args: &[&str], needle: &str) {
    let (code, err) = run(args);
    assert_eq!(code, 2, "{args:?}: exit {code}, stderr {err:?}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: expected one line, got {err:?}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn extract_missing_model() {
    let out = common::scratch("cli_missing").join("out");
    assert_one_line_exit_2(
        &[
            "extract",
            "/nonexistent/model.gguf",
            "Hi",
            "--out",
            out.to_str().unwrap(),
        ],
        "/nonexistent/model.gguf",
    );
    assert!(!out.exists(), "no output folder on failure");
}

#[test]
fn extract_non_gguf_file() {
    let dir = common::scratch("cli_non_gguf");
    let p = dir.join("notes.gguf");
    std::fs::write(&p, b"this is not a model, just text\n").unwrap();
    let out = dir.join("out");
    assert_one_line_exit_2(
        &[
            "extract",
            p.to_str().unwrap(),
            "Hi",
            "--out",
            out.to_str().unwrap(),
        ],
        "GGUF",
    );
    assert!(!out.exists());
}

#[test]
fn bad_flags() {
    assert_one_line_exit_2(
        &["extract", "m.gguf", "Hi", "--out", "o", "--kv-type", "q9"],
        "q9",
    );
    assert_one_line_exit_2(
        &["extract", "m.gguf", "Hi", "--out", "o", "--steps", "many"],
        "many",
    );
    assert_one_line_exit_2(&["extract", "m.gguf", "Hi", "--bogus"], "--bogus");
    assert_one_line_exit_2(&["no-such-command"], "no-such-command");
}
