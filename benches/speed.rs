//! The reference in ggml mode against llama.cpp at growing prompt lengths: compute against
//! compute (both sides dump only `blk.*.l_out`, so writing dumps does not hide it), two threads,
//! each side its own process, best of three runs, and each side's peak resident memory.
//!
//! `cargo bench --bench speed` prints one row per prompt length (about 125, 500 and 1250 tokens):
//! llama.cpp s, reference s (wall, best of the runs), their ratio, each side's CPU time (user +
//! system, best of the runs; llama.cpp's threads spin while they wait, so on a busy machine its
//! wall time suffers more than the reference's) and the peak RSS of each process. The prompt is one
//! English sentence repeated. Settings: `LLORCH_BENCH_MODEL` (default
//! models/SmolLM2-135M-Instruct.Q4_1.gguf), `LLORCH_SPEED_TOKENS` (comma-separated, default
//! `125,500,1250`), `LLORCH_SPEED_RUNS` (default 3), `LLORCH_SPEED_THREADS` (default 2).
//! Peak memory comes from `/usr/bin/time`; without it the column shows `-`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use llorch_diff::gguf::GgufFile;
use llorch_diff::tokenizer::Tokenizer;

const SENTENCE: &str =
    "The old lighthouse keeper climbed the spiral stairs every evening to light \
the lamp that guided the fishing boats home across the dark and restless sea. ";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sentence repeated until the prompt has about `target` tokens; the prompt and its count.
fn prompt_of(tok: &Tokenizer, target: usize) -> (String, usize) {
    let mut prompt = String::new();
    let mut n = 0;
    while n < target {
        let next = format!("{prompt}{SENTENCE}");
        let m = tok.encode(next.trim_end()).map_or(0, |t| t.len());
        if m > target && target - n < m - target {
            break;
        }
        (prompt, n) = (next, m);
    }
    let prompt = prompt.trim_end().to_string();
    let n = tok.encode(&prompt).map_or(0, |t| t.len());
    (prompt, n)
}

/// One run of a side: wall time, and where `/usr/bin/time` measured them, the CPU time (user +
/// system, s) and the peak RSS (MiB).
struct Sample {
    wall: f64,
    cpu: Option<f64>,
    rss: Option<f64>,
}

/// Runs the binary with `args`.
fn timed(bin: &Path, args: &[&str]) -> Sample {
    let time = Path::new("/usr/bin/time");
    let report = std::env::temp_dir().join(format!("llorch-speed-{}.time", std::process::id()));
    let mut cmd = if time.is_file() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M %U %S").arg("-o").arg(&report).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args);
    let start = Instant::now();
    let out = cmd.output().expect("run llorch-diff");
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        panic!("llorch-diff {} failed", args[0]);
    }
    let fields: Vec<f64> = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| {
            s.lines()
                .last()?
                .split_whitespace()
                .map(|f| f.parse::<f64>().ok())
                .collect()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let (rss, cpu) = match fields[..] {
        [kb, user, sys] => (Some(kb / 1024.0), Some(user + sys)),
        _ => (None, None),
    };
    Sample {
        wall: secs,
        cpu,
        rss,
    }
}

/// The best (smallest) of two optional figures.
fn min_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_mib(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn show(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |m| format!("{m:.digits$}"))
}

fn main() {
    let model = std::env::var_os("LLORCH_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !model.is_file() {
        eprintln!(
            "error: {} is missing: run scripts/fetch-model.sh or set LLORCH_BENCH_MODEL",
            model.display()
        );
        std::process::exit(2);
    }
    let targets: Vec<usize> = std::env::var("LLORCH_SPEED_TOKENS")
        .unwrap_or_else(|_| "125,500,1250".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = env_or("LLORCH_SPEED_RUNS", 3);
    let threads: usize = env_or("LLORCH_SPEED_THREADS", 2);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_llorch-diff"));
    let file = GgufFile::open(&model).expect("open the model");
    let tok = Tokenizer::from_gguf(&file).expect("the model's tokenizer");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-speed");
    let (x, r) = (dir.join("llama.cpp"), dir.join("reference"));
    let (xs, rs, ts) = (
        x.to_string_lossy().to_string(),
        r.to_string_lossy().to_string(),
        threads.to_string(),
    );
    let ms = model.to_string_lossy().to_string();
    println!(
        "model {}, filter blk.*.l_out, {threads} threads, best of {runs}",
        model.display()
    );
    println!(
        "{:>7} {:>12} {:>12} {:>6} {:>10} {:>10} {:>14} {:>14}",
        "tokens",
        "llama.cpp s",
        "reference s",
        "ratio",
        "l.cpp cpu",
        "ref cpu",
        "llama.cpp MiB",
        "reference MiB"
    );
    let filter = "blk.*.l_out";
    for target in targets {
        let (prompt, n) = prompt_of(&tok, target);
        let (mut best_x, mut best_r) = (f64::INFINITY, f64::INFINITY);
        let (mut rss_x, mut rss_r) = (None::<f64>, None::<f64>);
        let (mut cpu_x, mut cpu_r) = (None::<f64>, None::<f64>);
        for _ in 0..runs {
            let x = timed(
                &bin,
                &[
                    "extract",
                    &ms,
                    &prompt,
                    "--out",
                    &xs,
                    "--filter",
                    filter,
                    "--threads",
                    &ts,
                ],
            );
            best_x = best_x.min(x.wall);
            cpu_x = min_of(cpu_x, x.cpu);
            rss_x = max_mib(rss_x, x.rss);
            let r = timed(
                &bin,
                &[
                    "reference",
                    &ms,
                    &prompt,
                    "--out",
                    &rs,
                    "--filter",
                    filter,
                    "--threads",
                    &ts,
                    "--follow",
                    &xs,
                ],
            );
            best_r = best_r.min(r.wall);
            cpu_r = min_of(cpu_r, r.cpu);
            rss_r = max_mib(rss_r, r.rss);
        }
        println!(
            "{n:>7} {best_x:>12.2} {best_r:>12.2} {:>6.2} {:>10} {:>10} {:>14} {:>14}",
            best_r / best_x,
            show(cpu_x, 2),
            show(cpu_r, 2),
            show(rss_x, 0),
            show(rss_r, 0)
        );
    }
    let size = std::fs::metadata(&model).map_or(0, |m| m.len());
    println!(
        "model file {:.0} MiB (mapped; the reference streams its weights from the mapping)",
        size as f64 / (1 << 20) as f64
    );
}
