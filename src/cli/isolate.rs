//! The llama.cpp side of `extract`, `run` and `gate` in a child process, so that a crash inside
//! llama.cpp (a failed `GGML_ASSERT`, an abort, a segfault) is reported instead of taking the
//! tool down: one line `llama.cpp crashed (signal 6 SIGABRT, ...): <its last log line>`, exit
//! code 2, and no output folder.
//!
//! The child is this same executable run with the hidden subcommand `__extract-child`. It writes
//! the dump folder itself (staging folder, then rename) with staging names carrying the
//! parent's PID ([`staging::set_owner`]), so the parent knows the child's staging folder and
//! removes it when the child dies. Its stdout carries the summary as one JSON line; its stderr
//! carries, besides ordinary lines that are passed through, marked lines:
//!
//! - `\x1eL<line>`: a line of llama.cpp's log that is not shown (kept as the log's tail);
//! - `\x1eA<message>`: a ggml assertion that is about to abort;
//! - `\x1eE<message>`: the child's error (exit code 2);
//! - `\x1eP<step>/<total>`: progress, only when asked for (`--progress`).
//!
//! The child dies with the parent (`PR_SET_PDEATHSIG`), ignores SIGINT (the parent, which a
//! terminal's Ctrl-C reaches too, sends it SIGTERM) and on SIGTERM removes its staging folder
//! and exits at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use super::{progress, Outcome};
use crate::llamacpp::extract::{
    check_model_file, extract_with_progress, ExtractOptions, ExtractSummary, Progress,
};
use crate::llamacpp::{set_child_log, set_verbose};
use crate::staging;

/// The hidden subcommand's name.
pub const CHILD_COMMAND: &str = "__extract-child";
const MARK: u8 = 0x1e;
/// Lines of the child's stderr kept for the crash message.
const TAIL: usize = 8;

/// `llorch-diff __extract-child`: `extract`'s own arguments, as the parent passes them (see
/// [`extract`]), and the child's link to its parent.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    #[command(flatten)]
    pub extract: super::extract::Args,
    /// Send progress lines.
    #[arg(long)]
    pub progress: bool,
    /// The PID staging folders are named after (the parent's).
    #[arg(long)]
    pub staging_pid: u32,
}

fn marked(kind: char, text: &str) {
    let mut line = Vec::with_capacity(text.len() + 3);
    line.push(MARK);
    line.push(kind as u8);
    line.extend(text.replace('\n', " ").as_bytes());
    line.push(b'\n');
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&line);
    let _ = err.flush();
}

/// The child's side: extract, print the summary as JSON on stdout, or the error marked on
/// stderr and exit 2.
pub fn run_child(args: ChildArgs) -> anyhow::Result<Outcome> {
    staging::set_owner(args.staging_pid);
    let (progress, ex) = (args.progress, args.extract);
    set_verbose(ex.verbose);
    set_child_log(true);
    let result = (|| -> anyhow::Result<ExtractSummary> {
        let opts = ex.options()?;
        let steps = ex.steps;
        let mut on_progress = |p: Progress| {
            if progress {
                match p {
                    Progress::Loaded { .. } => marked('P', &format!("0/{}", steps + 1)),
                    Progress::Step { step } => marked('P', &format!("{}/{}", step + 1, steps + 1)),
                }
            }
        };
        Ok(extract_with_progress(
            &ex.model,
            &ex.prompt,
            &ex.out,
            &opts,
            ex.all_nodes,
            &mut on_progress,
        )?)
    })();
    match result {
        Ok(s) => {
            let json = serde_json::json!({
                "folder": s.folder,
                "prompt_tokens": s.prompt_tokens,
                "generated_tokens": s.generated_tokens,
                "checkpoints": s.checkpoints,
            });
            println!("{json}");
            Ok(Outcome::Pass)
        }
        Err(e) => {
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            marked('E', &msg);
            std::process::exit(2)
        }
    }
}

/// What the child's stderr said, besides the lines passed through.
#[derive(Default)]
struct Heard {
    tail: std::collections::VecDeque<String>,
    assertion: Option<String>,
    error: Option<String>,
}

fn listen(stderr: impl Read, bar: Option<ProgressBar>) -> Heard {
    let mut heard = Heard::default();
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        let (kind, text) = match line.as_bytes().first() {
            Some(&MARK) if line.len() >= 2 => (line.as_bytes()[1], &line[2..]),
            _ => (0, line),
        };
        match kind {
            b'P' => {
                if let (Some(pb), Some((pos, len))) = (&bar, text.split_once('/')) {
                    if let (Ok(pos), Ok(len)) = (pos.parse::<u64>(), len.parse::<u64>()) {
                        if pos == 0 {
                            progress::steps(pb, len, "llama.cpp");
                        }
                        pb.set_position(pos);
                    }
                }
                continue;
            }
            b'A' => heard.assertion = Some(text.to_string()),
            b'E' => {
                heard.error = Some(text.to_string());
                continue;
            }
            b'L' => {}
            _ => {
                // Passed through, unless the run is being interrupted (the parent says so).
                if staging::interrupted().is_none() {
                    progress::eprint_line(bar.as_ref(), text);
                }
            }
        }
        if !text.trim().is_empty() {
            if heard.tail.len() == TAIL {
                heard.tail.pop_front();
            }
            heard.tail.push_back(text.trim().to_string());
        }
    }
    heard
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => "",
    };
    if name.is_empty() {
        format!("signal {sig}")
    } else {
        format!("signal {sig} {name}")
    }
}

/// Runs llama.cpp's extract in a child process (see the module documentation). Errors are
/// those of an extract in this process, or `llama.cpp crashed (...)`.
pub fn extract(
    model: &Path,
    prompt: &str,
    out: &Path,
    opts: &ExtractOptions,
    all_nodes: bool,
    verbose: bool,
) -> anyhow::Result<ExtractSummary> {
    // What can be refused without llama.cpp is refused here, with the usual messages.
    check_model_file(model)?;
    let exe = std::env::current_exe().context("locating the llorch-diff executable")?;
    let parent_pid = std::process::id();
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_COMMAND)
        .arg("--out")
        .arg(out)
        .args(["--steps", &opts.steps.to_string()])
        .args(["--kv-type", opts.kv_type.as_str()])
        .args(["--threads", &opts.threads.to_string()])
        .args(["--staging-pid", &parent_pid.to_string()]);
    if !opts.repack {
        cmd.arg("--no-repack");
    }
    if let Some(f) = &opts.filter {
        cmd.args(["--filter", f.as_str()]);
    }
    if all_nodes {
        cmd.arg("--all-nodes");
    }
    if verbose {
        cmd.arg("--verbose");
    }
    let bar = progress::spinner("llama.cpp: loading the model");
    if bar.is_some() {
        cmd.arg("--progress");
    }
    cmd.arg("--").arg(model).arg(prompt);
    // ggml would attach a debugger to print a backtrace before aborting.
    cmd.env("GGML_NO_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            // The parent may have died before prctl: then there is no one to write for.
            if libc::getppid() as u32 != parent_pid {
                libc::_exit(143);
            }
            Ok(())
        });
    }

    // The child's staging folder, named after this process.
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dump".into());
    let out_parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let child_staging = staging::staging_name(out_parent, &name, parent_pid);
    staging::register(&child_staging);
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&child_staging);
        staging::unregister(&child_staging);
    };

    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            cleanup();
            progress::done(bar);
            return Err(e).context("starting llama.cpp's process");
        }
    };
    let stderr = child.stderr.take().expect("piped stderr");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let listener = {
        let bar = bar.clone();
        std::thread::spawn(move || listen(stderr, bar))
    };
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break child.wait().ok(),
        }
        if staging::interrupted().is_some() {
            // SAFETY: kill takes plain integers; the child is ours and not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let heard = listener.join().unwrap_or_default();
    let summary = reader.join().unwrap_or_default();
    progress::done(bar);

    let Some(status) = status else {
        cleanup();
        anyhow::bail!("interrupted");
    };
    if status.success() {
        staging::unregister(&child_staging);
        return parse_summary(&summary).context("reading llama.cpp's process summary");
    }
    cleanup();
    if let Some(e) = heard.error {
        anyhow::bail!(e);
    }
    let last = heard
        .tail
        .iter()
        .rev()
        .find(|l| Some(l.as_str()) != heard.assertion.as_deref())
        .cloned()
        .unwrap_or_else(|| "(no log line)".to_string());
    let why = match (status.signal(), &heard.assertion) {
        (Some(sig), Some(a)) => format!("{}, assertion {a}", signal_name(sig)),
        (Some(sig), None) => signal_name(sig),
        (None, Some(a)) => format!("exit code {}, assertion {a}", status.code().unwrap_or(-1)),
        (None, None) => format!("exit code {}", status.code().unwrap_or(-1)),
    };
    anyhow::bail!("llama.cpp crashed ({why}): {last}")
}

fn parse_summary(text: &str) -> anyhow::Result<ExtractSummary> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no summary line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let ids = |key: &str| -> anyhow::Result<Vec<i32>> {
        Ok(serde_json::from_value(
            v.get(key).cloned().unwrap_or_default(),
        )?)
    };
    Ok(ExtractSummary {
        folder: serde_json::from_value(v.get("folder").cloned().unwrap_or_default())?,
        prompt_tokens: ids("prompt_tokens")?,
        generated_tokens: ids("generated_tokens")?,
        checkpoints: serde_json::from_value(v.get("checkpoints").cloned().unwrap_or_default())?,
    })
}
