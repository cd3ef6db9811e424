//! The writers for other engines — the `llorch-dump` crate and `python/llorch_dump.py` — against
//! the tool's own reader: what they write reads back with the same names, shapes and bits, the
//! manifest is the tool's, and nothing is left behind by a writer that does not finish.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use llorch_diff::checkpoint::DumpFolder;

/// Values with every kind of bit pattern a dump may carry.
fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i % 7 {
            0 => -0.0,
            1 => f32::MIN_POSITIVE / 3.0,
            2 => 1e30,
            _ => (i as f32).sin() * 1e-3,
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<(u32, String, Vec<usize>, Vec<u32>)> {
    let folder = DumpFolder::open(dir).unwrap();
    folder
        .entries
        .iter()
        .map(|e| {
            let t = folder.load(e).unwrap();
            (
                e.id.step,
                e.id.name.to_string(),
                t.shape.clone(),
                t.data.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

fn only_entry(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn rust_writer_round_trips_through_the_reader() {
    let dir = common::scratch("dump_writer_rust");
    let target = dir.join("engine");
    let mut w = llorch_dump::Writer::create(&target, "my-engine").unwrap();
    w.set_prompt_tokens(&[1, 2, 3]);
    w.set_generated_tokens(&[7]);
    w.set_kv_type("f16");
    let a = values(3 * 8);
    w.put(0, "blk.0.attn_norm", &[3, 8], &a).unwrap();
    let arr = ndarray::Array2::from_shape_vec((1, 8), values(8)).unwrap();
    w.put_array(1, "blk.0.l_out", &arr.view()).unwrap();
    w.put(1, "result_output", &[1, 4], &values(4)).unwrap();
    w.finish().unwrap();
    assert_eq!(only_entry(&dir), vec![target.clone()], "no staging left");

    let folder = DumpFolder::open(&target).unwrap();
    let m = folder.manifest.as_ref().unwrap();
    assert_eq!(m.producer, "my-engine");
    assert_eq!(m.prompt_tokens, vec![1, 2, 3]);
    assert_eq!(m.generated_tokens, vec![7]);
    assert_eq!(m.kv_type, "f16");
    let got = entries(&target);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1, "blk.0.attn_norm");
    assert_eq!(got[0].2, vec![3, 8]);
    assert_eq!(got[0].3, a.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    assert_eq!((got[1].0, got[1].1.as_str()), (1, "blk.0.l_out"));
}

#[test]
fn rust_writer_leaves_nothing_when_not_finished() {
    let dir = common::scratch("dump_writer_rust_drop");
    {
        let mut w = llorch_dump::Writer::create(dir.join("engine"), "e").unwrap();
        w.put(0, "blk.0.l_out", &[1, 2], &[1.0, 2.0]).unwrap();
    }
    assert!(only_entry(&dir).is_empty());
}

/// The project's Python (`.venv`, made by scripts/python-env.sh).
fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3")
}

fn run_python(script: &str) {
    let o = Command::new(python())
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
        )
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/python-env.sh", python().display()));
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn python_writer_round_trips_and_agrees_with_the_rust_writer() {
    let dir = common::scratch("dump_writer_python");
    let py = dir.join("py");
    run_python(&format!(
        r#"
import numpy as np, llorch_dump
vals = lambda n: np.array([-0.0 if i % 7 == 0 else (np.float32(np.finfo(np.float32).tiny) / 3 if i % 7 == 1 else (1e30 if i % 7 == 2 else np.sin(np.float32(i)) * np.float32(1e-3))) for i in range(n)], dtype=np.float32)
with llorch_dump.Writer({py:?}, "py-engine") as w:
    w.prompt_tokens = [1, 2, 3]
    w.put(0, "blk.0.attn_norm", vals(24).reshape(3, 8))
    w.put(1, "result_output", vals(4).reshape(1, 4))
    w.finish()
"#,
        py = py.to_str().unwrap()
    ));
    let rs = dir.join("rs");
    let mut w = llorch_dump::Writer::create(&rs, "py-engine").unwrap();
    w.set_prompt_tokens(&[1, 2, 3]);
    w.put(0, "blk.0.attn_norm", &[3, 8], &values(24)).unwrap();
    w.put(1, "result_output", &[1, 4], &values(4)).unwrap();
    w.finish().unwrap();

    let (p, r) = (entries(&py), entries(&rs));
    assert_eq!(p.len(), 2);
    // Same names, shapes and shapes' bits, except where numpy's sin rounds otherwise.
    for (a, b) in p.iter().zip(&r) {
        assert_eq!((a.0, &a.1, &a.2), (b.0, &b.1, &b.2));
        assert_eq!(a.3.len(), b.3.len());
        for (i, (x, y)) in a.3.iter().zip(&b.3).enumerate() {
            if i % 7 < 3 {
                assert_eq!(x, y, "{} element {i}", a.1);
            } else {
                assert!((f32::from_bits(*x) - f32::from_bits(*y)).abs() < 1e-9);
            }
        }
    }
    let m = DumpFolder::open(&py).unwrap().manifest.unwrap();
    assert_eq!(m.producer, "py-engine");
    assert_eq!(m.prompt_tokens, vec![1, 2, 3]);
    assert_eq!(m.steps, 1);
    assert_eq!(only_entry(&dir).len(), 2, "no staging left");
}

#[test]
fn python_writer_leaves_nothing_when_not_finished_and_refuses_bad_names() {
    let dir = common::scratch("dump_writer_python_abort");
    run_python(&format!(
        r#"
import numpy as np, llorch_dump
with llorch_dump.Writer({t:?}, "e") as w:
    w.put(0, "blk.0.l_out", np.zeros((1, 2)))
    try:
        w.put(0, "../escape", np.zeros(1))
        raise SystemExit("a bad name was accepted")
    except ValueError:
        pass
"#,
        t = dir.join("engine").to_str().unwrap()
    ));
    assert!(only_entry(&dir).is_empty());
}

/// An engine that dumps only some checkpoints: without `--only-dumped` the others are MISSING
/// and the run fails; with it, what the engine dumps is judged (and a real difference there
/// still fails).
#[test]
fn a_partial_engine_is_judged_on_what_it_dumps() {
    let dir = common::scratch("dump_writer_partial");
    let write = |name: &str, kinds: &[&str], bump: f32| {
        let mut w = llorch_dump::Writer::create(dir.join(name), name).unwrap();
        w.set_prompt_tokens(&[1, 2]);
        for l in 0..2 {
            for k in kinds {
                // Ordinary activations (no extreme values), so that a bump is a real error.
                let mut v: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
                v[3] += bump;
                w.put(0, &format!("blk.{l}.{k}"), &[2, 8], &v).unwrap();
            }
        }
        w.finish().unwrap();
    };
    write("full", &["attn_norm", "ffn_inp", "l_out"], 0.0);
    write("partial", &["l_out"], 0.0);
    write("wrong", &["l_out"], 1.0);
    let compare = |b: &str, only: bool| {
        let mut c = Command::new(common::bin());
        c.arg("compare").arg(dir.join("full")).arg(dir.join(b));
        if only {
            c.arg("--only-dumped");
        }
        c.output().unwrap().status.code()
    };
    assert_eq!(compare("partial", false), Some(1));
    assert_eq!(compare("partial", true), Some(0));
    assert_eq!(compare("wrong", true), Some(1));
}
