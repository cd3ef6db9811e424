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

#[test]
fn reference_bad_input() {
    let dir = common::scratch("cli_reference_bad");
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    assert_one_line_exit_2(
        &["reference", "/nonexistent/model.gguf", "Hi", "--out", o],
        "/nonexistent/model.gguf",
    );
    let text = dir.join("notes.gguf");
    std::fs::write(&text, b"this is not a model, just text\n").unwrap();
    assert_one_line_exit_2(
        &["reference", text.to_str().unwrap(), "Hi", "--out", o],
        "GGUF",
    );
    // A valid GGUF file of an architecture the reference does not implement.
    let other = dir.join("falcon.gguf");
    let mut w = llorch_diff::gguf::GgufWriter::new();
    w.add_meta(
        "general.architecture",
        llorch_diff::gguf::MetaValue::Str("falcon".into()),
    )
    .unwrap();
    w.write(&other, |_, _| Ok(())).unwrap();
    assert_one_line_exit_2(
        &["reference", other.to_str().unwrap(), "Hi", "--out", o],
        "falcon",
    );
    assert_one_line_exit_2(
        &["reference", "m.gguf", "Hi", "--out", o, "--mode", "fast"],
        "fast",
    );
    assert_one_line_exit_2(
        &[
            "reference",
            "m.gguf",
            "Hi",
            "--out",
            o,
            "--inject-fault",
            "typo",
        ],
        "typo",
    );
    assert_one_line_exit_2(
        &["reference", "m.gguf", "Hi", "--out", o, "--threads", "0"],
        "0",
    );
    assert!(!out.exists(), "no output folder on failure");
}

/// gpt2 has a learned position table (128 rows in tiny-gpt2): a longer prompt is refused before
/// llama.cpp runs (which would abort on the table lookup) by `extract` and `run` alike.
#[test]
fn prompt_beyond_learned_positions() {
    let dir = common::scratch("cli_positions");
    let model = dir.join("tiny-gpt2.gguf");
    let (code, err) = run(&[
        "make-model",
        "--preset",
        "tiny-gpt2",
        "--quant",
        "f32",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let prompt = "one two three four five six seven eight nine ten ".repeat(20);
    for cmd in ["extract", "run"] {
        let out = dir.join(format!("out-{cmd}"));
        assert_one_line_exit_2(
            &[
                cmd,
                model.to_str().unwrap(),
                &prompt,
                "--out",
                out.to_str().unwrap(),
            ],
            "exceed the model's 128 learned positions",
        );
        assert!(!out.exists(), "{cmd}: no output folder on failure");
    }
}
