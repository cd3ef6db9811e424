//! A folder of `.npy` files written by real numpy compares against the `.bin` folder it was made
//! from. numpy comes from the project's Python environment, `.venv` (scripts/python-env.sh makes
//! it; scripts/test.sh runs that).

mod compare_common;

use std::process::Command;

use compare_common::{manifest, pair, perturb, scratch, write_folder, Edit, Spec};
use llorch_diff::checkpoint::catalogue::CheckpointName;
use llorch_diff::checkpoint::Kind;

/// The project's Python (`.venv`), where scripts/python-env.sh installs numpy.
fn python() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3")
}

fn require_numpy() {
    let ok = Command::new(python())
        .args(["-c", "import numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs the project's Python environment with numpy: run scripts/python-env.sh \
         (scripts/test.sh does)"
    );
}

fn numpy_copy(src: &std::path::Path, dst: &std::path::Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/write_npy.py");
    let o = Command::new(python())
        .arg(script)
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "write_npy.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn compare(a: &std::path::Path, b: &std::path::Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_llorch-diff"))
        .arg("compare")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn numpy_folder_compares_with_the_bin_folder() {
    require_numpy();
    let root = scratch("npy");
    let spec = Spec::tiny();
    let (a, _) = pair(&root, &spec, "ggml");
    let npy = root.join("npy");
    numpy_copy(&a, &npy);
    let n_files = walk(&npy)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .count();
    assert_eq!(
        n_files,
        (spec.steps as usize + 1) * (4 + 18 * spec.n_layer as usize)
    );

    let (code, out) = compare(&a, &npy);
    assert_eq!(code, 0, "{out}");
    let total = n_files;
    assert!(
        out.contains(&format!("PASS: {total} checkpoints: {total} PASS")),
        "{out}"
    );
    assert!(
        out.contains("WARNING: candidate (B) has no manifest.json"),
        "{out}"
    );

    // And a difference survives the trip through numpy.
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 1 && *name == CheckpointName::layer(3, Kind::FfnSwiglu) {
                perturb(t, 0.05, "n");
            }
            Edit::Keep
        },
    );
    let npy_b = root.join("npy_b");
    numpy_copy(&b, &npy_b);
    let (code, out) = compare(&a, &npy_b);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FIRST DIVERGENCE: step 1, layer 3, blk.3.ffn_swiglu: FAIL"),
        "{out}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}
