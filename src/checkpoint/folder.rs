//! Dump folders: `manifest.json` plus `step{N}/{name}.bin` (or `.npy`).
//!
//! A folder without a manifest is accepted too (another engine's dumps): its files are found by
//! walking `step{N}/` subfolders, or the top level as step 0, and ordered by the catalogue.

use std::fs;
use std::path::{Path, PathBuf};

use super::catalogue::{CheckpointId, CheckpointName};
use super::format::{encode, read_dump, write_atomic, DumpError, Tensor};
use super::manifest::{Entry, Manifest, FILE_NAME};
use super::npy::read_npy;

/// File name of a checkpoint inside a folder.
pub fn relative_file(step: u32, name: &CheckpointName) -> String {
    format!("step{step}/{name}.bin")
}

/// Writes a dump folder all at once: files go to a hidden sibling folder that replaces the
/// target only when [`DumpWriter::finish`] succeeds, so a failed run leaves no partial folder.
pub struct DumpWriter {
    target: PathBuf,
    staging: PathBuf,
    /// Step folders made so far.
    step_dirs: std::collections::BTreeSet<u32>,
    pub manifest: Manifest,
}

impl DumpWriter {
    pub fn create(target: &Path, manifest: Manifest) -> Result<Self, DumpError> {
        if target.exists() && !is_replaceable(target) {
            return Err(DumpError::format(
                target,
                "exists and is not a dump folder (no manifest.json); refusing to overwrite it",
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dump".into());
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| DumpError::io(parent, e))?;
        let staging = crate::staging::staging_path(parent, &name);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| DumpError::io(&staging, e))?;
        }
        crate::staging::register(&staging);
        if let Err(e) = fs::create_dir_all(&staging) {
            crate::staging::unregister(&staging);
            return Err(DumpError::io(&staging, e));
        }
        Ok(DumpWriter {
            target: target.to_path_buf(),
            staging,
            step_dirs: Default::default(),
            manifest,
        })
    }

    /// Adds one checkpoint; fails once the run was interrupted by a signal.
    pub fn add(&mut self, step: u32, name: &CheckpointName, t: &Tensor) -> Result<(), DumpError> {
        self.add_entry(step, name, None, t)
    }

    /// Adds one graph node's value, recording its ggml op.
    pub fn add_node(
        &mut self,
        step: u32,
        name: &CheckpointName,
        op: &str,
        t: &Tensor,
    ) -> Result<(), DumpError> {
        self.add_entry(step, name, Some(op.to_string()), t)
    }

    fn add_entry(
        &mut self,
        step: u32,
        name: &CheckpointName,
        op: Option<String>,
        t: &Tensor,
    ) -> Result<(), DumpError> {
        crate::staging::check().map_err(|e| DumpError::io(&self.staging, e))?;
        let file = relative_file(step, name);
        let path = self.staging.join(&file);
        if self.step_dirs.insert(step) {
            let dir = path.parent().unwrap_or(&self.staging);
            fs::create_dir_all(dir).map_err(|e| DumpError::io(dir, e))?;
        }
        // Written in place: the staging folder as a whole is what appears atomically.
        fs::write(&path, encode(t)).map_err(|e| DumpError::io(&path, e))?;
        self.manifest.checkpoints.push(Entry {
            step,
            name: name.to_string(),
            file,
            shape: t.shape.clone(),
            op,
        });
        Ok(())
    }

    pub fn finish(mut self) -> Result<PathBuf, DumpError> {
        self.manifest.checkpoints.sort_by(|a, b| {
            (a.step, CheckpointName::parse(&a.name)).cmp(&(b.step, CheckpointName::parse(&b.name)))
        });
        let json = serde_json::to_vec_pretty(&self.manifest).expect("manifest serialises");
        write_atomic(&self.staging.join(FILE_NAME), &json)?;
        if self.target.exists() {
            fs::remove_dir_all(&self.target).map_err(|e| DumpError::io(&self.target, e))?;
        }
        fs::rename(&self.staging, &self.target).map_err(|e| DumpError::io(&self.target, e))?;
        crate::staging::unregister(&self.staging);
        Ok(self.target.clone())
    }
}

impl Drop for DumpWriter {
    fn drop(&mut self) {
        // Only present if finish() was not reached.
        let _ = fs::remove_dir_all(&self.staging);
        crate::staging::unregister(&self.staging);
    }
}

/// One checkpoint waiting for the writer thread: step, name, the ggml op of a graph node dumped
/// as itself (`--all-nodes`), the value.
type Queued = (u32, CheckpointName, Option<String>, Tensor);

/// A [`DumpWriter`] on a thread of its own: the producer hands over each checkpoint and goes on
/// computing while the files are written. What waits to be written is bounded in bytes, not in
/// checkpoints, so that a step's checkpoints can all be handed over at once (the producer then
/// computes the next step while they are written) while a long prompt's cannot fill the memory.
pub struct BackgroundWriter {
    tx: Option<std::sync::mpsc::Sender<Queued>>,
    pending: std::sync::Arc<Pending>,
    limit: usize,
    handle: Option<std::thread::JoinHandle<Result<DumpWriter, DumpError>>>,
}

/// Bytes handed over and not yet written; zeroed when the writer thread ends, so that a producer
/// waiting for room goes on to find the thread gone instead of waiting forever.
#[derive(Default)]
struct Pending {
    bytes: std::sync::Mutex<usize>,
    written: std::sync::Condvar,
}

impl Pending {
    fn release(&self, bytes: usize) {
        let mut n = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(bytes);
        self.written.notify_all();
    }
}

/// Ends the writer thread's accounting however the thread ends (an error or a panic included).
struct CloseOnDrop(std::sync::Arc<Pending>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.release(usize::MAX);
    }
}

impl BackgroundWriter {
    /// At most `limit` bytes of checkpoints (more if one checkpoint alone is larger) wait to be
    /// written; `add` blocks beyond that.
    pub fn new(mut writer: DumpWriter, limit: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Queued>();
        let pending = std::sync::Arc::new(Pending::default());
        let closer = CloseOnDrop(pending.clone());
        let handle = std::thread::Builder::new()
            .name("dump-writer".into())
            .spawn(move || {
                let closer = closer;
                for (step, name, op, t) in rx {
                    writer.add_entry(step, &name, op, &t)?;
                    closer.0.release(t.data.len() * 4);
                }
                Ok(writer)
            })
            .expect("spawn the dump writer thread");
        BackgroundWriter {
            tx: Some(tx),
            pending,
            limit,
            handle: Some(handle),
        }
    }

    /// Queues one checkpoint. A write that failed earlier is reported here (or by `finish`).
    pub fn add(&mut self, step: u32, name: &CheckpointName, t: Tensor) -> Result<(), DumpError> {
        self.send(step, name, None, t)
    }

    /// Queues one graph node's value with its ggml op.
    pub fn add_node(
        &mut self,
        step: u32,
        name: &CheckpointName,
        op: &str,
        t: Tensor,
    ) -> Result<(), DumpError> {
        self.send(step, name, Some(op.to_string()), t)
    }

    fn send(
        &mut self,
        step: u32,
        name: &CheckpointName,
        op: Option<String>,
        t: Tensor,
    ) -> Result<(), DumpError> {
        let bytes = t.data.len() * 4;
        {
            let p = &self.pending;
            let mut n = p.bytes.lock().unwrap_or_else(|e| e.into_inner());
            while *n > 0 && n.saturating_add(bytes) > self.limit {
                n = p.written.wait(n).unwrap_or_else(|e| e.into_inner());
            }
            *n = n.saturating_add(bytes);
        }
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((step, name.clone(), op, t)).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(DumpError::format(
                Path::new("."),
                "the dump writer thread stopped",
            )),
        }
    }

    /// Waits for every queued checkpoint to be written and returns the writer.
    pub fn finish(mut self) -> Result<DumpWriter, DumpError> {
        self.join()
    }

    fn join(&mut self) -> Result<DumpWriter, DumpError> {
        self.tx = None;
        let handle = self
            .handle
            .take()
            .ok_or_else(|| DumpError::format(Path::new("."), "the dump writer thread stopped"))?;
        match handle.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Unfinished: the writer's own Drop removes its staging folder.
        if self.handle.is_some() {
            let _ = self.join();
        }
    }
}

fn is_replaceable(dir: &Path) -> bool {
    dir.join(FILE_NAME).is_file()
        || fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}

/// One checkpoint file in a folder being read.
#[derive(Debug, Clone)]
pub struct FolderEntry {
    pub id: CheckpointId,
    pub path: PathBuf,
    /// From the manifest, when there is one; checked against the file on load.
    pub shape: Option<Vec<usize>>,
}

/// A dump folder opened for reading.
#[derive(Debug, Clone)]
pub struct DumpFolder {
    pub dir: PathBuf,
    pub manifest: Option<Manifest>,
    /// In graph order: step, then catalogue order.
    pub entries: Vec<FolderEntry>,
}

impl DumpFolder {
    pub fn open(dir: &Path) -> Result<Self, DumpError> {
        if !dir.is_dir() {
            let what = if dir.exists() {
                "is not a folder"
            } else {
                "no such folder"
            };
            return Err(DumpError::format(dir, what));
        }
        let manifest_path = dir.join(FILE_NAME);
        let mut entries = Vec::new();
        let manifest = if manifest_path.is_file() {
            let bytes = fs::read(&manifest_path).map_err(|e| DumpError::io(&manifest_path, e))?;
            let m = Manifest::parse(&bytes, &manifest_path)?;
            for e in &m.checkpoints {
                entries.push(FolderEntry {
                    id: CheckpointId {
                        step: e.step,
                        name: CheckpointName::parse(&e.name),
                    },
                    path: dir.join(&e.file),
                    shape: Some(e.shape.clone()),
                });
            }
            Some(m)
        } else {
            scan(dir, 0, &mut entries)?;
            for sub in read_dir_sorted(dir)? {
                let step = sub
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("step"))
                    .and_then(|s| s.parse::<u32>().ok());
                if let (true, Some(step)) = (sub.is_dir(), step) {
                    scan(&sub, step, &mut entries)?;
                }
            }
            if entries.is_empty() {
                return Err(DumpError::format(
                    dir,
                    "no manifest.json and no .bin or .npy checkpoint files",
                ));
            }
            None
        };
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        for w in entries.windows(2) {
            if w[0].id == w[1].id {
                return Err(DumpError::format(
                    dir,
                    format!("checkpoint {} appears twice", w[0].id),
                ));
            }
        }
        Ok(DumpFolder {
            dir: dir.to_path_buf(),
            manifest,
            entries,
        })
    }

    /// Reads one checkpoint, checking it against the manifest's shape.
    pub fn load(&self, entry: &FolderEntry) -> Result<Tensor, DumpError> {
        let t = match entry.path.extension().and_then(|e| e.to_str()) {
            Some("npy") => read_npy(&entry.path)?,
            _ => read_dump(&entry.path)?,
        };
        if let Some(shape) = &entry.shape {
            if shape != &t.shape {
                return Err(DumpError::format(
                    &entry.path,
                    format!(
                        "shape {:?} differs from the manifest's {:?}",
                        t.shape, shape
                    ),
                ));
            }
        }
        Ok(t)
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DumpError> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DumpError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn scan(dir: &Path, step: u32, out: &mut Vec<FolderEntry>) -> Result<(), DumpError> {
    for p in read_dir_sorted(dir)? {
        let ext = p.extension().and_then(|e| e.to_str());
        if !p.is_file() || !matches!(ext, Some("bin") | Some("npy")) {
            continue;
        }
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        out.push(FolderEntry {
            id: CheckpointId {
                step,
                name: CheckpointName::parse(&stem),
            },
            path: p,
            shape: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("llorch-folder-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn background_writer_writes_everything_past_its_limit() {
        let dir = scratch("limit");
        let target = dir.join("dump");
        let writer = DumpWriter::create(&target, Manifest::new("test")).unwrap();
        // Each checkpoint alone is over the limit: every one waits for the one before.
        let mut bg = BackgroundWriter::new(writer, 100);
        for i in 0..20u32 {
            let t = Tensor::new(vec![64], (0..64).map(|j| (i * 64 + j) as f32).collect());
            bg.add(0, &CheckpointName::parse(&format!("blk.{i}.l_out")), t)
                .unwrap();
        }
        let out = bg.finish().unwrap().finish().unwrap();
        let folder = DumpFolder::open(&out).unwrap();
        assert_eq!(folder.entries.len(), 20);
        for e in &folder.entries {
            let i = e.id.name.layer_index().unwrap();
            let t = folder.load(e).unwrap();
            assert_eq!(t.data[0], (i * 64) as f32);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_ends_the_wait_for_room() {
        let dir = scratch("fail");
        let writer = DumpWriter::create(&dir.join("dump"), Manifest::new("test")).unwrap();
        // The staging folder replaced by a file: the first write fails.
        fs::remove_dir_all(&writer.staging).unwrap();
        fs::write(&writer.staging, b"").unwrap();
        let staging = writer.staging.clone();
        let mut bg = BackgroundWriter::new(writer, 1);
        let failed = (0..50u32).any(|i| {
            let t = Tensor::new(vec![16], vec![0.0; 16]);
            bg.add(0, &CheckpointName::parse(&format!("blk.{i}.l_out")), t)
                .is_err()
        });
        assert!(failed || bg.finish().is_err());
        let _ = fs::remove_file(&staging);
        let _ = fs::remove_dir_all(&dir);
    }
}
