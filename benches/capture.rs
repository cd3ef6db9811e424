//! The capture's cost: `extract` of the whole catalogue against `extract --filter
//! result_output` (logits only) on SmolLM2 with a ~50-token prompt and 4 decode steps, at 1
//! thread, and the whole catalogue at 2 threads against 1 thread.
//!
//! `cargo bench --bench capture` (env `CAPTURE_BENCH_RUNS`, default 5; `CAPTURE_BENCH_DIR` for
//! the output folder's parent, default `target/capture-bench`). The configurations
//! run interleaved, each into a folder of its own; the best wall time and the best CPU time
//! (user + system, every thread of the process) of each are printed, as the machine may be
//! shared.
//!
//! No folder is removed until every run is done: on an ext4 file system without a journal, a
//! new file's inode is searched past every inode of its block group freed in the last minutes,
//! so removing one run's 2720 files before the next would time the bench's own deletions. The
//! cost of creating a file where the dumps go is measured first and printed beside the ratio.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use llorch_diff::llamacpp::extract::{extract, ExtractOptions};
use llorch_diff::llamacpp::{set_verbose, KvType};

const PROMPT: &str = "The history of computing is a story of steadily shrinking machines and \
growing ambitions. Early computers filled whole rooms, yet today a phone in your pocket holds \
more power than the machines that guided the first missions to the moon. It is easy to forget \
how recent all of this is.";

/// User and system CPU time of the process so far.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime), tv(u.ru_stime))
}

/// Mean time to create (and close) one empty file in `dir`; the files stay until the end.
fn file_creation_cost(dir: &Path, n: u32) -> Duration {
    std::fs::create_dir_all(dir).expect("create the probe folder");
    let t0 = Instant::now();
    for i in 0..n {
        std::fs::File::create(dir.join(format!("{i}.bin"))).expect("create a probe file");
    }
    t0.elapsed() / n
}

struct Config {
    label: &'static str,
    threads: usize,
    filter: Option<&'static str>,
    best_wall: Duration,
    best_cpu: Duration,
    best_user: Duration,
    best_sys: Duration,
    checkpoints: usize,
}

fn run(model: &Path, out: &Path, c: &mut Config) {
    let opts = ExtractOptions {
        steps: 4,
        kv_type: KvType::F32,
        threads: c.threads,
        repack: true,
        filter: c.filter.map(|f| llorch_diff::glob::Glob::new(f).unwrap()),
    };
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let s = extract(model, PROMPT, out, &opts).expect("extract");
    let (wall, cpu1) = (t0.elapsed(), cpu_time());
    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    c.best_wall = c.best_wall.min(wall);
    c.best_cpu = c.best_cpu.min(user + sys);
    c.best_user = c.best_user.min(user);
    c.best_sys = c.best_sys.min(sys);
    c.checkpoints = s.checkpoints;
    if c.label == "logits" && c.best_wall == wall {
        eprintln!("  ({} prompt tokens + 4 steps)", s.prompt_tokens.len());
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        eprintln!("skipped: {} not found", model.display());
        return;
    }
    set_verbose(false);
    let runs: usize = std::env::var("CAPTURE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let out = std::env::var_os("CAPTURE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/capture-bench"))
        .join("dumps");
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("remove the previous bench's dumps");
    }
    std::fs::create_dir_all(&out).expect("create the bench folder");
    let per_file = file_creation_cost(&out.join("probe"), 1000);
    let mut configs = [
        ("full", 1, None),
        ("logits", 1, Some("result_output")),
        ("full-2t", 2, None),
    ]
    .map(|(label, threads, filter)| Config {
        label,
        threads,
        filter,
        best_wall: Duration::MAX,
        best_cpu: Duration::MAX,
        best_user: Duration::MAX,
        best_sys: Duration::MAX,
        checkpoints: 0,
    });
    for i in 0..runs {
        eprintln!("run {}/{runs}", i + 1);
        for c in configs.iter_mut() {
            run(&model, &out.join(format!("{}-{i}", c.label)), c);
        }
    }
    std::fs::remove_dir_all(&out).expect("remove the bench's dumps");
    let s = |d: Duration| d.as_secs_f64();
    for c in &configs {
        println!(
            "{:<8} {} thread(s), {:>4} checkpoints: best wall {:.3} s, best CPU {:.3} s \
             (best user {:.3} s, best system {:.3} s)",
            c.label,
            c.threads,
            c.checkpoints,
            s(c.best_wall),
            s(c.best_cpu),
            s(c.best_user),
            s(c.best_sys)
        );
    }
    println!(
        "creating an empty file in {}: {:.0} us (1000 files)",
        out.display(),
        per_file.as_secs_f64() * 1e6
    );
    let [full, logits, full2] = &configs;
    println!(
        "capture ratio at 1 thread (full / logits only): wall {:.2}, CPU {:.2}, user {:.2}",
        s(full.best_wall) / s(logits.best_wall),
        s(full.best_cpu) / s(logits.best_cpu),
        s(full.best_user) / s(logits.best_user)
    );
    println!(
        "full catalogue, 2 threads / 1 thread: wall {:.2} ({:.3} s vs {:.3} s)",
        s(full2.best_wall) / s(full.best_wall),
        s(full2.best_wall),
        s(full.best_wall)
    );
}
