//! The third producer: HF transformers' forward pass of the same GGUF, run by
//! `python/hf_producer.py` in the project's virtual environment.
//!
//! transformers loads the GGUF itself (dequantizing every tensor to f32) and runs it in f32 with
//! eager attention; the script writes a dump folder with `python/llorch_dump.py`, producer
//! `transformers`. Both scripts are compiled into the binary and written to a temporary folder
//! for each run, so the binary does not depend on where the sources are.
//!
//! The interpreter is `$LLORCH_HF_PYTHON` when set, else the project's `.venv/bin/python3`
//! (made by `scripts/python-env.sh hf`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::checkpoint::DumpFolder;

/// The producer name in the manifest.
pub const PRODUCER: &str = "transformers";
/// Overrides the interpreter.
pub const PYTHON_ENV: &str = "LLORCH_HF_PYTHON";
/// The one line that says how to install what `hf` needs.
pub const INSTALL_HINT: &str =
    "run scripts/python-env.sh hf (installs PyTorch, transformers, gguf and accelerate into .venv)";

const SCRIPT: &str = include_str!("../../python/hf_producer.py");
const DUMP_LIB: &str = include_str!("../../python/llorch_dump.py");
/// The script's exit status for a missing package.
const EXIT_MISSING_PACKAGE: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("HF transformers is not installed ({0}): {INSTALL_HINT}")]
    NotInstalled(String),
    #[error("running {python}: {source}")]
    Spawn {
        python: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the producer script: {0}")]
    Script(std::io::Error),
    #[error("the transformers producer failed ({status}): {message}")]
    Failed { status: String, message: String },
    #[error("reading its dump folder: {0}")]
    Folder(String),
}

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct HfOptions {
    /// Prompt token ids (step 0).
    pub prompt_tokens: Vec<i32>,
    /// Decode inputs of steps 1.. (another producer's generated tokens); greedy when `None`.
    pub decode_tokens: Option<Vec<i32>>,
    pub steps: u32,
    /// The prompt text, recorded in the manifest.
    pub prompt: String,
    /// Torch threads (0: torch's default).
    pub threads: u32,
}

/// What the run produced besides the folder.
#[derive(Debug, Clone)]
pub struct HfSummary {
    pub folder: PathBuf,
    pub generated_tokens: Vec<i32>,
    pub checkpoints: usize,
    /// transformers' and torch's versions, as the manifest records them.
    pub versions: String,
}

/// The interpreter `hf` runs.
pub fn python() -> PathBuf {
    match std::env::var_os(PYTHON_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("LLORCH_REPO_ROOT")).join(".venv/bin/python3"),
    }
}

/// Fails with the install hint when the interpreter is missing.
pub fn check_installed() -> Result<PathBuf, HfError> {
    let py = python();
    if !py.is_file() {
        return Err(HfError::NotInstalled(format!("no {}", py.display())));
    }
    Ok(py)
}

/// Runs transformers on `model` and writes the dump folder `out`.
pub fn produce(model: &Path, out: &Path, opts: &HfOptions) -> Result<HfSummary, HfError> {
    let py = check_installed()?;
    let dir = ScriptDir::create()?;
    let join = |v: &[i32]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut cmd = Command::new(&py);
    cmd.arg(dir.0.join("hf_producer.py"))
        .arg(model)
        .arg("--out")
        .arg(out)
        .arg("--token-ids")
        .arg(join(&opts.prompt_tokens))
        .arg("--steps")
        .arg(opts.steps.to_string())
        .arg("--prompt")
        .arg(&opts.prompt)
        .arg("--threads")
        .arg(opts.threads.to_string());
    if let Some(d) = &opts.decode_tokens {
        cmd.arg("--decode-ids").arg(join(d));
    }
    let output = cmd
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .env("PYTHONWARNINGS", "ignore")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| HfError::Spawn {
            python: py.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(EXIT_MISSING_PACKAGE) {
        return Err(HfError::NotInstalled(last_line(&stderr)));
    }
    if !output.status.success() {
        return Err(HfError::Failed {
            status: output.status.to_string(),
            message: last_line(&stderr),
        });
    }
    let folder = DumpFolder::open(out).map_err(|e| HfError::Folder(e.to_string()))?;
    let m = folder
        .manifest
        .ok_or_else(|| HfError::Folder("no manifest.json".into()))?;
    let get = |k: &str| m.producer_detail.get(k).cloned().unwrap_or_default();
    Ok(HfSummary {
        folder: out.to_path_buf(),
        generated_tokens: m.generated_tokens,
        checkpoints: m.checkpoints.len(),
        versions: format!(
            "transformers {}, torch {}",
            get("transformers"),
            get("torch")
        ),
    })
}

/// The last non-empty line of a child's stderr (Python's exception line).
fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_string()
}

/// A temporary folder holding the two scripts, removed on drop.
struct ScriptDir(PathBuf);

impl ScriptDir {
    fn create() -> Result<ScriptDir, HfError> {
        let dir = std::env::temp_dir().join(format!(
            "llorch-hf-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).map_err(HfError::Script)?;
        let d = ScriptDir(dir);
        std::fs::write(d.0.join("hf_producer.py"), SCRIPT).map_err(HfError::Script)?;
        std::fs::write(d.0.join("llorch_dump.py"), DUMP_LIB).map_err(HfError::Script)?;
        Ok(d)
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(last_line("a\nValueError: x\n\n"), "ValueError: x");
        assert_eq!(last_line(""), "no message");
    }
}
