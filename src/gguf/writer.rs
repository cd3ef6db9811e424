//! A streaming GGUF v3 writer.
//!
//! Metadata and tensor infos are declared first; `write` then lays out the header and asks a
//! callback for each tensor's bytes in turn, so at most one tensor is in memory. The file is
//! written under a temporary name in the target's folder and renamed into place at the end: a
//! failed write leaves nothing behind.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::reader::{GgufError, MetaValue, TensorInfo, MAGIC, MAX_ARRAY_DEPTH};
use super::{DEFAULT_ALIGNMENT, MAX_DIMS, MAX_NAME};
use crate::quant::GgmlType;

pub const VERSION: u32 = 3;

#[derive(Debug, Clone)]
pub struct GgufWriter {
    alignment: u32,
    metadata: Vec<(String, MetaValue)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Sets the data alignment and records it as `general.alignment` (a u32 power of two).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, GgufError> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::Write(format!(
                "alignment {alignment} is not a power of two"
            )));
        }
        self.alignment = alignment;
        if let Some(slot) = self
            .metadata
            .iter_mut()
            .find(|(k, _)| k == "general.alignment")
        {
            slot.1 = MetaValue::U32(alignment);
        } else {
            self.add_meta("general.alignment", MetaValue::U32(alignment))?;
        }
        Ok(self)
    }

    /// Appends a metadata pair (file order is call order). Arrays must be homogeneous.
    pub fn add_meta(
        &mut self,
        key: impl Into<String>,
        value: MetaValue,
    ) -> Result<&mut Self, GgufError> {
        let key = key.into();
        if key.is_empty() {
            return Err(GgufError::Write("metadata key is empty".into()));
        }
        if key == "general.alignment"
            && !matches!(value, MetaValue::U32(a) if a != 0 && a.is_power_of_two())
        {
            return Err(GgufError::Write(
                "general.alignment must be a u32 power of two (use set_alignment)".into(),
            ));
        }
        check_value(&key, &value, 0)?;
        if !self.keys.insert(key.clone()) {
            return Err(GgufError::Write(format!("duplicate metadata key '{key}'")));
        }
        if let MetaValue::U32(a) = value {
            if key == "general.alignment" {
                self.alignment = a;
            }
        }
        self.metadata.push((key, value));
        Ok(self)
    }

    /// Declares a tensor (file order is call order). `dims` are ggml `ne`, innermost first.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        if name.len() >= MAX_NAME {
            return Err(GgufError::Write(format!(
                "tensor name '{name}' is longer than {} bytes",
                MAX_NAME - 1
            )));
        }
        if dims.len() > MAX_DIMS {
            return Err(GgufError::Write(format!(
                "tensor '{name}' has {} dims; ggml allows {MAX_DIMS}",
                dims.len()
            )));
        }
        let row_len = dims.first().copied().unwrap_or(1);
        let n_bytes = usize::try_from(row_len)
            .ok()
            .and_then(|r| ggml_type.row_size(r))
            .and_then(|rb| {
                rb.checked_mul(usize::try_from(dims.iter().skip(1).product::<u64>()).ok()?)
            })
            .ok_or_else(|| {
                GgufError::Write(format!(
                    "tensor '{name}': rows of {row_len} are not whole {ggml_type} blocks of {}",
                    ggml_type.block_size()
                ))
            })?;
        if !self.names.insert(name.clone()) {
            return Err(GgufError::Write(format!("duplicate tensor '{name}'")));
        }
        self.tensors.push(TensorInfo {
            name,
            dims: dims.to_vec(),
            ggml_type,
            offset: 0,
            n_bytes,
        });
        Ok(self)
    }

    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// The declared tensors with the absolute offsets they will have in the file.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let (infos, _) = self.layout();
        infos
    }

    /// Header bytes, tensor infos with absolute offsets, and the data section's start.
    fn layout(&self) -> (Vec<TensorInfo>, u64) {
        let a = u64::from(self.alignment);
        let header = self.header_bytes();
        let data_start = (header.len() as u64).div_ceil(a) * a;
        let mut rel = 0u64;
        let infos = self
            .tensors
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.offset = data_start + rel;
                rel += (t.n_bytes as u64).div_ceil(a) * a;
                t
            })
            .collect();
        (infos, data_start)
    }

    fn header_bytes(&self) -> Vec<u8> {
        let a = u64::from(self.alignment);
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut b, k);
            b.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut b, v);
        }
        let mut rel = 0u64;
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            b.extend_from_slice(&rel.to_le_bytes());
            rel += (t.n_bytes as u64).div_ceil(a) * a;
        }
        b
    }

    /// Writes the file. `fill` gets each tensor (in declaration order) and a zeroed buffer of
    /// exactly its byte size to fill.
    pub fn write<F>(&self, path: &Path, mut fill: F) -> Result<(), GgufError>
    where
        F: FnMut(&TensorInfo, &mut [u8]) -> Result<(), GgufError>,
    {
        let tmp = temp_path(path);
        let io = |error| GgufError::Io {
            path: tmp.clone(),
            error,
        };
        let result = (|| {
            let file = File::create(&tmp).map_err(io)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let header = self.header_bytes();
            let (infos, _) = self.layout();
            w.write_all(&header).map_err(io)?;
            let mut pos = header.len() as u64;
            let zeros = vec![0u8; self.alignment as usize];
            for t in &infos {
                let pad = (t.offset - pos) as usize;
                w.write_all(&zeros[..pad]).map_err(io)?;
                let mut buf = vec![0u8; t.n_bytes];
                fill(t, &mut buf)?;
                w.write_all(&buf).map_err(io)?;
                pos = t.offset + t.n_bytes as u64;
            }
            // Pad the last tensor too, as gguf.cpp does: loaders may read whole aligned blocks.
            if !infos.is_empty() {
                let a = u64::from(self.alignment);
                let end = pos.div_ceil(a) * a;
                w.write_all(&zeros[..(end - pos) as usize]).map_err(io)?;
            }
            let file = w.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
            drop(file);
            fs::rename(&tmp, path).map_err(|error| GgufError::Io {
                path: path.to_path_buf(),
                error,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// A sibling of `path`, so the final rename stays on one filesystem.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.gguf".into());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

fn check_value(key: &str, v: &MetaValue, depth: usize) -> Result<(), GgufError> {
    if let MetaValue::Array(items) = v {
        if depth + 1 >= MAX_ARRAY_DEPTH {
            return Err(GgufError::Write(format!(
                "metadata '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH}"
            )));
        }
        if let Some(first) = items.first() {
            let t = first.type_id();
            if let Some(other) = items.iter().find(|x| x.type_id() != t) {
                return Err(GgufError::Write(format!(
                    "metadata '{key}': array mixes {} and {}",
                    first.type_name(),
                    other.type_name()
                )));
            }
            for x in items {
                check_value(key, x, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => b.push(u8::from(*x)),
        MetaValue::Str(s) => put_str(b, s),
        MetaValue::Array(items) => {
            // An empty array carries no element type; u8 is as good as any.
            let ety = items.first().map_or(0, MetaValue::type_id);
            b.extend_from_slice(&ety.to_le_bytes());
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_value(b, x);
            }
        }
        MetaValue::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
    }
}
