//! What both build scripts must agree on about the pinned llama.cpp: where its source is, the
//! flags it is compiled with, and the cache folder the compiled archives go to. The package's own
//! `build.rs` compiles llama.cpp and the shim into that folder; the library's build script
//! (`crates/llorch-diff-lib/build.rs`) generates the tables read from the same source and
//! declares the archives to the linker without waiting for them, so that the library compiles
//! while llama.cpp does.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PIN_CRATE: &str = "llama-cpp-sys-2";
pub const PIN_VERSION: &str = "0.1.161";
/// Reported by ggml's own CMake for this tree (ggml/CMakeLists.txt).
pub const GGML_VERSION: &str = "0.26.0";
/// A fixed ISA keeps results (and so stored baselines) the same on every x86-64-v3 machine;
/// `-march=native` would tie them to the build machine.
pub const DEFAULT_MARCH: &str = "x86-64-v3";
pub const OPT_LEVEL: &str = "2";
/// Part of the cache key: changed whenever `build_llama` compiles differently with the same flags.
pub const BUILD_LAYOUT: u32 = 5;

/// llama's own code (src/: loading, tokenizer, graph building, the KV cache's bookkeeping; the
/// tensor arithmetic is all in ggml) compiles at -O1, which takes a quarter less time. It cannot
/// change a result: without -ffast-math, the one floating-point transformation GCC makes at -O2
/// and not at -O1 is contracting `a*b+c` into an FMA, and the -O2 objects of these files hold
/// no FMA instruction, except those of `HOST_WITH_FMA`, which stay at -O2. A new pin needs the
/// list checked again: compile src/ and src/models/ at -O2 and list the objects in which
/// `objdump -d` finds a `vfmadd`, `vfmsub`, `vfnmadd` or `vfnmsub`.
pub const HOST_OPT_LEVEL: &str = "1";
pub const HOST_WITH_FMA: &[&str] = &[
    "src/llama-context.cpp",
    "src/llama-graph.cpp",
    "src/llama-sampler.cpp",
    "src/models/deepseek2.cpp",
    "src/models/deepseek32.cpp",
    "src/models/deepseek4.cpp",
    "src/models/glm-dsa.cpp",
];

pub const GGML_C: &[&str] = &[
    "ggml/src/ggml.c",
    "ggml/src/ggml-alloc.c",
    "ggml/src/ggml-quants.c",
    "ggml/src/ggml-cpu/ggml-cpu.c",
    "ggml/src/ggml-cpu/quants.c",
    "ggml/src/ggml-cpu/arch/x86/quants.c",
];

pub const GGML_CPP: &[&str] = &[
    "ggml/src/ggml.cpp",
    "ggml/src/ggml-backend.cpp",
    "ggml/src/ggml-backend-reg.cpp",
    "ggml/src/ggml-backend-dl.cpp",
    "ggml/src/ggml-backend-meta.cpp",
    "ggml/src/ggml-opt.cpp",
    "ggml/src/ggml-threading.cpp",
    "ggml/src/gguf.cpp",
    "ggml/src/ggml-cpu/ggml-cpu.cpp",
    "ggml/src/ggml-cpu/ops.cpp",
    "ggml/src/ggml-cpu/vec.cpp",
    "ggml/src/ggml-cpu/binary-ops.cpp",
    "ggml/src/ggml-cpu/unary-ops.cpp",
    "ggml/src/ggml-cpu/repack.cpp",
    "ggml/src/ggml-cpu/traits.cpp",
    "ggml/src/ggml-cpu/hbm.cpp",
    "ggml/src/ggml-cpu/tiled/tiled.cpp",
    "ggml/src/ggml-cpu/tiled/tiled-kernel.cpp",
    "ggml/src/ggml-cpu/arch/x86/repack.cpp",
    "ggml/src/ggml-cpu/llamafile/sgemm.cpp",
];

/// What llama.cpp's own CMake defines for the CPU backend by default (`GGML_LLAMAFILE` and
/// `GGML_CPU_REPACK` are ON there). Repacking is compiled in; whether a run uses it is a
/// runtime choice of the shim (`use_extra_bufts`), recorded in every manifest.
pub const DEFINES: &[&str] = &[
    "GGML_USE_CPU",
    "GGML_USE_LLAMAFILE",
    "GGML_USE_CPU_REPACK",
    "_GNU_SOURCE",
    "NDEBUG",
];

/// `target/` from `target/<profile>/build/<pkg>-<hash>/out`, so debug and release share the cache.
pub fn target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf())
}

pub fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Fetches the pinned crate through Cargo (checksum-verified against vendor/llama-cpp-pin/Cargo.lock)
/// and returns its `llama.cpp/` folder.
pub fn locate_pinned_source(repo_root: &Path) -> PathBuf {
    let pin_manifest = repo_root.join("vendor/llama-cpp-pin/Cargo.toml");
    let status = Command::new(cargo())
        .args(["fetch", "--locked", "--manifest-path"])
        .arg(&pin_manifest)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run cargo fetch for the llama.cpp pin");
    assert!(
        status.success(),
        "cargo fetch of {PIN_CRATE} {PIN_VERSION} failed"
    );
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&pin_manifest)
        .output()
        .expect("run cargo metadata for the llama.cpp pin");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 metadata");
    // Find the manifest_path of the pinned package without pulling a JSON parser into the build.
    let needle = format!("\"name\":\"{PIN_CRATE}\",\"version\":\"{PIN_VERSION}\"");
    let start = text
        .find(&needle)
        .unwrap_or_else(|| panic!("{PIN_CRATE} {PIN_VERSION} not in cargo metadata"));
    let rest = &text[start..];
    let key = "\"manifest_path\":\"";
    let mp = rest.find(key).expect("manifest_path in metadata") + key.len();
    let end = rest[mp..].find('"').expect("end of manifest_path");
    let manifest_path = PathBuf::from(&rest[mp..mp + end]);
    let root = manifest_path.parent().unwrap().join("llama.cpp");
    assert!(
        root.join("include/llama.h").exists(),
        "no llama.cpp tree at {}",
        root.display()
    );
    root
}

/// The ISA llama.cpp and the shim are compiled for (`LLORCH_MARCH`, default x86-64-v3).
pub fn march() -> String {
    env::var("LLORCH_MARCH").unwrap_or_else(|_| DEFAULT_MARCH.to_string())
}

/// The first line of the C++ compiler's `--version` (the compiler cc picks).
pub fn compiler_version() -> String {
    let compiler = cc::Build::new().cpp(true).get_compiler();
    Command::new(compiler.path())
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// The flags every manifest records.
pub fn flags(march: &str) -> String {
    format!(
        "-O{OPT_LEVEL} -march={march} {} (llama's src/ at -O{HOST_OPT_LEVEL} but for the {} files with FMA at -O{OPT_LEVEL})",
        DEFINES
            .iter()
            .map(|d| format!("-D{d}"))
            .collect::<Vec<_>>()
            .join(" "),
        HOST_WITH_FMA.len()
    )
}

/// The cache folder of this pin, flags and compiler: `LLORCH_LLAMA_CACHE` or `target/llama-cpp`,
/// then a key. llama.cpp's archive is `libllorch_llama.a` there, the shim's in [`shim_dir`].
pub fn cache_dir(out_dir: &Path, flags: &str, compiler_version: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    (
        PIN_VERSION,
        BUILD_LAYOUT,
        flags,
        compiler_version,
        GGML_C,
        GGML_CPP,
    )
        .hash(&mut hasher);
    let key = format!("{:016x}", hasher.finish());
    cache_root(out_dir).join(key)
}

/// Where the caches of every key live.
pub fn cache_root(out_dir: &Path) -> PathBuf {
    env::var_os("LLORCH_LLAMA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir(out_dir).join("llama-cpp"))
}

/// The shim's folder in `cache`, keyed by the content of `csrc/`: two checkouts that share a
/// cache (`LLORCH_LLAMA_CACHE`) with different shims never link each other's.
pub fn shim_dir(cache: &Path, repo_root: &Path) -> PathBuf {
    let csrc = repo_root.join("csrc");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&csrc)
        .unwrap_or_else(|e| panic!("reading {}: {e}", csrc.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut hasher = DefaultHasher::new();
    for f in &files {
        f.file_name().hash(&mut hasher);
        std::fs::read(f)
            .unwrap_or_else(|e| panic!("reading {}: {e}", f.display()))
            .hash(&mut hasher);
    }
    cache.join(format!("shim-{:016x}", hasher.finish()))
}
