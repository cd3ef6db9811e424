//! Staging folders and interruption.
//!
//! Every output folder (and `quantize`'s output file) is written to a hidden sibling named
//! `.NAME.partial-PID` and renamed into place when complete. This module keeps a process-wide
//! registry of the staging paths that are live, sweeps the staging folders of processes that
//! are gone, and handles SIGINT and SIGTERM:
//!
//! - the first signal prints one line on stderr and sets a flag; the next checkpoint written
//!   ([`check`], called by the dump writer) fails, the error unwinds through the writers'
//!   `Drop`s, which remove their staging paths, and `main` exits with 128 + the signal number
//!   (130 for SIGINT, 143 for SIGTERM);
//! - if the run has not stopped within [`GRACE`] (a long llama.cpp decode), or on a second
//!   signal, the signal thread removes every registered staging path itself and exits at once
//!   with the same code.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long the run may take to stop by itself after the first signal.
pub const GRACE: Duration = Duration::from_secs(3);

/// Staging paths of this process that exist now, in creation order.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// The signal that interrupted the run, 0 if none.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
/// The process staging folders are named after, 0 for this one (see [`set_owner`]).
static OWNER: AtomicU32 = AtomicU32::new(0);

/// Names this process's staging folders after `pid`: a child process that writes for its
/// parent (the isolated llama.cpp side) uses the parent's PID, so that its folders count as the
/// parent's, are not swept while the parent lives, and are the ones the parent removes.
pub fn set_owner(pid: u32) {
    OWNER.store(pid, Ordering::SeqCst);
}

/// The PID in this process's staging folder names.
pub fn owner() -> u32 {
    match OWNER.load(Ordering::SeqCst) {
        0 => std::process::id(),
        pid => pid,
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The staging path for `name` in `parent`: `parent/.NAME.partial-PID`. Sweeps the stale
/// staging folders beside it first (see [`sweep_stale`]).
pub fn staging_path(parent: &Path, name: &str) -> PathBuf {
    sweep_stale(parent);
    staging_name(parent, name, owner())
}

/// `parent/.NAME.partial-PID`.
pub fn staging_name(parent: &Path, name: &str, pid: u32) -> PathBuf {
    parent.join(format!(".{name}.partial-{pid}"))
}

/// Records a staging path that now exists, for removal on interruption.
pub fn register(path: &Path) {
    live().push(path.to_path_buf());
}

/// Forgets a staging path (renamed into place or removed).
pub fn unregister(path: &Path) {
    let mut l = live();
    if let Some(i) = l.iter().rposition(|p| p == path) {
        l.remove(i);
    }
}

/// Removes every registered staging path, newest first. Returns how many were removed.
pub fn remove_live() -> usize {
    let paths: Vec<PathBuf> = std::mem::take(&mut *live());
    let mut n = 0;
    for p in paths.iter().rev() {
        let removed = match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(p).is_ok(),
            Ok(_) => fs::remove_file(p).is_ok(),
            Err(_) => false,
        };
        n += usize::from(removed);
    }
    n
}

/// The PID in a staging folder's name `.NAME.partial-PID`, or None for any other name.
pub fn partial_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (name, pid) = rest.rsplit_once(".partial-")?;
    if name.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this PID exists. Without /proc nothing can be told, so every
/// process counts as alive (and nothing is swept).
pub fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Removes the folders in `parent` named `.NAME.partial-PID` whose process is gone (left by a
/// run that was killed). Other entries, files, symbolic links and the staging folders of live
/// processes are kept. Returns the folders removed.
pub fn sweep_stale(parent: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return removed;
    };
    let own = owner();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(partial_pid) else {
            continue;
        };
        // file_type() does not follow symbolic links.
        if pid == own
            || pid == std::process::id()
            || process_alive(pid)
            || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = e.path();
        if fs::remove_dir_all(&path).is_ok() {
            eprintln!(
                "removed the stale staging folder {} (process {pid} is gone)",
                path.display()
            );
            removed.push(path);
        }
    }
    removed
}

/// The signal that interrupted the run, if one did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The exit code of a run stopped by `signal`: 128 + its number.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// An error once the run was interrupted: writers call it before each checkpoint.
pub fn check() -> io::Result<()> {
    match interrupted() {
        None => Ok(()),
        Some(s) => Err(io::Error::new(
            io::ErrorKind::Interrupted,
            format!("interrupted by {}", signal_name(s)),
        )),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Removes the registered staging paths and ends the process now, without running exit
/// handlers (llama.cpp's static destructors must not run under a thread still computing).
fn exit_now(code: i32) -> ! {
    remove_live();
    // SAFETY: _exit ends the process; it takes no pointers and cannot fail.
    unsafe { libc::_exit(code) }
}

/// Installs the SIGINT and SIGTERM handling described in the module documentation.
pub fn install() -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut it = signals.forever();
            let Some(first) = it.next() else { return };
            INTERRUPTED.store(first, Ordering::SeqCst);
            let code = exit_code(first);
            eprintln!(
                "interrupted by {}: stopping and removing the partial output",
                signal_name(first)
            );
            let _ = std::thread::Builder::new()
                .name("signals-grace".into())
                .spawn(move || {
                    std::thread::sleep(GRACE);
                    exit_now(code)
                });
            if it.next().is_some() {
                exit_now(code);
            }
        })?;
    Ok(())
}

/// The signal handling of a child process that writes for its parent: SIGINT is ignored (a
/// terminal's Ctrl-C reaches the whole process group; the parent decides), SIGTERM (sent by
/// the parent, or on the parent's death) removes the staging paths and exits at once, quietly.
pub fn install_child() -> io::Result<()> {
    // SAFETY: setting a signal's disposition to "ignore" takes no pointers.
    unsafe { libc::signal(SIGINT, libc::SIG_IGN) };
    let mut signals = Signals::new([SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(s) = signals.forever().next() {
                INTERRUPTED.store(s, Ordering::SeqCst);
                exit_now(exit_code(s));
            }
        })?;
    Ok(())
}
