//! Progress of long phases (loading, each step of each producer, the comparison) on stderr, only
//! when stderr is a terminal: a captured stderr (CI logs, tests) gets nothing extra.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};

/// Whether progress is shown: stderr is a terminal.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner for a phase of unknown length, or None when progress is not shown.
pub fn spinner(msg: &str) -> Option<ProgressBar> {
    if !enabled() {
        return None;
    }
    // Dropped on an error path, it clears itself too.
    let pb = ProgressBar::new_spinner().with_finish(ProgressFinish::AndClear);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    Some(pb)
}

/// Turns a spinner into a bar of `len` steps (the prompt is step 0).
pub fn steps(pb: &ProgressBar, len: u64, msg: &str) {
    pb.set_message(msg.to_string());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] step {pos}/{len} [{elapsed}]")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_length(len);
    pb.set_position(0);
}

/// Prints a line on stderr without garbling a bar that is drawn.
pub fn eprint_line(pb: Option<&ProgressBar>, line: &str) {
    match pb {
        Some(pb) => pb.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Ends a phase's display, leaving nothing on the terminal.
pub fn done(pb: Option<ProgressBar>) {
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
}
