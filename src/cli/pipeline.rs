//! What `run` and `gate` share: the model they run on (a GGUF file, or a preset made on the
//! fly), an output folder that appears only when both producers succeeded, and the two
//! producers run on identical input.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::extract::parse_filter;
use super::make_model::parse_quant;
use super::reference::Config;
use crate::gguf::presets::{self, Preset};
use crate::llamacpp::extract::{check_model_file, ExtractOptions, ExtractSummary};
use crate::quant::GgmlType;
use crate::reference::{
    check_model, reference_with_progress, Progress as RefProgress, ReferenceError, ReferenceSummary,
};

/// The built-in model of `run` when none is named.
pub const DEFAULT_PRESET: Preset = Preset::TinyLlama;
pub const DEFAULT_QUANT: GgmlType = GgmlType::Q8_0;
pub const DEFAULT_SEED: u64 = 1;

/// The sub-folders of an output folder.
pub const LLAMA_CPP: &str = "llama.cpp";
pub const REFERENCE: &str = "reference";
/// Where a preset model is written inside an output folder.
const MODEL_DIR: &str = "model";

/// The model a run evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    File(PathBuf),
    Preset {
        preset: Preset,
        quant: GgmlType,
        seed: u64,
    },
}

impl ModelSource {
    /// A model argument: an existing path is a file; otherwise a preset name is a preset;
    /// otherwise it is a file that does not exist (reported when it is checked).
    pub fn from_arg(
        model: Option<&Path>,
        quant: Option<&str>,
        seed: Option<u64>,
    ) -> anyhow::Result<Self> {
        let preset = match model {
            None => Some(DEFAULT_PRESET),
            Some(p) if p.exists() => None,
            Some(p) => p.to_str().and_then(|s| Preset::parse(s).ok()),
        };
        match (preset, model) {
            (Some(preset), _) => Ok(ModelSource::Preset {
                preset,
                quant: quant.map(parse_quant).transpose()?.unwrap_or(DEFAULT_QUANT),
                seed: seed.unwrap_or(DEFAULT_SEED),
            }),
            (None, Some(p)) => {
                anyhow::ensure!(
                    quant.is_none() && seed.is_none(),
                    "--quant and --seed apply to preset models only, not to the file {}",
                    p.display()
                );
                Ok(ModelSource::File(p.to_path_buf()))
            }
            (None, None) => unreachable!("no model means the default preset"),
        }
    }

    /// The model's file name, as the manifests record it: a preset's names its settings.
    pub fn file_name(&self) -> String {
        match self {
            ModelSource::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            ModelSource::Preset {
                preset,
                quant,
                seed,
            } => format!(
                "{preset}-{}-seed{seed}.gguf",
                quant.name().to_ascii_lowercase()
            ),
        }
    }

    /// The file name without `.gguf`: names default output folders and reports.
    pub fn stem(&self) -> String {
        let name = self.file_name();
        name.strip_suffix(".gguf").unwrap_or(&name).to_string()
    }

    /// Checks a model file before anything is written (a preset needs no check).
    pub fn check(&self) -> anyhow::Result<()> {
        if let ModelSource::File(p) = self {
            check_model_file(p)?;
        }
        Ok(())
    }

    /// The file to evaluate: the file itself, or the preset written into `dir/model/`.
    pub fn materialize(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        match self {
            ModelSource::File(p) => Ok(p.clone()),
            ModelSource::Preset {
                preset,
                quant,
                seed,
            } => {
                let folder = dir.join(MODEL_DIR);
                fs::create_dir_all(&folder)
                    .with_context(|| format!("creating {}", folder.display()))?;
                let path = folder.join(self.file_name());
                presets::write_preset(*preset, *quant, *seed, &path).with_context(|| {
                    format!("writing the {preset} model ({quant}, seed {seed})")
                })?;
                Ok(path)
            }
        }
    }
}

/// An output folder holding `llama.cpp/`, `reference/` and, for a preset, `model/`. It is
/// built in a hidden sibling and renamed into place by [`Staged::commit`]; dropped
/// uncommitted, it removes the sibling and any parent folders it had to create, so a failed
/// run leaves nothing behind.
pub struct Staged {
    target: PathBuf,
    staging: PathBuf,
    /// Parent folders this run created, deepest first.
    created_parents: Vec<PathBuf>,
    committed: bool,
}

impl Staged {
    pub fn create(target: &Path) -> anyhow::Result<Staged> {
        if target.exists() && !is_output_folder(target) {
            anyhow::bail!(
                "{} exists and is not an output folder of llorch-diff (only llama.cpp/, reference/ \
                 and model/ inside); refusing to overwrite it",
                target.display()
            );
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow::anyhow!("{} is not a folder name", target.display()))?;
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let created_parents: Vec<PathBuf> = parent
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .map(Path::to_path_buf)
            .collect();
        let s = Staged {
            target: target.to_path_buf(),
            staging: crate::staging::staging_path(parent, &name),
            created_parents,
            committed: false,
        };
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        if s.staging.exists() {
            fs::remove_dir_all(&s.staging)
                .with_context(|| format!("removing {}", s.staging.display()))?;
        }
        crate::staging::register(&s.staging);
        fs::create_dir(&s.staging).with_context(|| format!("creating {}", s.staging.display()))?;
        Ok(s)
    }

    /// Where to write while staging.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Replaces the target with the staged folder.
    pub fn commit(mut self) -> anyhow::Result<PathBuf> {
        if self.target.exists() {
            fs::remove_dir_all(&self.target)
                .with_context(|| format!("removing the old {}", self.target.display()))?;
        }
        fs::rename(&self.staging, &self.target)
            .with_context(|| format!("renaming into {}", self.target.display()))?;
        self.committed = true;
        crate::staging::unregister(&self.staging);
        Ok(self.target.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = fs::remove_dir_all(&self.staging);
        crate::staging::unregister(&self.staging);
        // Parents this run created, deepest first; each only if nothing else appeared in it.
        for p in &self.created_parents {
            if fs::remove_dir(p).is_err() {
                break;
            }
        }
    }
}

/// True for a folder `run` or `gate` may replace: empty, or holding only dump folders named
/// `llama.cpp` and `reference` and a `model/` folder of `.gguf` files.
fn is_output_folder(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|e| {
        let Ok(e) = e else { return false };
        let path = e.path();
        match e.file_name().to_str() {
            Some(
                LLAMA_CPP
                | REFERENCE
                | super::candidate::CANDIDATE
                | super::threeway::TRANSFORMERS_DIR,
            ) => path.join("manifest.json").is_file(),
            Some(MODEL_DIR) => fs::read_dir(&path).is_ok_and(|d| {
                d.into_iter().all(|f| {
                    f.is_ok_and(|f| {
                        f.path().is_file() && f.path().extension() == Some("gguf".as_ref())
                    })
                })
            }),
            _ => false,
        }
    })
}

/// The two dump folders of one model and prompt, and how long each producer took.
pub struct Produced {
    pub llama: ExtractSummary,
    pub reference: ReferenceSummary,
    pub extract_secs: f64,
    pub reference_secs: f64,
}

/// Runs llama.cpp, then the reference, writing `dir/llama.cpp` and `dir/reference`. The
/// reference evaluates `token_ids` when given (a baseline's stored prompt), else its own
/// tokenization of the prompt, so that the `tokens` checkpoint checks the tokenizer; where the
/// Rust tokenizer does not support the model, llama.cpp's ids, with a warning. Decode steps
/// always follow llama.cpp's generated tokens, so a greedy choice that differs does not make
/// later steps compare different inputs.
pub fn produce(
    model: &Path,
    prompt: &str,
    dir: &Path,
    config: &Config,
    filter: Option<&str>,
    token_ids: Option<Vec<i32>>,
) -> anyhow::Result<Produced> {
    // What the reference would refuse is refused before llama.cpp runs.
    check_model(model).context("reference")?;
    let started = Instant::now();
    let opts = ExtractOptions {
        steps: config.steps,
        kv_type: config.kv_type,
        threads: config.threads.unwrap_or(1) as usize,
        repack: !config.no_repack,
        filter: parse_filter(filter)?,
    };
    let llama = super::isolate::extract(model, prompt, &dir.join(LLAMA_CPP), &opts, false, false)
        .context("extract")?;
    let extract_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut ropts = config.reference_options(parse_filter(filter)?);
    ropts.token_ids = token_ids;
    ropts.decode_tokens = Some(llama.generated_tokens.clone());
    if let Some(f) = ropts.fault {
        eprintln!("warning: fault {} injected into the reference", f.name());
    }
    let out = dir.join(REFERENCE);
    let bar = super::progress::spinner("reference: loading the model");
    let run_reference = |ropts: &crate::reference::ReferenceOptions| {
        reference_with_progress(model, prompt, &out, ropts, &mut |p| {
            if let Some(pb) = &bar {
                match p {
                    RefProgress::Loaded { steps } => {
                        super::progress::steps(pb, u64::from(steps) + 1, "reference")
                    }
                    RefProgress::Step { step } => pb.set_position(u64::from(step) + 1),
                }
            }
        })
    };
    let reference = match run_reference(&ropts) {
        Err(ReferenceError::Tokenizer(e)) => {
            super::progress::eprint_line(
                bar.as_ref(),
                &format!(
                    "warning: the Rust tokenizer cannot tokenize for this model ({e}); the \
                     reference evaluates llama.cpp's token ids, so tokenization is not checked"
                ),
            );
            ropts.token_ids = Some(llama.prompt_tokens.clone());
            run_reference(&ropts)
        }
        other => other,
    }
    .context("reference")?;
    super::progress::done(bar);
    let reference_secs = started.elapsed().as_secs_f64();
    Ok(Produced {
        llama,
        reference,
        extract_secs,
        reference_secs,
    })
}
