//! Shared by the integration tests: where the real model is, and a scratch folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// SmolLM2-135M-Instruct Q4_1: `$LLORCH_SMOLLM2`, or `models/` as scripts/fetch-model.sh leaves it.
/// A missing model fails the test: it never passes without the real thing.
pub fn smollm2() -> PathBuf {
    let p = std::env::var_os("LLORCH_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.is_file(),
        "the test model {} is missing: run scripts/fetch-model.sh (or set LLORCH_SMOLLM2)",
        p.display()
    );
    p
}

/// A fresh folder under the target directory, removed first if a previous run left it.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_llorch-diff")
}

/// Every file below `dir`, by its path relative to `dir`, with its bytes.
pub fn read_tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}
