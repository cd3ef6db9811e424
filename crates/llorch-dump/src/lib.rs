//! Writes llorch-diff dump folders from any inference engine.
//!
//! A dump folder holds one file per checkpoint and step, `step{N}/{name}.bin`, each
//! `[n_dims: i32][shape: i64 × n_dims, outermost first][data: f32 × prod(shape)]`, little-endian,
//! C order, and a `manifest.json` naming the producer, the model, the prompt tokens and every
//! checkpoint. Names are those of llorch-diff's checkpoint catalogue (`blk.0.attn_norm`,
//! `result_output`, ...). The folder is staged beside its target and renamed into place by
//! [`Writer::finish`], so a run that fails leaves nothing behind.
//!
//! ```no_run
//! let mut w = llorch_dump::Writer::create("out/my-engine", "my-engine")?;
//! w.set_prompt_tokens(&[1, 15043]);
//! let hidden = vec![0f32; 2 * 576];
//! w.put(0, "blk.0.l_out", &[2, 576], &hidden)?;
//! w.finish()?;
//! # Ok::<(), llorch_dump::DumpError>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The manifest format this crate writes (the one llorch-diff reads).
pub const FORMAT: &str = "llorch-diff-dump/1";

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {name:?}: {reason}")]
    Checkpoint { name: String, reason: String },
    #[error("{0}: exists and is not a dump folder (no manifest.json); refusing to overwrite it")]
    NotADumpFolder(PathBuf),
}

fn io(path: &Path, source: std::io::Error) -> DumpError {
    DumpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The model a run evaluated, as the manifest records it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Model {
    /// File name only.
    pub file: String,
    /// Hex sha256 of the GGUF file (llorch-diff warns when two folders name different models).
    pub sha256: String,
    pub architecture: String,
    pub n_layer: u32,
}

#[derive(Debug, Clone, Serialize)]
struct Entry {
    step: u32,
    name: String,
    file: String,
    shape: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
struct Manifest {
    format: String,
    producer: String,
    producer_detail: BTreeMap<String, String>,
    model: Model,
    prompt: String,
    prompt_tokens: Vec<i32>,
    generated_tokens: Vec<i32>,
    kv_type: String,
    threads: u32,
    steps: u32,
    checkpoints: Vec<Entry>,
}

/// A dump folder being written. Dropped without [`Writer::finish`], it removes what it wrote.
pub struct Writer {
    target: PathBuf,
    staging: PathBuf,
    manifest: Manifest,
    finished: bool,
}

impl Writer {
    /// Starts a folder at `target` for the engine `producer`. An existing dump folder there is
    /// replaced on [`Writer::finish`]; anything else there is refused.
    pub fn create(target: impl AsRef<Path>, producer: &str) -> Result<Writer, DumpError> {
        let target = target.as_ref().to_path_buf();
        if target.exists() && !replaceable(&target) {
            return Err(DumpError::NotADumpFolder(target));
        }
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dump".into());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
        }
        fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
        Ok(Writer {
            target,
            staging,
            manifest: Manifest {
                format: FORMAT.into(),
                producer: producer.into(),
                producer_detail: BTreeMap::new(),
                model: Model::default(),
                prompt: String::new(),
                prompt_tokens: vec![],
                generated_tokens: vec![],
                kv_type: String::new(),
                threads: 0,
                steps: 0,
                checkpoints: vec![],
            },
            finished: false,
        })
    }

    pub fn set_model(&mut self, model: Model) {
        self.manifest.model = model;
    }
    /// Prompt token ids (the input of step 0).
    pub fn set_prompt_tokens(&mut self, tokens: &[i32]) {
        self.manifest.prompt_tokens = tokens.to_vec();
    }
    pub fn set_prompt(&mut self, prompt: &str) {
        self.manifest.prompt = prompt.into();
    }
    /// The token chosen after each step (one per step).
    pub fn set_generated_tokens(&mut self, tokens: &[i32]) {
        self.manifest.generated_tokens = tokens.to_vec();
    }
    /// `f32`, `f16` or `bf16`: the KV cache type the engine uses.
    pub fn set_kv_type(&mut self, kv_type: &str) {
        self.manifest.kv_type = kv_type.into();
    }
    /// Free-form facts about the engine (version, build, precision), shown in reports.
    pub fn set_detail(&mut self, key: &str, value: &str) {
        self.manifest
            .producer_detail
            .insert(key.into(), value.into());
    }

    /// Writes checkpoint `name` of `step` with `shape` (outermost first) and its values in C
    /// order.
    pub fn put(
        &mut self,
        step: u32,
        name: &str,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(), DumpError> {
        let bad = |reason: String| DumpError::Checkpoint {
            name: name.into(),
            reason,
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !name.starts_with('.');
        if !valid {
            return Err(bad(
                "names are catalogue names: letters, digits, '.', '_', '-'".into(),
            ));
        }
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(bad(format!(
                "shape {shape:?} holds {n} values, {} given",
                data.len()
            )));
        }
        if self
            .manifest
            .checkpoints
            .iter()
            .any(|e| e.step == step && e.name == name)
        {
            return Err(bad(format!("written twice at step {step}")));
        }
        let file = format!("step{step}/{name}.bin");
        let path = self.staging.join(&file);
        let dir = path.parent().expect("a step folder");
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut bytes = Vec::with_capacity(4 + 8 * shape.len() + 4 * data.len());
        bytes.extend_from_slice(&(shape.len() as i32).to_le_bytes());
        for &d in shape {
            bytes.extend_from_slice(&(d as i64).to_le_bytes());
        }
        for &v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .map_err(|e| io(&path, e))?;
        self.manifest.steps = self.manifest.steps.max(step);
        self.manifest.checkpoints.push(Entry {
            step,
            name: name.into(),
            file,
            shape: shape.to_vec(),
        });
        Ok(())
    }

    /// [`Writer::put`] for an ndarray of any dimension (its logical C order is written).
    #[cfg(feature = "ndarray")]
    pub fn put_array<D: ndarray::Dimension>(
        &mut self,
        step: u32,
        name: &str,
        a: &ndarray::ArrayView<'_, f32, D>,
    ) -> Result<(), DumpError> {
        let data: Vec<f32> = a.iter().copied().collect();
        self.put(step, name, a.shape(), &data)
    }

    /// Writes the manifest and moves the folder into place.
    pub fn finish(mut self) -> Result<PathBuf, DumpError> {
        let json = serde_json::to_vec_pretty(&self.manifest).expect("the manifest serialises");
        let path = self.staging.join("manifest.json");
        fs::write(&path, json).map_err(|e| io(&path, e))?;
        if self.target.exists() {
            fs::remove_dir_all(&self.target).map_err(|e| io(&self.target, e))?;
        }
        fs::rename(&self.staging, &self.target).map_err(|e| io(&self.target, e))?;
        self.finished = true;
        Ok(self.target.clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

fn replaceable(dir: &Path) -> bool {
    dir.join("manifest.json").is_file()
        || fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("llorch-dump-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_the_format_and_nothing_until_finish() {
        let dir = scratch("format");
        let target = dir.join("run");
        let mut w = Writer::create(&target, "test").unwrap();
        w.put(0, "blk.0.l_out", &[2, 3], &[1., 2., 3., 4., 5., 6.])
            .unwrap();
        assert!(!target.exists());
        w.finish().unwrap();
        let b = fs::read(target.join("step0/blk.0.l_out.bin")).unwrap();
        assert_eq!(b.len(), 4 + 16 + 24);
        assert_eq!(i32::from_le_bytes(b[0..4].try_into().unwrap()), 2);
        assert_eq!(i64::from_le_bytes(b[4..12].try_into().unwrap()), 2);
        assert_eq!(f32::from_le_bytes(b[40..44].try_into().unwrap()), 6.0);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no staging folder left: {names:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_bad_checkpoints_and_cleans_up_when_dropped() {
        let dir = scratch("bad");
        let target = dir.join("run");
        let mut w = Writer::create(&target, "test").unwrap();
        assert!(w.put(0, "x", &[3], &[1.0]).is_err());
        assert!(w.put(0, "../escape", &[1], &[1.0]).is_err());
        w.put(0, "x", &[1], &[1.0]).unwrap();
        assert!(w.put(0, "x", &[1], &[1.0]).is_err());
        drop(w);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn never_overwrites_what_is_not_a_dump_folder() {
        let dir = scratch("guard");
        fs::create_dir_all(dir.join("precious")).unwrap();
        fs::write(dir.join("precious/notes.txt"), "keep").unwrap();
        assert!(matches!(
            Writer::create(dir.join("precious"), "test"),
            Err(DumpError::NotADumpFolder(_))
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
