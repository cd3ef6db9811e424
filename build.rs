//! Compiles the pinned llama.cpp (ggml base + CPU backend + llama) and our extractor shim.
//!
//! The llama.cpp tree comes from the registry crate pinned in `vendor/llama-cpp-pin`
//! (version and checksum in its Cargo.lock). It is compiled once into a cache folder under
//! the target directory, keyed by the pin, the compiler and the flags (`build/llama_pin.rs`), so
//! that a change to Rust code or to the shim never recompiles llama.cpp. The library
//! (`crates/llorch-diff-lib`) does not wait for this script: its own build script declares the two
//! archives and where they will be, and this package's binary, tests and benches, which wait for
//! this script, link them.

use std::collections::HashSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "build/llama_pin.rs"]
mod llama_pin;
use llama_pin::*;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/llama_pin.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=vendor/llama-cpp-pin/Cargo.toml");
    println!("cargo:rerun-if-changed=vendor/llama-cpp-pin/Cargo.lock");
    println!("cargo:rerun-if-env-changed=LLORCH_MARCH");
    println!("cargo:rerun-if-env-changed=LLORCH_LLAMA_CACHE");

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let llama_root = locate_pinned_source(&manifest_dir);
    let march = march();
    let flags = flags(&march);
    let cache = cache_dir(&out_dir, &flags, &compiler_version());
    let gen_include = cache.join("include");

    let stamp = cache.join("built.stamp");
    if !stamp.exists() {
        // Several builds (debug, release, other target dirs) may share one cache: the first
        // one compiles while the others wait on the lock, then find the stamp.
        fs::create_dir_all(&cache).expect("create llama.cpp cache folder");
        let key = cache.file_name().unwrap().to_string_lossy();
        let lock = fs::File::create(cache.with_file_name(format!("{key}.lock")))
            .expect("create cache lock");
        lock.lock().expect("lock llama.cpp cache");
        if !stamp.exists() {
            build_llama(&llama_root, &cache, &gen_include, &march);
            fs::write(&stamp, &flags).expect("write build stamp");
        }
    }

    // The shim: the only C++ of ours. Rebuilt whenever csrc/ changes, here, then put beside
    // llama.cpp's archive (renamed into place, as another build may be linking it).
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
        .cargo_metadata(false)
        .out_dir(out_dir.join("shim"));
    for d in DEFINES {
        shim.define(d, None);
    }
    shim.compile("llorch_shim");
    let shim_dir = shim_dir(&cache, &manifest_dir);
    fs::create_dir_all(&shim_dir).expect("create shim folder");
    let staged = shim_dir.join(format!(".libllorch_shim.a.{}", std::process::id()));
    fs::copy(out_dir.join("shim/libllorch_shim.a"), &staged).expect("copy the shim's archive");
    fs::rename(&staged, shim_dir.join("libllorch_shim.a")).expect("place the shim's archive");

    #[cfg(feature = "regen-bindings")]
    regen_bindings(&manifest_dir);
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
