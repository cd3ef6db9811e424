//! Builds the pinned llama.cpp (ggml base + CPU backend + llama) and our extractor shim.
//!
//! The llama.cpp tree comes from the registry crate pinned in `vendor/llama-cpp-pin`
//! (version and checksum in its Cargo.lock). It is compiled once into a cache folder under
//! the target directory, keyed by the pin, the compiler and the flags, so that a change to
//! Rust code or to the shim never recompiles llama.cpp.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

const PIN_CRATE: &str = "llama-cpp-sys-2";
const PIN_VERSION: &str = "0.1.161";
/// Reported by ggml's own CMake for this tree (ggml/CMakeLists.txt).
const GGML_VERSION: &str = "0.26.0";
/// A fixed ISA keeps results (and so stored baselines) the same on every x86-64-v3 machine;
/// `-march=native` would tie them to the build machine.
const DEFAULT_MARCH: &str = "x86-64-v3";
const OPT_LEVEL: &str = "2";
/// Part of the cache key: changed whenever `build_llama` compiles differently with the same flags.
const BUILD_LAYOUT: u32 = 5;

/// llama's own code (src/: loading, tokenizer, graph building, the KV cache's bookkeeping; the
/// tensor arithmetic is all in ggml) compiles at -O1, which takes a quarter less time. It cannot
/// change a result: without -ffast-math, the one floating-point transformation GCC makes at -O2
/// and not at -O1 is contracting `a*b+c` into an FMA, and the -O2 objects of these files hold
/// no FMA instruction, except those of `HOST_WITH_FMA`, which stay at -O2. A new pin needs the
/// list checked again: compile src/ and src/models/ at -O2 and list the objects in which
/// `objdump -d` finds a `vfmadd`, `vfmsub`, `vfnmadd` or `vfnmsub`.
const HOST_OPT_LEVEL: &str = "1";
const HOST_WITH_FMA: &[&str] = &[
    "src/llama-context.cpp",
    "src/llama-graph.cpp",
    "src/llama-sampler.cpp",
    "src/models/deepseek2.cpp",
    "src/models/deepseek32.cpp",
    "src/models/deepseek4.cpp",
    "src/models/glm-dsa.cpp",
];

const GGML_C: &[&str] = &[
    "ggml/src/ggml.c",
    "ggml/src/ggml-alloc.c",
    "ggml/src/ggml-quants.c",
    "ggml/src/ggml-cpu/ggml-cpu.c",
    "ggml/src/ggml-cpu/quants.c",
    "ggml/src/ggml-cpu/arch/x86/quants.c",
];

const GGML_CPP: &[&str] = &[
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
const DEFINES: &[&str] = &[
    "GGML_USE_CPU",
    "GGML_USE_LLAMAFILE",
    "GGML_USE_CPU_REPACK",
    "_GNU_SOURCE",
    "NDEBUG",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=vendor/llama-cpp-pin/Cargo.toml");
    println!("cargo:rerun-if-changed=vendor/llama-cpp-pin/Cargo.lock");
    println!("cargo:rerun-if-env-changed=LLORCH_MARCH");
    println!("cargo:rerun-if-env-changed=LLORCH_LLAMA_CACHE");

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let llama_root = locate_pinned_source(&manifest_dir);
    // Cheap and independent of the llama.cpp cache below: regenerated on every build-script run.
    generate_tables(&llama_root, &out_dir);
    generate_unicode_tables(&llama_root, &out_dir);
    // Without the `llama` feature (the fuzz targets) neither llama.cpp nor the shim is built.
    if env::var_os("CARGO_FEATURE_LLAMA").is_none() {
        return;
    }

    let march = env::var("LLORCH_MARCH").unwrap_or_else(|_| DEFAULT_MARCH.to_string());
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let compiler_version = Command::new(compiler.path())
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let flags = format!(
        "-O{OPT_LEVEL} -march={march} {} (llama's src/ at -O{HOST_OPT_LEVEL} but for the {} files with FMA at -O{OPT_LEVEL})",
        DEFINES
            .iter()
            .map(|d| format!("-D{d}"))
            .collect::<Vec<_>>()
            .join(" "),
        HOST_WITH_FMA.len()
    );

    let mut hasher = DefaultHasher::new();
    (
        PIN_VERSION,
        BUILD_LAYOUT,
        &flags,
        &compiler_version,
        GGML_C,
        GGML_CPP,
    )
        .hash(&mut hasher);
    let key = format!("{:016x}", hasher.finish());
    let cache_root = env::var_os("LLORCH_LLAMA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir(&out_dir).join("llama-cpp"));
    let cache = cache_root.join(&key);
    let gen_include = cache.join("include");

    let stamp = cache.join("built.stamp");
    if !stamp.exists() {
        // Several builds (debug, release, other target dirs) may share one cache: the first
        // one compiles while the others wait on the lock, then find the stamp.
        fs::create_dir_all(&cache).expect("create llama.cpp cache folder");
        let lock =
            fs::File::create(cache_root.join(format!("{key}.lock"))).expect("create cache lock");
        lock.lock().expect("lock llama.cpp cache");
        if !stamp.exists() {
            build_llama(&llama_root, &cache, &gen_include, &march);
            fs::write(&stamp, &flags).expect("write build stamp");
        }
    }

    // The shim: the only C++ of ours. Rebuilt whenever csrc/ changes.
    let mut shim = cc::Build::new();
    shim.cpp(true)
        .std("c++17")
        .file("csrc/extractor.cpp")
        .include("csrc")
        .include(llama_root.join("include"))
        .include(llama_root.join("ggml/include"))
        .include(llama_root.join("ggml/src"))
        .opt_level_str(OPT_LEVEL)
        .flag(format!("-march={march}"))
        .warnings(true)
        .out_dir(out_dir.join("shim"));
    for d in DEFINES {
        shim.define(d, None);
    }
    shim.compile("llorch_shim");

    println!("cargo:rustc-link-search=native={}", cache.display());
    println!("cargo:rustc-link-lib=static=llorch_llama");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:rustc-link-lib=dylib=pthread");
    println!("cargo:rustc-link-lib=dylib=dl");
    println!("cargo:rustc-link-lib=dylib=m");

    // What every manifest records about the llama.cpp side.
    println!("cargo:rustc-env=LLORCH_LLAMA_PIN={PIN_CRATE} {PIN_VERSION} (ggml {GGML_VERSION})");
    println!("cargo:rustc-env=LLORCH_LLAMA_FLAGS={flags}");
    println!("cargo:rustc-env=LLORCH_LLAMA_COMPILER={compiler_version}");
    println!("cargo:rustc-env=LLORCH_LLAMA_ISA={march}");

    #[cfg(feature = "regen-bindings")]
    regen_bindings(&manifest_dir);
}

/// The lookup tables of the block formats (grids, sign and value tables of the I-quants,
/// MXFP4's values), read from the `GGML_TABLE_BEGIN(type, name, size) ... GGML_TABLE_END()`
/// blocks of the pinned ggml-common.h and written to `$OUT_DIR/ggml_tables.rs` as Rust statics
/// named in upper case (`iq2xxs_grid` becomes `IQ2XXS_GRID`). Float `#define`s the formats use
/// (`IQ1S_DELTA`, `IQ1M_DELTA`) come along as `f32` constants.
fn generate_tables(llama_root: &Path, out_dir: &Path) {
    let header = llama_root.join("ggml/src/ggml-common.h");
    let text =
        fs::read_to_string(&header).unwrap_or_else(|e| panic!("reading {}: {e}", header.display()));
    let mut defines = std::collections::HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define") {
            if let (Some(name), Some(value)) = (words.next(), words.next()) {
                defines.insert(name.to_string(), value.to_string());
            }
        }
    }
    let mut out = String::from(
        "// Generated by build.rs from the pinned llama.cpp's ggml/src/ggml-common.h. Do not edit.\n",
    );
    let mut seen = std::collections::HashSet::new();
    let mut rest = text.as_str();
    const BEGIN: &str = "GGML_TABLE_BEGIN(";
    const END: &str = "GGML_TABLE_END()";
    while let Some(pos) = rest.find(BEGIN) {
        let after = &rest[pos + BEGIN.len()..];
        let close = after.find(')').expect("GGML_TABLE_BEGIN(...) closed");
        let args: Vec<&str> = after[..close].split(',').map(str::trim).collect();
        let end = after
            .find(END)
            .expect("GGML_TABLE_END() after GGML_TABLE_BEGIN");
        let body = &after[close + 1..end];
        rest = &after[end + END.len()..];
        if args.len() != 3 || args[0] == "type" {
            continue; // the macro definitions themselves
        }
        let (cty, name, size) = (args[0], args[1], args[2]);
        let rty = match cty {
            "uint8_t" => "u8",
            "int8_t" => "i8",
            "uint16_t" => "u16",
            "uint32_t" => "u32",
            "uint64_t" => "u64",
            other => panic!("table {name}: element type {other} not handled"),
        };
        let mut values = Vec::new();
        for line in body.lines() {
            let code = line.split("//").next().unwrap_or("");
            for tok in code.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let (neg, mag) = match tok.strip_prefix('-') {
                    Some(m) => (true, m.trim()),
                    None => (false, tok),
                };
                let v = match mag.strip_prefix("0x").or_else(|| mag.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => mag.parse::<u64>(),
                }
                .unwrap_or_else(|e| panic!("table {name}: value '{tok}': {e}"));
                values.push(if neg {
                    format!("-{v}")
                } else {
                    format!("{v:#x}")
                });
            }
        }
        let declared: usize = size
            .parse()
            .ok()
            .or_else(|| defines.get(size).and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("table {name}: size '{size}' not a number or #define"));
        assert_eq!(values.len(), declared, "table {name}: value count");
        if !seen.insert(name.to_string()) {
            continue;
        }
        out.push_str(&format!(
            "#[allow(dead_code)]\npub(crate) static {}: [{rty}; {declared}] = [{}];\n",
            name.to_ascii_uppercase(),
            values.join(", ")
        ));
    }
    for name in ["IQ1S_DELTA", "IQ1M_DELTA"] {
        let v = defines
            .get(name)
            .unwrap_or_else(|| panic!("#define {name} not in ggml-common.h"));
        let num: f32 = v
            .trim_end_matches('f')
            .parse()
            .unwrap_or_else(|e| panic!("#define {name} {v}: {e}"));
        out.push_str(&format!(
            "#[allow(dead_code)]\npub(crate) const {name}: f32 = {num:?};\n"
        ));
    }
    fs::write(out_dir.join("ggml_tables.rs"), out).expect("write ggml_tables.rs");
}

/// The Unicode tables llama.cpp's pre-tokenizers split by, read from the pinned
/// src/unicode-data.cpp and written to `$OUT_DIR/unicode_tables.rs`: `UNICODE_RANGES_FLAGS`
/// (first code point of each range and its `unicode_cpt_flags`, ending at 0x110000) and
/// `UNICODE_WHITESPACE` (sorted).
fn generate_unicode_tables(llama_root: &Path, out_dir: &Path) {
    let source = llama_root.join("src/unicode-data.cpp");
    let text =
        fs::read_to_string(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let body = |name: &str| -> &str {
        let start = text
            .find(&format!("{name} = {{"))
            .unwrap_or_else(|| panic!("{name} not in unicode-data.cpp"));
        let rest = &text[start..];
        let open = rest.find('{').unwrap() + 1;
        let close = rest.find("\n};").unwrap_or_else(|| panic!("end of {name}"));
        &rest[open..close]
    };
    let hex = |s: &str| -> u32 {
        let s = s.trim();
        u32::from_str_radix(s.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("unicode-data.cpp value '{s}': {e}"))
    };
    let mut ranges = Vec::new();
    for entry in body("unicode_ranges_flags").split('}') {
        let Some(pair) = entry.split('{').nth(1) else {
            continue;
        };
        let (start, flags) = pair.split_once(',').expect("{start, flags}");
        ranges.push(format!("({:#x}, {:#x})", hex(start), hex(flags)));
    }
    let mut whitespace: Vec<u32> = body("unicode_set_whitespace")
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(hex)
        .collect();
    whitespace.sort_unstable();
    assert!(
        ranges.len() > 1000 && !whitespace.is_empty(),
        "unicode-data.cpp tables"
    );
    let out =
        format!(
        "// Generated by build.rs from the pinned llama.cpp's src/unicode-data.cpp. Do not edit.\n\
         pub(super) static UNICODE_RANGES_FLAGS: [(u32, u16); {}] = [{}];\n\
         pub(super) static UNICODE_WHITESPACE: [u32; {}] = [{}];\n",
        ranges.len(),
        ranges.join(", "),
        whitespace.len(),
        whitespace.iter().map(|w| format!("{w:#x}")).collect::<Vec<_>>().join(", ")
    );
    fs::write(out_dir.join("unicode_tables.rs"), out).expect("write unicode_tables.rs");
}

/// `target/` from `target/<profile>/build/<pkg>-<hash>/out`, so debug and release share the cache.
fn target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf())
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Fetches the pinned crate through Cargo (checksum-verified against vendor/llama-cpp-pin/Cargo.lock)
/// and returns its `llama.cpp/` folder.
fn locate_pinned_source(manifest_dir: &Path) -> PathBuf {
    let pin_manifest = manifest_dir.join("vendor/llama-cpp-pin/Cargo.toml");
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

fn build_llama(root: &Path, cache: &Path, gen_include: &Path, march: &str) {
    fs::create_dir_all(gen_include).expect("create cache folder");
    fs::write(
        gen_include.join("ggml-version.h"),
        format!(
            "#pragma once\n#define GGML_VERSION \"{GGML_VERSION}\"\n#define GGML_COMMIT \"{PIN_CRATE}-{PIN_VERSION}\"\n"
        ),
    )
    .unwrap();
    fs::write(
        gen_include.join("llama-version.h"),
        format!(
            "#pragma once\n#define LLAMA_VERSION \"{PIN_VERSION}\"\n#define LLAMA_COMMIT \"{PIN_CRATE}-{PIN_VERSION}\"\n"
        ),
    )
    .unwrap();

    let base = |cpp: bool, opt_level: &str| {
        let mut b = cc::Build::new();
        b.cpp(cpp)
            .include(gen_include)
            .include(root.join("include"))
            .include(root.join("ggml/include"))
            .include(root.join("ggml/src"))
            .include(root.join("ggml/src/ggml-cpu"))
            .include(root.join("src"))
            .opt_level_str(opt_level)
            .flag(format!("-march={march}"))
            // No debug information (a third of the compile time); the frame pointers that cc
            // keeps with it stay, so the code is the same instruction for instruction.
            .debug(false)
            .force_frame_pointer(true)
            .warnings(false)
            .extra_warnings(false)
            .flag_if_supported("-w")
            .cargo_metadata(false)
            .out_dir(cache);
        for d in DEFINES {
            b.define(d, None);
        }
        if cpp {
            b.std("c++17");
        } else {
            b.std("c11");
        }
        b
    };

    let with_fma = |f: &Path| HOST_WITH_FMA.iter().any(|h| f.ends_with(h));

    let c_files = largest_first(GGML_C.iter().map(|f| root.join(f)).collect());
    let mut o2_files: Vec<PathBuf> = GGML_CPP.iter().map(|f| root.join(f)).collect();
    let mut models = Vec::new();
    for f in cpp_files(&root.join("src/models")) {
        if with_fma(&f) {
            o2_files.push(f);
        } else {
            models.push(f);
        }
    }
    let mut o1_files = unity_sources(&largest_first(models), &cache.join("unity"), "models", 4);
    for f in largest_first(cpp_files(&root.join("src"))) {
        if with_fma(&f) {
            o2_files.push(f);
        } else {
            o1_files.push(f);
        }
    }
    let o2_files = largest_first(o2_files);

    // The three sets compile side by side, sharing the jobs cargo's jobserver allows, so that no
    // core waits at the end of one set for the next to begin.
    let compile = |cpp: bool, opt_level: &str, files: &[PathBuf]| {
        let mut b = base(cpp, opt_level);
        b.files(files);
        b.compile_intermediates()
    };
    let objects: Vec<PathBuf> = std::thread::scope(|s| {
        let c = s.spawn(|| compile(false, OPT_LEVEL, &c_files));
        let o1 = s.spawn(|| compile(true, HOST_OPT_LEVEL, &o1_files));
        let mut objects = compile(true, OPT_LEVEL, &o2_files);
        for job in [c, o1] {
            objects.extend(job.join().expect("compiling llama.cpp"));
        }
        objects
    });
    let _ = fs::remove_dir_all(cache.join("unity"));

    // One archive for ggml and llama: their C and C++ halves call each other.
    let mut archive = base(true, OPT_LEVEL);
    archive.objects(objects);
    archive.compile("llorch_llama");
}

/// The graph builders of src/models/ (over 150 files) are compiled as a few unity sources
/// (`count`), each including several of them: every file begins with `#include "models.h"`,
/// whose parse is three quarters of its compile time when compiled alone. (The files of src/
/// gain nothing so: their own code, not shared headers, is most of their compile time.) Files
/// that share a source must not see each other: a name a file declares at file scope (a `static` helper, a struct, ...) must
/// not occur in the others of its source, or a call there could resolve to it. A file that
/// cannot be placed so, or that defines macros or namespaces, is compiled alone (the returned
/// list holds it as it is). These files are compiled at `HOST_OPT_LEVEL`, where GCC contracts no
/// `a*b+c` into an FMA, so grouping them cannot change a floating-point result either.
fn unity_sources(files: &[PathBuf], dir: &Path, name: &str, count: usize) -> Vec<PathBuf> {
    struct Group {
        files: Vec<usize>,
        size: u64,
    }
    let parsed: Vec<(HashSet<String>, Option<HashSet<String>>, u64)> = files
        .iter()
        .map(|f| {
            let text =
                fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
            (words(&text), file_scope_names(&text), text.len() as u64)
        })
        .collect();
    let mut groups: Vec<Group> = (0..count)
        .map(|_| Group {
            files: Vec::new(),
            size: 0,
        })
        .collect();
    let mut alone = Vec::new();
    for (i, (words_i, names_i, size)) in parsed.iter().enumerate() {
        let Some(names_i) = names_i else {
            alone.push(files[i].clone());
            continue;
        };
        let apart = |g: &Group| {
            g.files.iter().all(|&j| {
                let (words_j, names_j, _) = &parsed[j];
                let names_j = names_j.as_ref().expect("grouped files have names");
                names_i.is_disjoint(words_j) && names_j.is_disjoint(words_i)
            })
        };
        match groups
            .iter_mut()
            .filter(|g| apart(g))
            .min_by_key(|g| g.size)
        {
            Some(g) => {
                g.files.push(i);
                g.size += size;
            }
            None => alone.push(files[i].clone()),
        }
    }
    fs::create_dir_all(dir).expect("create unity folder");
    let mut sources = alone;
    for (n, g) in groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.files.is_empty())
    {
        let path = dir.join(format!("llorch-{name}-{n}.cpp"));
        let text: String = g
            .files
            .iter()
            .map(|&i| format!("#include \"{}\"\n", files[i].display()))
            .collect();
        fs::write(&path, text).expect("write unity source");
        sources.push(path);
    }
    sources
}

/// The identifiers of a C++ text.
fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The names a C++ file declares at file scope, from its unindented lines: the last
/// identifier before the first `(`, `=`, `{`, `;` or lone `:`, unless `::` qualifies it (a
/// member defined out of its class). None when the file has a preprocessor definition, a
/// namespace or a using-declaration of its own, or a line this reading cannot name.
fn file_scope_names(text: &str) -> Option<HashSet<String>> {
    let mut names = HashSet::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty()
            || line.starts_with(|c: char| c.is_whitespace())
            || line.starts_with("//")
            || line.starts_with("/*")
            || line.starts_with('*')
            || line.starts_with('}')
            || line.starts_with("#include")
            || line.starts_with("#pragma once")
            || line.starts_with("template")
            || line.starts_with("[[")
            || matches!(line, "public:" | "protected:" | "private:")
        {
            continue;
        }
        if line.starts_with('#') || line.starts_with("namespace") || line.starts_with("using") {
            return None;
        }
        let bytes = line.as_bytes();
        let mut end = line.len();
        for (k, &b) in bytes.iter().enumerate() {
            let lone_colon =
                b == b':' && bytes.get(k + 1) != Some(&b':') && (k == 0 || bytes[k - 1] != b':');
            if matches!(b, b'(' | b'=' | b'{' | b';') || lone_colon {
                end = k;
                break;
            }
        }
        let head = line[..end].trim_end();
        let name_start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |k| k + 1);
        let name = &head[name_start..];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            // Such as `llama_model_x::graph<true>::graph(`, qualified all the same: only a
            // line that ends in an operator or a template argument list gets here.
            if head[..name_start].trim_end().ends_with('>') && head.contains("::") {
                continue;
            }
            return None;
        }
        if head[..name_start].ends_with("::") {
            continue;
        }
        names.insert(name.to_string());
    }
    Some(names)
}

/// Files in decreasing size: the parallel compile starts the long ones first and does not end
/// waiting on one of them.
fn largest_first(mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    files.sort_by_key(|f| std::cmp::Reverse(fs::metadata(f).map(|m| m.len()).unwrap_or(0)));
    files
}

/// The `.cpp` files of a folder, sorted.
fn cpp_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .collect();
    files.sort();
    files
}

#[cfg(feature = "regen-bindings")]
fn regen_bindings(manifest_dir: &Path) {
    let bindings = bindgen::Builder::default()
        .header(manifest_dir.join("csrc/extractor.h").to_string_lossy())
        .allowlist_function("llorch_.*")
        .allowlist_type("llorch_.*")
        .allowlist_var("LLORCH_.*")
        .layout_tests(false)
        .generate()
        .expect("bindgen on csrc/extractor.h");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("ffi.rs");
    bindings.write_to_file(&out).expect("write bindings");
    println!("cargo:rustc-env=LLORCH_REGENERATED_FFI={}", out.display());
}
