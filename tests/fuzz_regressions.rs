//! Inputs the fuzz targets (fuzz/, `scripts/fuzz.sh`) once crashed on, replayed through the
//! same checks (`fuzz/checks.rs`): each reader must now answer them with a typed error or a
//! correct result. Byte inputs live in `tests/data/fuzz/<target>/`; the committed seed corpus
//! `fuzz/seeds/<target>/` is replayed too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::PathBuf;

/// The system allocator, noting the largest single allocation each thread makes, so a test can
/// tell a reader that reserves what a length field announces from one that checks it first.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

#[path = "../fuzz/checks.rs"]
mod checks;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of `tests/data/fuzz/<target>/` and `fuzz/seeds/<target>/`, at least `min_saved`
/// of them from the former.
fn inputs(target: &str, min_saved: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut saved = 0;
    for (dir, is_saved) in [
        (root().join("tests/data/fuzz").join(target), true),
        (root().join("fuzz/seeds").join(target), false),
    ] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            saved += usize::from(is_saved);
            let bytes = fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    assert!(
        saved >= min_saved,
        "{target}: {saved} saved inputs, expected at least {min_saved}"
    );
    out
}

fn replay(target: &str, min_saved: usize, check: impl Fn(&[u8])) {
    let list = inputs(target, min_saved);
    assert!(!list.is_empty(), "{target}: no inputs");
    for (path, bytes) in list {
        eprintln!("{target}: {}", path.display());
        check(&bytes);
    }
}

#[test]
fn gguf_inputs() {
    replay("gguf", 0, checks::gguf);
}

#[test]
fn dump_inputs() {
    replay("dump", 0, checks::dump);
}

#[test]
fn npy_inputs() {
    replay("npy", 0, checks::npy);
}

#[test]
fn manifest_inputs() {
    replay("manifest", 0, checks::manifest);
}

#[test]
fn tolerance_inputs() {
    replay("tolerance", 0, checks::tolerance);
}

#[test]
fn tokenizer_inputs() {
    let tok = checks::smollm2_tokenizer(&root());
    replay("tokenizer", 0, |b| checks::tokenizer(&tok, b));
}

/// Found by the `npy` target: a `.npy` header announcing more bytes than the file holds made
/// ndarray-npy allocate them first (a v2 header length of 1.3 GB; a shape of 2^40 f32 elements,
/// 4 TiB, which aborts the process). Both are refused now before anything is allocated.
#[test]
fn npy_lengths_beyond_the_file_are_refused_before_allocating() {
    for (name, says) in [
        (
            "oom-header-len-1.3gb.npy",
            "the header is 1347245428 bytes long",
        ),
        (
            "oom-shape-4tib.npy",
            "needs 4398046511104 data bytes, the file has 8",
        ),
    ] {
        let path = root().join("tests/data/fuzz/npy").join(name);
        let (result, largest) =
            largest_allocation(|| llorch_diff::checkpoint::npy::read_npy(&path));
        let err = result.expect_err(name).to_string();
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            largest < 1 << 20,
            "{name}: allocated {largest} bytes at once"
        );
    }
}

/// A GGUF whose metadata count fits the file's size (14 bytes per pair at least) but not its
/// content: the reader reserved room for every announced pair (56 bytes each in memory, plus
/// the key index) before reading the first, over 100 MB for this 32 MB file, gigabytes for a
/// large one. Now the capacity grows with pairs read, and the empty first key is refused.
#[test]
fn gguf_counts_do_not_reserve_memory_before_entries_are_read() {
    let len: usize = 32 << 20;
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&((len as u64 - 24) / 14).to_le_bytes());
    bytes.resize(len, 0);
    let (result, largest) = largest_allocation(|| llorch_diff::gguf::GgufFile::from_bytes(bytes));
    let err = result.expect_err("an empty key").to_string();
    assert!(err.contains("empty key"), "{err}");
    assert!(largest < 8 << 20, "allocated {largest} bytes at once");
}
