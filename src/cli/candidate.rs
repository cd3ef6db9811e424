//! `llorch-diff run MODEL PROMPT --candidate "CMD"`: another engine as the candidate.
//!
//! llama.cpp runs first (its prompt token ids and generated tokens become the candidate's
//! inputs), then the Rust reference in the mode closest to the candidate's arithmetic
//! (`--candidate-mode`, unless `--no-reference`), then the candidate command. The candidate's
//! dump folder is judged twice: against llama.cpp at the `independent` tolerances, and against
//! the reference at `independent-exact` or `independent-ggml`. A candidate that cannot be
//! judged (it crashed, timed out, exited non-zero, or wrote no folder or a broken one) is an
//! error: one line naming the problem, exit code 2, never a pass.
//!
//! The command line is run by `sh -c` after each placeholder is replaced by its value, quoted
//! for the shell (single quotes), so values with spaces stay one word:
//!
//! | placeholder       | value                                                              |
//! |-------------------|--------------------------------------------------------------------|
//! | `{model}`         | the GGUF file (a preset is written into the output folder first)   |
//! | `{out}`           | the dump folder the candidate must write (it must not exist yet)   |
//! | `{prompt_tokens}` | llama.cpp's prompt token ids, comma-separated                      |
//! | `{tokens}`        | llama.cpp's generated tokens, comma-separated; decode step k (1-based) evaluates the k-th |
//! | `{steps}`         | the number of decode steps after the prompt                        |
//! | `{prompt}`        | the prompt text                                                    |
//! | `{kv_type}`       | llama.cpp's KV cache type (`f32`, `f16`, `bf16`; `--kv-type`)      |
//!
//! The same values are in the environment as `LLORCH_MODEL`, `LLORCH_OUT`,
//! `LLORCH_PROMPT_TOKENS`, `LLORCH_TOKENS`, `LLORCH_STEPS`, `LLORCH_PROMPT` and `LLORCH_KV_TYPE`. `{{` and `}}`
//! stand for literal braces; a shell's `${VAR}` is left alone.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::glob::Glob;
use anyhow::Context;

use super::compare::{step_summary, tolerances};
use super::pipeline::{produce, ModelSource, Staged, LLAMA_CPP, REFERENCE};
use super::run::Args as RunArgs;
use super::Outcome;
use crate::checkpoint::format::write_atomic;
use crate::checkpoint::DumpFolder;
use crate::compare::{compare_folders, Comparison, Tolerances};
use crate::llamacpp::extract::{extract, ExtractOptions};
use crate::reference::Mode;
use crate::report;

/// The candidate's dump folder inside a run's output folder.
pub const CANDIDATE: &str = "candidate";

/// Tolerance set of the candidate against llama.cpp.
pub const INDEPENDENT: &str = "independent";

/// Default `--candidate-timeout`, seconds: a CPU engine on SmolLM2 with a few steps takes
/// seconds; a 7B-shaped model on two cores takes minutes.
pub const DEFAULT_TIMEOUT_SECS: f64 = 600.0;

/// Lines of the candidate's stderr shown when it fails.
const STDERR_TAIL_LINES: usize = 20;

/// The manifest's `producer_detail` key listing, comma-separated, the checkpoint globs an
/// engine claims to produce (e.g. `blk.*.l_out,result_output`). When present, every checkpoint
/// of llama.cpp's folder that matches is judged, and one the candidate did not dump is MISSING;
/// when absent, only what the candidate dumped is judged (`--only-dumped`).
pub const CLAIMS_KEY: &str = "checkpoints";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CandidateMode {
    /// An f32 engine (weights dequantized, activations kept in f32): judged against the
    /// reference in exact mode.
    Exact,
    /// An engine that quantizes activations like ggml (Q8_0/Q8_1/Q8_K before a quantized
    /// matmul): judged against the reference in ggml mode.
    Ggml,
}

impl CandidateMode {
    fn reference_mode(self) -> Mode {
        match self {
            CandidateMode::Exact => Mode::Exact,
            CandidateMode::Ggml => Mode::Ggml,
        }
    }

    /// The tolerance set of the candidate against the reference in that mode.
    pub fn tolerance_set(self) -> &'static str {
        match self {
            CandidateMode::Exact => "independent-exact",
            CandidateMode::Ggml => "independent-ggml",
        }
    }

    fn name(self) -> &'static str {
        match self {
            CandidateMode::Exact => "exact",
            CandidateMode::Ggml => "ggml",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CandidateArgs {
    /// Run this engine as the candidate, through `sh -c`, after replacing the placeholders
    /// {model} {out} {prompt_tokens} {tokens} {steps} {prompt} {kv_type} (each quoted for the
    /// shell);
    /// judged against llama.cpp (--tolerances, default `independent`) and the reference.
    #[arg(long, value_name = "CMD")]
    pub candidate: Option<String>,
    /// Seconds the candidate may run before its process group is killed.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS, requires = "candidate")]
    pub candidate_timeout: f64,
    /// The candidate's arithmetic, which picks the reference mode it is judged against:
    /// `exact` for an f32 engine, `ggml` for one that quantizes activations like ggml.
    #[arg(long, value_enum, default_value_t = CandidateMode::Exact, requires = "candidate")]
    pub candidate_mode: CandidateMode,
    /// Judge the candidate against llama.cpp only (the reference does not run).
    #[arg(long, requires = "candidate")]
    pub no_reference: bool,
}

/// The values the placeholders stand for.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub model: PathBuf,
    pub out: PathBuf,
    pub prompt_tokens: Vec<i32>,
    pub tokens: Vec<i32>,
    pub steps: u32,
    pub prompt: String,
    pub kv_type: String,
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Inputs {
    fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "model" => self.model.display().to_string(),
            "out" => self.out.display().to_string(),
            "prompt_tokens" => join(&self.prompt_tokens),
            "tokens" => join(&self.tokens),
            "steps" => self.steps.to_string(),
            "prompt" => self.prompt.clone(),
            "kv_type" => self.kv_type.clone(),
            _ => return None,
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        PLACEHOLDERS
            .iter()
            .map(|p| {
                (
                    format!("LLORCH_{}", p.to_ascii_uppercase()),
                    self.value(p).unwrap_or_default(),
                )
            })
            .collect()
    }
}

pub const PLACEHOLDERS: [&str; 7] = [
    "model",
    "out",
    "prompt_tokens",
    "tokens",
    "steps",
    "prompt",
    "kv_type",
];

/// Single-quotes `s` for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Replaces the placeholders of `cmd` by their quoted values (`inputs = None` only checks the
/// names). `{name}` with `name` of lowercase letters and `_` is a placeholder, unknown ones an
/// error; `{{`/`}}` are literal braces; `${...}` is the shell's.
pub fn substitute(cmd: &str, inputs: Option<&Inputs>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(cmd.len());
    let b = cmd.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' && b.get(i + 1) == Some(&b'{') {
            out.push('{');
            i += 2;
            continue;
        }
        if c == b'}' && b.get(i + 1) == Some(&b'}') {
            out.push('}');
            i += 2;
            continue;
        }
        if c == b'{' && (i == 0 || b[i - 1] != b'$') {
            if let Some(len) = cmd[i + 1..].find('}') {
                let name = &cmd[i + 1..i + 1 + len];
                if !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c == b'_') {
                    anyhow::ensure!(
                        PLACEHOLDERS.contains(&name),
                        "--candidate: unknown placeholder {{{name}}}; known: {}",
                        PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    if let Some(inp) = inputs {
                        out.push_str(&shell_quote(&inp.value(name).unwrap_or_default()));
                    }
                    i += len + 2;
                    continue;
                }
            }
        }
        // Copy one UTF-8 character.
        let ch = cmd[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    Ok(out)
}

/// How a finished candidate process ended.
#[derive(Debug)]
pub enum Ending {
    Exited(ExitStatus),
    TimedOut,
}

/// What running the candidate gave: how it ended, how long it took and its stderr's tail.
#[derive(Debug)]
pub struct Ran {
    pub ending: Ending,
    pub secs: f64,
    pub stderr_tail: Vec<String>,
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    format!("signal {sig} ({name})")
}

/// Kills the process group `pgid` (ignoring a group that is already gone).
fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Runs `line` through `sh -c` in its own process group, with `env` added; its stdout goes to
/// our stderr, its stderr is both shown and kept (the tail). After `timeout` the group gets
/// SIGTERM, then SIGKILL 2 s later. A SIGINT/SIGTERM to llorch-diff kills the group too.
pub fn run_command(line: &str, env: &[(String, String)], timeout: Duration) -> anyhow::Result<Ran> {
    let started = Instant::now();
    let stdout = std::io::stderr()
        .lock()
        .flush()
        .ok()
        .and_then(|_| {
            use std::os::fd::AsFd;
            std::io::stderr().as_fd().try_clone_to_owned().ok()
        })
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("--candidate: starting sh")?;
    let pgid = child.id() as i32;
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        // Keeps the last 64 KiB, echoing every line to our stderr.
        const KEEP: usize = 64 * 1024;
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut err = std::io::stderr();
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = err.write_all(&buf[..n]);
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * KEEP {
                kept.drain(..kept.len() - KEEP);
            }
        }
        let _ = tx.send(kept);
    });
    let mut termed_at: Option<Instant> = None;
    let ending = loop {
        if let Some(status) = child.try_wait().context("--candidate: waiting")? {
            break Ending::Exited(status);
        }
        if crate::staging::interrupted().is_some() {
            kill_group(pgid, libc::SIGKILL);
            let _ = child.wait();
            anyhow::bail!("interrupted while the candidate ran; its process group was killed");
        }
        if started.elapsed() >= timeout {
            match termed_at {
                None => {
                    kill_group(pgid, libc::SIGTERM);
                    termed_at = Some(Instant::now());
                }
                Some(t) if t.elapsed() >= Duration::from_secs(2) => {
                    kill_group(pgid, libc::SIGKILL);
                    let _ = child.wait();
                    break Ending::TimedOut;
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ending = match (ending, termed_at) {
        (Ending::Exited(_), Some(_)) => Ending::TimedOut,
        (e, _) => e,
    };
    // Whatever the shell left behind in its group goes with it.
    kill_group(pgid, libc::SIGKILL);
    let kept = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    let text = String::from_utf8_lossy(&kept);
    let lines: Vec<&str> = text.lines().collect();
    let stderr_tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(Ran {
        ending,
        secs: started.elapsed().as_secs_f64(),
        stderr_tail,
    })
}

/// One line naming why a candidate that ran cannot be judged, or None when it exited 0.
pub fn failure(ran: &Ran, timeout: Duration) -> Option<String> {
    let status = match &ran.ending {
        Ending::TimedOut => {
            return Some(format!(
                "the candidate timed out after {:.0} s (--candidate-timeout); its process group was killed",
                timeout.as_secs_f64()
            ))
        }
        Ending::Exited(s) => s,
    };
    if let Some(sig) = status.signal() {
        return Some(format!(
            "the candidate crashed: killed by {} after {:.1} s",
            signal_name(sig),
            ran.secs
        ));
    }
    match status.code() {
        Some(0) => None,
        Some(c) if c > 128 && c < 160 => Some(format!(
            "the candidate crashed: the shell reports exit status {c}, i.e. its command was killed by {} after {:.1} s",
            signal_name(c - 128),
            ran.secs
        )),
        Some(c) => Some(format!(
            "the candidate failed: exit status {c} after {:.1} s",
            ran.secs
        )),
        None => Some("the candidate ended without an exit status".into()),
    }
}

fn print_tail(tail: &[String]) {
    if tail.is_empty() {
        eprintln!("candidate stderr: (empty)");
        return;
    }
    eprintln!("candidate stderr (last {} lines):", tail.len());
    for l in tail {
        eprintln!("  | {l}");
    }
}

/// Opens the candidate's folder and reads every checkpoint it lists, so that a missing,
/// unreadable or truncated folder is one error, not a column of ERROR verdicts.
pub fn open_candidate(dir: &Path) -> anyhow::Result<DumpFolder> {
    if !dir.exists() {
        anyhow::bail!(
            "the candidate exited 0 but wrote no dump folder at {} (its {{out}})",
            dir.display()
        );
    }
    let f = DumpFolder::open(dir)
        .map_err(|e| anyhow::anyhow!("the candidate's dump folder is broken: {e}"))?;
    anyhow::ensure!(
        !f.entries.is_empty(),
        "the candidate's dump folder {} lists no checkpoint",
        dir.display()
    );
    use rayon::prelude::*;
    f.entries
        .par_iter()
        .try_for_each(|e| f.load(e).map(|_| ()))
        .map_err(|e| anyhow::anyhow!("the candidate's dump folder is broken: {e}"))?;
    Ok(f)
}

/// Removes what a candidate left in the staging folder besides its dump folder (a writer's
/// staging sibling, say), so that the output folder holds only what `run` may replace later.
fn remove_leftovers(staging: &Path) {
    let keep = [LLAMA_CPP, REFERENCE, CANDIDATE, "model"];
    let Ok(entries) = std::fs::read_dir(staging) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if keep.iter().any(|k| name == *k) {
            continue;
        }
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

/// `expected` restricted to what the candidate is judged on: its manifest's claims (see
/// [`CLAIMS_KEY`]) or, without them, the checkpoints it dumped.
pub fn restrict(expected: &DumpFolder, candidate: &DumpFolder) -> anyhow::Result<DumpFolder> {
    let mut a = expected.clone();
    let claims = candidate
        .manifest
        .as_ref()
        .and_then(|m| m.producer_detail.get(CLAIMS_KEY).cloned());
    match claims {
        Some(list) => {
            let globs = list
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| {
                    Glob::new(g).with_context(|| format!("the candidate manifest's {CLAIMS_KEY:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            a.entries.retain(|e| {
                let name = e.id.name.to_string();
                globs.iter().any(|g| g.is_match(&name))
            });
        }
        None => {
            let dumped: HashSet<_> = candidate.entries.iter().map(|e| &e.id).collect();
            a.entries.retain(|e| dumped.contains(&e.id));
        }
    }
    anyhow::ensure!(
        !a.entries.is_empty(),
        "the candidate {} dumps none of {}'s checkpoints (names must be the catalogue's: \
         blk.N.attn_norm, result_output, ...)",
        candidate.dir.display(),
        expected.dir.display()
    );
    Ok(a)
}

/// One judged pair.
pub struct Pair {
    pub against: String,
    pub tolerance_set: String,
    pub comparison: Comparison,
}

fn first_divergence_line(c: &Comparison) -> String {
    match &c.first_divergence {
        None => "no divergence".into(),
        Some(d) => {
            let nmse = d
                .nmse
                .map(|n| format!(", NMSE {}", report::sci(n)))
                .unwrap_or_default();
            format!(
                "first divergence at step {} {} ({}{nmse}: {})",
                d.step,
                d.checkpoint,
                d.verdict.as_str(),
                d.reason
            )
        }
    }
}

/// One line per pair: verdict, counts and first divergence.
pub fn pair_line(p: &Pair) -> String {
    format!(
        "candidate vs {} [{}]: {}; {}",
        p.against,
        p.tolerance_set,
        p.comparison.headline(),
        first_divergence_line(&p.comparison)
    )
}

fn judge(
    expected: &DumpFolder,
    candidate: &DumpFolder,
    tol: &Tolerances,
    set: &str,
    against: &str,
) -> anyhow::Result<Pair> {
    let a = restrict(expected, candidate)?;
    let mut t = tol.clone();
    t.force_mode = Some(set.to_string());
    let c = compare_folders(&a, candidate, &t)?;
    Ok(Pair {
        against: against.to_string(),
        tolerance_set: set.to_string(),
        comparison: c,
    })
}

pub fn run(args: RunArgs) -> anyhow::Result<Outcome> {
    crate::llamacpp::set_verbose(false);
    let started = Instant::now();
    let cand = args.candidate.clone();
    let cmd = cand.candidate.clone().expect("called with --candidate");
    // Everything that can be checked before a file is written.
    substitute(&cmd, None)?;
    anyhow::ensure!(
        cand.candidate_timeout > 0.0 && cand.candidate_timeout.is_finite(),
        "--candidate-timeout must be a positive number of seconds"
    );
    let timeout = Duration::from_secs_f64(cand.candidate_timeout);
    let source = ModelSource::from_arg(args.model.as_deref(), args.quant.as_deref(), args.seed)?;
    source.check()?;
    let tol = tolerances(args.tolerances.as_deref(), None, None, None)?;
    let llama_set = tol.force_mode.clone().unwrap_or_else(|| INDEPENDENT.into());
    tol.gate(&llama_set, "default")?;
    let ref_set = cand.candidate_mode.tolerance_set();
    let stem = source.stem();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out/run").join(&stem));
    let report_md = args
        .report
        .clone()
        .unwrap_or_else(|| Path::new("reports").join(format!("{stem}.md")));

    let staged = Staged::create(&out)?;
    let model = source.materialize(staged.path())?;
    let mut config = args.config.clone();
    config.mode = cand.candidate_mode.reference_mode();
    let t = Instant::now();
    let (llama, reference_secs) = if cand.no_reference {
        let opts = ExtractOptions {
            steps: config.steps,
            kv_type: config.kv_type,
            threads: config.threads.unwrap_or(1) as usize,
            repack: !config.no_repack,
            filter: super::extract::parse_filter(args.filter.as_deref())?,
        };
        let s = extract(&model, &args.prompt, &staged.path().join(LLAMA_CPP), &opts)
            .context("extract")?;
        (s, None)
    } else {
        let p = produce(
            &model,
            &args.prompt,
            staged.path(),
            &config,
            args.filter.as_deref(),
            None,
        )?;
        (p.llama, Some(p.reference_secs))
    };
    let produce_secs = t.elapsed().as_secs_f64();

    let inputs = Inputs {
        model: std::path::absolute(&model).unwrap_or(model.clone()),
        out: std::path::absolute(staged.path().join(CANDIDATE))
            .unwrap_or(staged.path().join(CANDIDATE)),
        prompt_tokens: llama.prompt_tokens.clone(),
        tokens: llama.generated_tokens.clone(),
        steps: config.steps,
        prompt: args.prompt.clone(),
        kv_type: config.kv_type.as_str().to_string(),
    };
    let line = substitute(&cmd, Some(&inputs))?;
    eprintln!("candidate: sh -c {}", shell_quote(&line));
    let ran = run_command(&line, &inputs.env(), timeout)?;
    if let Some(why) = failure(&ran, timeout) {
        print_tail(&ran.stderr_tail);
        anyhow::bail!("{why}: {cmd}");
    }
    let cand_folder = match open_candidate(&inputs.out) {
        Ok(f) => f,
        Err(e) => {
            print_tail(&ran.stderr_tail);
            return Err(e);
        }
    };
    drop(cand_folder);
    remove_leftovers(staged.path());
    let out = staged.commit()?;
    let mut cand_folder =
        DumpFolder::open(&out.join(CANDIDATE)).context("opening the candidate's dumps")?;
    // `--filter` narrows what is judged on the candidate's side too.
    if let Some(m) = super::extract::parse_filter(args.filter.as_deref())? {
        cand_folder
            .entries
            .retain(|e| m.is_match(&e.id.name.to_string()));
    }

    let t = Instant::now();
    let expected = DumpFolder::open(&out.join(LLAMA_CPP)).context("opening llama.cpp's dumps")?;
    let claims = cand_folder
        .manifest
        .as_ref()
        .and_then(|m| m.producer_detail.get(CLAIMS_KEY).cloned());
    let mut pairs = vec![judge(
        &expected,
        &cand_folder,
        &tol,
        &llama_set,
        "llama.cpp",
    )?];
    if !cand.no_reference {
        let reference =
            DumpFolder::open(&out.join(REFERENCE)).context("opening the reference's dumps")?;
        pairs.push(judge(
            &reference,
            &cand_folder,
            &tol,
            ref_set,
            &format!("reference ({})", cand.candidate_mode.name()),
        )?);
    }
    let judged = pairs[0].comparison.counts.total;
    eprintln!(
        "judging the {judged} checkpoints the candidate {} ({} of llama.cpp's {} left out)",
        match &claims {
            Some(c) => format!("claims ({CLAIMS_KEY} = {c:?})"),
            None => "dumped".into(),
        },
        expected.entries.len().saturating_sub(judged),
        expected.entries.len()
    );
    emit_pairs(&pairs, &args, &report_md, &source.file_name())?;
    let passed = pairs.iter().all(|p| p.comparison.passed);
    eprintln!(
        "timing: llama.cpp{} {produce_secs:.2} s, candidate {:.2} s, compare+report {:.2} s, total {:.2} s",
        if reference_secs.is_some() {
            " + reference"
        } else {
            ""
        },
        ran.secs,
        t.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(if passed { Outcome::Pass } else { Outcome::Fail })
}

/// Terminal tables and one line per pair; one Markdown file with a section (and a heatmap)
/// per pair; JSON `{"passed", "pairs": [{"against", "tolerances", "comparison"}]}`; JUnit of
/// the llama.cpp pair.
fn emit_pairs(pairs: &[Pair], args: &RunArgs, md: &Path, model: &str) -> anyhow::Result<()> {
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let mut text = String::new();
    for p in pairs {
        text.push_str(&format!(
            "\n== candidate vs {} (tolerances {}) ==\n",
            p.against, p.tolerance_set
        ));
        text.push_str(&report::terminal::render(&p.comparison, args.verbose));
    }
    text.push('\n');
    for p in pairs {
        text.push_str(&pair_line(p));
        text.push('\n');
    }
    if json_to_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }

    let mut doc = format!(
        "# llorch-diff run {model} {:?} --candidate\n\n",
        args.prompt
    );
    for p in pairs {
        doc.push_str(&format!("- {}\n", pair_line(p)));
    }
    for (i, p) in pairs.iter().enumerate() {
        let svg = svg_path(md, i);
        let link = svg
            .file_name()
            .map(|n| n.to_string_lossy().replace(' ', "%20"))
            .unwrap_or_default();
        write_atomic(&svg, report::heatmap::render(&p.comparison).as_bytes())?;
        doc.push_str(&format!(
            "\n## Candidate vs {} (tolerances `{}`)\n\n",
            p.against, p.tolerance_set
        ));
        let body = report::markdown::render(&p.comparison, Some(&link));
        // The pair's heading above replaces the report's title; its sections go one level down.
        for l in body.lines().skip_while(|l| l.starts_with("# ")) {
            if l.starts_with('#') {
                doc.push('#');
            }
            doc.push_str(l);
            doc.push('\n');
        }
        eprintln!("wrote {}", svg.display());
    }
    write_atomic(md, doc.as_bytes()).with_context(|| format!("writing {}", md.display()))?;
    eprintln!("wrote {}", md.display());

    if let Some(j) = args.json.as_deref() {
        let mut list = Vec::new();
        for p in pairs {
            let c: serde_json::Value = serde_json::from_str(&report::json::render(&p.comparison))
                .context("re-reading the JSON report")?;
            list.push(serde_json::json!({
                "against": p.against,
                "tolerances": p.tolerance_set,
                "passed": p.comparison.passed,
                "comparison": c,
            }));
        }
        let v = serde_json::json!({
            "passed": pairs.iter().all(|p| p.comparison.passed),
            "pairs": list,
        });
        let s = serde_json::to_string_pretty(&v)? + "\n";
        if json_to_stdout {
            std::io::stdout().write_all(s.as_bytes())?;
        } else {
            write_atomic(j, s.as_bytes()).with_context(|| format!("writing {}", j.display()))?;
            eprintln!("wrote {}", j.display());
        }
    }
    if let Some(x) = args.junit.as_deref() {
        let xml = report::junit::render(&pairs[0].comparison).context("rendering JUnit")?;
        write_atomic(x, xml.as_bytes()).with_context(|| format!("writing {}", x.display()))?;
        eprintln!("wrote {}", x.display());
    }
    let mut summary = String::new();
    for p in pairs {
        summary.push_str(&report::markdown::summary(
            &p.comparison,
            &format!("llorch-diff run {model} --candidate vs {}", p.against),
        ));
    }
    step_summary(&summary)?;
    Ok(())
}

fn svg_path(md: &Path, i: usize) -> PathBuf {
    let stem = md
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    md.with_file_name(format!("{stem}.pair{}.svg", i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            model: "/m/a b.gguf".into(),
            out: "/o/c".into(),
            prompt_tokens: vec![1, 2],
            tokens: vec![],
            steps: 0,
            prompt: "it's".into(),
            kv_type: "f16".into(),
        }
    }

    #[test]
    fn placeholders_are_quoted_and_checked() {
        let s = substitute(
            "eng --m {model} {out} -p {prompt_tokens} -t {tokens} {steps} {prompt} {kv_type} ${HOME} {{x}}",
            Some(&inputs()),
        )
        .unwrap();
        assert_eq!(
            s,
            "eng --m '/m/a b.gguf' '/o/c' -p '1,2' -t '' '0' 'it'\\''s' 'f16' ${HOME} {x}"
        );
        let e = substitute("eng {modle}", None).unwrap_err().to_string();
        assert!(e.contains("{modle}") && e.contains("{model}"), "{e}");
    }
}
