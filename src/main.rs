//! The `llorch-diff` command: parse arguments, run one command, map the outcome to an exit code.
//!
//! Exit codes: 0 everything passed, 1 a checkpoint failed, 2 usage or input error, 130 / 143
//! interrupted by SIGINT / SIGTERM (the partial output removed).

use std::process::ExitCode;

use clap::Parser;
use llorch_diff::cli::{self, Cli, Outcome};
use llorch_diff::staging;

fn main() -> ExitCode {
    // A panic is a bug, but the user still gets one line and the input-error code, not a trace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        eprintln!("error: internal error{at}: {msg}");
    }));
    let parsed = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            if code == 2 {
                // One line: clap's first line names the problem.
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("bad arguments");
                eprintln!("{first} (see llorch-diff --help)");
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code);
        }
    };
    // llama.cpp's child process leaves signals to its parent (see cli::isolate).
    let installed = if matches!(parsed.command, cli::Command::ExtractChild(_)) {
        staging::install_child()
    } else {
        staging::install()
    };
    if let Err(e) = installed {
        eprintln!("error: installing the SIGINT/SIGTERM handler: {e}");
        return ExitCode::from(2);
    }
    let result = std::panic::catch_unwind(|| cli::dispatch(parsed));
    if let Some(signal) = staging::interrupted() {
        // The signal thread said so on stderr; whatever the run returned is moot.
        staging::remove_live();
        return ExitCode::from(staging::exit_code(signal) as u8);
    }
    match result {
        Ok(Ok(Outcome::Pass)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::Fail)) => ExitCode::from(1),
        Ok(Err(e)) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

/// The error and its causes on one line, outermost first.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
