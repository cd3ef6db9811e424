//! A validating GGUF reader over a memory map.
//!
//! Every count, length, offset and size is checked against the bytes that remain before it is
//! used, so a hostile file gets an error that names the field and its byte offset instead of a
//! panic or a huge allocation.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{DEFAULT_ALIGNMENT, MAX_DIMS, MAX_NAME};
use crate::quant::GgmlType;

pub(crate) const MAGIC: &[u8; 4] = b"GGUF";

/// Nested arrays deeper than this are refused: each level costs only 12 bytes of file but one
/// stack frame of the reader.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Smallest encoded size of a metadata pair: key length (8), one key byte, value type (4), a
/// one-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Smallest encoded size of a tensor info: name length (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    // The I/O error is part of the message, not a `source`, so a printed chain names it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The bytes do not form a valid GGUF file.
    #[error("{field} at byte {offset}: {msg}")]
    Malformed {
        field: String,
        offset: u64,
        msg: String,
    },
    #[error("tensor '{tensor}' (type field at byte {offset}): {}", crate::quant::UnknownType(*.id))]
    UnknownTensorType {
        tensor: String,
        id: u32,
        offset: u64,
    },
    #[error("no tensor named '{0}' in the file")]
    MissingTensor(String),
    #[error("metadata key '{0}' is missing")]
    MissingKey(String),
    /// A key is present but its value does not fit its use.
    #[error("metadata key '{key}': {msg}")]
    BadValue { key: String, msg: String },
    #[error("unsupported architecture '{0}' (supported: llama, qwen2, qwen3, gemma3, gpt2)")]
    UnsupportedArch(String),
    /// The writer was asked for something the format cannot hold.
    #[error("{0}")]
    Write(String),
}

impl GgufError {
    fn malformed(field: impl Into<String>, offset: u64, msg: impl Into<String>) -> Self {
        GgufError::Malformed {
            field: field.into(),
            offset,
            msg: msg.into(),
        }
    }
}

/// A metadata value. Integers keep their on-disk width so a file reads back field for field.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The GGUF value type id (`gguf_type`).
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::Str(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// gguf.cpp's short type name (`u32`, `str`, `arr`, ...).
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_id())
    }

    /// Any integer type whose value is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type whose value fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// F32, or F64 narrowed.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Short, one-line rendering; arrays show their length and first few elements.
impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::Str(s) => write!(f, "{s:?}"),
            MetaValue::Array(a) => {
                write!(f, "[{} items", a.len())?;
                for (i, v) in a.iter().take(4).enumerate() {
                    write!(f, "{}{v}", if i == 0 { ": " } else { ", " })?;
                }
                if a.len() > 4 {
                    write!(f, ", ...")?;
                }
                write!(f, "]")
            }
        }
    }
}

pub(crate) fn type_name(id: u32) -> &'static str {
    match id {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "str",
        9 => "arr",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// Smallest encoded size of one value of a type, or None for an unknown type id.
/// Initial capacity for `n` entries announced by a count field: at most 65536, the rest grows
/// as entries are read, so a count that fits the file's size but not its content never
/// reserves more than a few MB.
fn capacity(n: u64) -> usize {
    n.min(1 << 16) as usize
}

fn min_value_bytes(id: u32) -> Option<u64> {
    Some(match id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10 | 11 | 12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml `ne` order: innermost (row length) first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute file offset of the first byte.
    pub offset: u64,
    pub n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (`ne[0]`; 1 for a zero-dimensional tensor).
    pub fn row_len(&self) -> usize {
        self.dims.first().map_or(1, |&d| d as usize)
    }

    /// Rows: the product of the outer dimensions.
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
}

/// A tensor's bytes inside the file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn row_len(&self) -> usize {
        self.info.row_len()
    }

    pub fn n_rows(&self) -> usize {
        self.info.n_rows()
    }

    /// Bytes of one row (validated when the file was opened).
    pub fn row_bytes(&self) -> usize {
        self.info.ggml_type.row_size(self.row_len()).unwrap_or(0)
    }

    /// Row `i`. Panics when `i >= n_rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[i * rb..(i + 1) * rb]
    }
}

enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// An open, fully validated GGUF file.
pub struct GgufFile {
    backing: Backing,
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("size", &self.bytes().len())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and validates a file.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let backing = if len == 0 {
            // An empty mapping is not portable; an empty file fails on its magic either way.
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only. Like every mmap reader we assume nobody truncates the
            // file while it is open; every offset was checked against the length we mapped.
            Backing::Map(unsafe { Mmap::map(&file) }.map_err(io)?)
        };
        Self::parse(backing)
    }

    /// Validates a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(Backing::Owned(bytes))
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data-section alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        const KEY: &str = "general.architecture";
        let v = self
            .get(KEY)
            .ok_or_else(|| GgufError::MissingKey(KEY.into()))?;
        v.as_str().ok_or_else(|| GgufError::BadValue {
            key: KEY.into(),
            msg: format!("expected a string, found {}", v.type_name()),
        })
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }

    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        let &i = self
            .tensor_index
            .get(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let info = &self.tensors[i];
        let start = info.offset as usize;
        // Bounds were validated in parse.
        Ok(TensorView {
            info,
            data: &self.bytes()[start..start + info.n_bytes],
        })
    }

    fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    fn parse(backing: Backing) -> Result<GgufFile, GgufError> {
        let parsed = Parser::new(backing.bytes()).file()?;
        Ok(GgufFile {
            backing,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            meta_index: parsed
                .metadata
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect(),
            metadata: parsed.metadata,
            tensor_index: parsed
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: parsed.tensors,
        })
    }
}

struct Parsed {
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Parser { buf, pos: 0 }
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::malformed(
                field(),
                self.pos as u64,
                format!(
                    "needs {n} bytes but the file ends at byte {}",
                    self.buf.len()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self, field: &dyn Fn() -> String) -> Result<String, GgufError> {
        let at = self.pos as u64;
        let len = self.u64(&|| format!("{} length", field()))?;
        if len > self.remaining() {
            return Err(GgufError::malformed(
                format!("{} length", field()),
                at,
                format!(
                    "{len} bytes, but only {} bytes remain in the file",
                    self.remaining()
                ),
            ));
        }
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| GgufError::malformed(field(), at + 8, format!("not valid UTF-8 ({e})")))
    }

    fn file(mut self) -> Result<Parsed, GgufError> {
        let magic: [u8; 4] = self.array(&|| "header magic".into())?;
        if &magic != MAGIC {
            return Err(GgufError::malformed(
                "header magic",
                0,
                format!(
                    "expected \"GGUF\", found {:?}",
                    String::from_utf8_lossy(&magic)
                ),
            ));
        }
        let version = self.u32(&|| "header version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(GgufError::malformed(
                    "header version",
                    4,
                    "GGUF v1 is not supported (only v2 and v3)",
                ))
            }
            v if v & 0xFFFF == 0 => {
                return Err(GgufError::malformed(
                    "header version",
                    4,
                    format!("{v:#x} looks byte-swapped: big-endian files are not supported"),
                ))
            }
            v => {
                return Err(GgufError::malformed(
                    "header version",
                    4,
                    format!("unsupported version {v} (only 2 and 3)"),
                ))
            }
        }

        let at = self.pos as u64;
        let n_tensors = self.u64(&|| "header tensor_count".into())?;
        let at_kv = self.pos as u64;
        let n_kv = self.u64(&|| "header metadata_kv_count".into())?;
        // Tensor infos follow the metadata, so both counts share the rest of the file.
        if n_kv > self.remaining() / MIN_KV_BYTES {
            return Err(GgufError::malformed(
                "header metadata_kv_count",
                at_kv,
                format!(
                    "{n_kv} pairs cannot fit in the {} bytes that remain (each takes at least {MIN_KV_BYTES})",
                    self.remaining()
                ),
            ));
        }
        if n_tensors > self.remaining() / MIN_TENSOR_INFO_BYTES {
            return Err(GgufError::malformed(
                "header tensor_count",
                at,
                format!(
                    "{n_tensors} tensor infos cannot fit in the {} bytes that remain (each takes at least {MIN_TENSOR_INFO_BYTES})",
                    self.remaining()
                ),
            ));
        }

        // The counts only bound what fits in the file, and an entry in memory is several times
        // its smallest encoding: capacity grows with entries actually read.
        let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(capacity(n_kv));
        let mut seen: HashMap<String, ()> = HashMap::with_capacity(capacity(n_kv));
        for i in 0..n_kv {
            let key_at = self.pos as u64;
            let key = self.string(&|| format!("metadata[{i}] key"))?;
            if key.is_empty() {
                return Err(GgufError::malformed(
                    format!("metadata[{i}] key"),
                    key_at,
                    "empty key",
                ));
            }
            if seen.insert(key.clone(), ()).is_some() {
                return Err(GgufError::malformed(
                    format!("metadata[{i}] key"),
                    key_at,
                    format!("duplicate key '{key}'"),
                ));
            }
            let ty_at = self.pos as u64;
            let ty = self.u32(&|| format!("metadata '{key}' value type"))?;
            if min_value_bytes(ty).is_none() {
                return Err(GgufError::malformed(
                    format!("metadata '{key}' value type"),
                    ty_at,
                    format!("unknown value type id {ty}"),
                ));
            }
            let value = self.value(ty, 0, &|| format!("metadata '{key}'"))?;
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, MetaValue::U32(a))) if *a != 0 && a.is_power_of_two() => *a,
            Some((_, v)) => {
                return Err(GgufError::BadValue {
                    key: "general.alignment".into(),
                    msg: format!("must be a u32 power of two, found {} {v}", v.type_name()),
                })
            }
        };

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(capacity(n_tensors));
        let mut offset_fields: Vec<(u64, u64)> = Vec::with_capacity(capacity(n_tensors));
        let mut names: HashMap<String, ()> = HashMap::with_capacity(capacity(n_tensors));
        for i in 0..n_tensors {
            let name_at = self.pos as u64;
            let name = self.string(&|| format!("tensor_info[{i}] name"))?;
            if name.len() >= MAX_NAME {
                return Err(GgufError::malformed(
                    format!("tensor_info[{i}] name"),
                    name_at,
                    format!(
                        "{} bytes long; ggml allows at most {}",
                        name.len(),
                        MAX_NAME - 1
                    ),
                ));
            }
            if names.insert(name.clone(), ()).is_some() {
                return Err(GgufError::malformed(
                    format!("tensor_info[{i}] name"),
                    name_at,
                    format!("duplicate tensor name '{name}'"),
                ));
            }
            let nd_at = self.pos as u64;
            let n_dims = self.u32(&|| format!("tensor '{name}' n_dims"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::malformed(
                    format!("tensor '{name}' n_dims"),
                    nd_at,
                    format!("{n_dims} dimensions; ggml allows at most {MAX_DIMS}"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut n_elements: u64 = 1;
            for d in 0..n_dims {
                let d_at = self.pos as u64;
                let v = self.u64(&|| format!("tensor '{name}' dims[{d}]"))?;
                if v > i64::MAX as u64 {
                    return Err(GgufError::malformed(
                        format!("tensor '{name}' dims[{d}]"),
                        d_at,
                        format!("{v} does not fit ggml's int64 ne"),
                    ));
                }
                n_elements = n_elements
                    .checked_mul(v)
                    .filter(|&n| n <= i64::MAX as u64)
                    .ok_or_else(|| {
                        GgufError::malformed(
                            format!("tensor '{name}' dims[{d}]"),
                            d_at,
                            "element count overflows int64",
                        )
                    })?;
                dims.push(v);
            }
            let ty_at = self.pos as u64;
            let ty_id = self.u32(&|| format!("tensor '{name}' type"))?;
            let ggml_type = GgmlType::from_id(ty_id).map_err(|_| GgufError::UnknownTensorType {
                tensor: name.clone(),
                id: ty_id,
                offset: ty_at,
            })?;
            let row_len = dims.first().copied().unwrap_or(1);
            let n_bytes = (|| {
                let row = ggml_type.row_size(usize::try_from(row_len).ok()?)?;
                let rows = usize::try_from(dims.iter().skip(1).product::<u64>()).ok()?;
                row.checked_mul(rows)
            })()
            .ok_or_else(|| {
                GgufError::malformed(
                    format!("tensor '{name}' dims"),
                    nd_at,
                    format!(
                        "rows of {row_len} {ggml_type} elements are not whole blocks of {} or the size overflows",
                        ggml_type.block_size()
                    ),
                )
            })?;
            let off_at = self.pos as u64;
            let rel = self.u64(&|| format!("tensor '{name}' offset"))?;
            if rel % u64::from(alignment) != 0 {
                return Err(GgufError::malformed(
                    format!("tensor '{name}' offset"),
                    off_at,
                    format!("{rel} is not a multiple of the alignment {alignment}"),
                ));
            }
            offset_fields.push((off_at, rel));
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: 0,
                n_bytes,
            });
        }

        let file_len = self.buf.len() as u64;
        let end_of_infos = self.pos as u64;
        let data_offset = end_of_infos.div_ceil(u64::from(alignment)) * u64::from(alignment);
        if !tensors.is_empty() && data_offset > file_len {
            return Err(GgufError::malformed(
                "data section",
                end_of_infos,
                format!("starts at byte {data_offset} (aligned to {alignment}) but the file ends at byte {file_len}"),
            ));
        }
        for (t, &(off_at, rel)) in tensors.iter_mut().zip(&offset_fields) {
            let end = data_offset
                .checked_add(rel)
                .and_then(|s| s.checked_add(t.n_bytes as u64));
            match end {
                Some(end) if end <= file_len => t.offset = data_offset + rel,
                _ => {
                    return Err(GgufError::malformed(
                        format!("tensor '{}' offset", t.name),
                        off_at,
                        format!(
                            "{} bytes of data at relative offset {rel} (data section at byte {data_offset}) run past the end of the file ({file_len} bytes)",
                            t.n_bytes
                        ),
                    ))
                }
            }
        }
        let mut order: Vec<usize> = (0..tensors.len())
            .filter(|&i| tensors[i].n_bytes > 0)
            .collect();
        order.sort_by_key(|&i| tensors[i].offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if b.offset < a.offset + a.n_bytes as u64 {
                return Err(GgufError::malformed(
                    format!("tensor '{}' offset", b.name),
                    offset_fields[w[1]].0,
                    format!(
                        "data [{}, {}) overlaps tensor '{}' [{}, {})",
                        b.offset,
                        b.offset + b.n_bytes as u64,
                        a.name,
                        a.offset,
                        a.offset + a.n_bytes as u64
                    ),
                ));
            }
        }

        Ok(Parsed {
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
        })
    }

    fn value(
        &mut self,
        ty: u32,
        depth: usize,
        field: &dyn Fn() -> String,
    ) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.array(field)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(field)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(field)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(field)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(field)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(field)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(field)?)),
            7 => {
                let at = self.pos as u64;
                match self.array::<1>(field)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(GgufError::malformed(
                            field(),
                            at,
                            format!("bool byte is {b}, not 0 or 1"),
                        ))
                    }
                }
            }
            8 => MetaValue::Str(self.string(field)?),
            9 => {
                let ty_at = self.pos as u64;
                let ety = self.u32(&|| format!("{} array element type", field()))?;
                let min = min_value_bytes(ety).ok_or_else(|| {
                    GgufError::malformed(
                        format!("{} array element type", field()),
                        ty_at,
                        format!("unknown value type id {ety}"),
                    )
                })?;
                if ety == 9 && depth + 1 >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::malformed(
                        format!("{} array element type", field()),
                        ty_at,
                        format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
                    ));
                }
                let len_at = self.pos as u64;
                let n = self.u64(&|| format!("{} array length", field()))?;
                if n > self.remaining() / min {
                    return Err(GgufError::malformed(
                        format!("{} array length", field()),
                        len_at,
                        format!(
                            "{n} {} elements cannot fit in the {} bytes that remain",
                            type_name(ety),
                            self.remaining()
                        ),
                    ));
                }
                // Capacity grows with elements actually read; a MetaValue is wider than a byte.
                let mut items = Vec::with_capacity(capacity(n));
                for i in 0..n {
                    items.push(self.value(ety, depth + 1, &|| format!("{}[{i}]", field()))?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(field)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(field)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(field)?)),
            _ => {
                return Err(GgufError::malformed(
                    format!("{} value type", field()),
                    self.pos as u64,
                    format!("unknown value type id {ty}"),
                ))
            }
        })
    }
}
