//! The reference in ggml mode against llama.cpp at growing prompt lengths: compute against
//! compute (both sides dump only `blk.*.l_out`, so writing dumps does not hide it), two threads,
//! each side its own process, best of three runs, and each side's peak resident memory.
//!
//! `cargo bench --bench speed` prints one row per prompt length (about 125, 500 and 1250 tokens):
//! llama.cpp s, reference s, their ratio, and the peak RSS of each process. The prompt is one
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

/// Runs the binary with `args`; wall time in seconds and peak RSS in MiB (if measurable).
fn timed(bin: &Path, args: &[&str]) -> (f64, Option<f64>) {
    let time = Path::new("/usr/bin/time");
    let report = std::env::temp_dir().join(format!("llorch-speed-{}.time", std::process::id()));
    let mut cmd = if time.is_file() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&report).arg(bin);
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
    let rss = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| s.lines().last()?.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0);
    let _ = std::fs::remove_file(&report);
    (secs, rss)
}

fn max_mib(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn mib(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |m| format!("{m:.0}"))
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
        "{:>7} {:>13} {:>13} {:>6} {:>14} {:>14}",
        "tokens", "llama.cpp s", "reference s", "ratio", "llama.cpp MiB", "reference MiB"
    );
    let filter = "blk.*.l_out";
    for target in targets {
        let (prompt, n) = prompt_of(&tok, target);
        let (mut best_x, mut best_r) = (f64::INFINITY, f64::INFINITY);
        let (mut rss_x, mut rss_r) = (None::<f64>, None::<f64>);
        for _ in 0..runs {
            let (s, m) = timed(
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
            best_x = best_x.min(s);
            rss_x = max_mib(rss_x, m);
            let (s, m) = timed(
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
            best_r = best_r.min(s);
            rss_r = max_mib(rss_r, m);
        }
        println!(
            "{n:>7} {best_x:>13.2} {best_r:>13.2} {:>6.2} {:>14} {:>14}",
            best_r / best_x,
            mib(rss_x),
            mib(rss_r)
        );
    }
    let size = std::fs::metadata(&model).map_or(0, |m| m.len());
    println!(
        "model file {:.0} MiB (mapped; the reference streams its weights from the mapping)",
        size as f64 / (1 << 20) as f64
    );
}
