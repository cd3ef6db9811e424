//! The dump format: `[n_dims: i32][shape: i64 × n_dims, outermost first][data: f32]`,
//! little-endian, C-contiguous. One file per checkpoint and step.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LittleEndian};

/// Dimensions beyond this are refused: no checkpoint has more than 3.
pub const MAX_DIMS: i32 = 8;

/// An f32 tensor in C order, shape outermost first.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Panics if the shape does not hold exactly `data.len()` elements (a programming error).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} vs {} elements",
            data.len()
        );
        Tensor { shape, data }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a dump file: {reason}")]
    Format { path: PathBuf, reason: String },
}

impl DumpError {
    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Self {
        DumpError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        DumpError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Serialises a tensor into dump bytes.
pub fn encode(t: &Tensor) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * t.shape.len() + 4 * t.data.len());
    out.extend_from_slice(&(t.shape.len() as i32).to_le_bytes());
    for &d in &t.shape {
        out.extend_from_slice(&(d as i64).to_le_bytes());
    }
    let start = out.len();
    out.resize(start + 4 * t.data.len(), 0);
    LittleEndian::write_f32_into(&t.data, &mut out[start..]);
    out
}

/// Parses dump bytes, checking the header against the byte count before trusting it.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Tensor, DumpError> {
    if bytes.len() < 4 {
        return Err(DumpError::format(
            path,
            format!("{} bytes, shorter than the 4-byte header", bytes.len()),
        ));
    }
    let n_dims = LittleEndian::read_i32(&bytes[0..4]);
    if !(0..=MAX_DIMS).contains(&n_dims) {
        return Err(DumpError::format(
            path,
            format!("n_dims is {n_dims}, expected 0..={MAX_DIMS}"),
        ));
    }
    let header = 4 + 8 * n_dims as usize;
    if bytes.len() < header {
        return Err(DumpError::format(
            path,
            format!(
                "truncated header: {n_dims} dims need {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let mut shape = Vec::with_capacity(n_dims as usize);
    let mut count: u64 = 1;
    for i in 0..n_dims as usize {
        let d = LittleEndian::read_i64(&bytes[4 + 8 * i..12 + 8 * i]);
        if d < 0 {
            return Err(DumpError::format(
                path,
                format!("dimension {i} is negative ({d})"),
            ));
        }
        count = count
            .checked_mul(d as u64)
            .ok_or_else(|| DumpError::format(path, "shape overflows"))?;
        shape.push(d as usize);
    }
    let expected = (header as u64).checked_add(count.saturating_mul(4));
    if expected != Some(bytes.len() as u64) {
        return Err(DumpError::format(
            path,
            format!(
                "shape {shape:?} needs {} data bytes after the {header}-byte header, file has {}",
                count.saturating_mul(4),
                bytes.len() - header
            ),
        ));
    }
    let mut data = vec![0f32; count as usize];
    LittleEndian::read_f32_into(&bytes[header..], &mut data);
    Ok(Tensor { shape, data })
}

pub fn read_dump(path: &Path) -> Result<Tensor, DumpError> {
    let bytes = fs::read(path).map_err(|e| DumpError::io(path, e))?;
    decode(&bytes, path)
}

/// Writes atomically: a temporary file beside the target, then a rename, so a reader never
/// sees a partial dump.
pub fn write_dump(path: &Path, t: &Tensor) -> Result<(), DumpError> {
    write_atomic(path, &encode(t))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DumpError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| DumpError::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DumpError::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_little_endian_outermost_first() {
        let t = Tensor::new(vec![2, 3], (0..6).map(|i| i as f32).collect());
        let b = encode(&t);
        assert_eq!(&b[0..4], &2i32.to_le_bytes());
        assert_eq!(&b[4..12], &2i64.to_le_bytes());
        assert_eq!(&b[12..20], &3i64.to_le_bytes());
        assert_eq!(&b[20..24], &0f32.to_le_bytes());
        assert_eq!(b.len(), 4 + 16 + 24);
    }

    #[test]
    fn rejects_bad_headers() {
        let p = Path::new("x.bin");
        assert!(decode(&[1, 0], p).is_err());
        assert!(decode(&(-1i32).to_le_bytes(), p).is_err());
        assert!(decode(&100i32.to_le_bytes(), p).is_err());
        let mut b = encode(&Tensor::new(vec![4], vec![1.0; 4]));
        b.push(0);
        assert!(decode(&b, p)
            .unwrap_err()
            .to_string()
            .contains("needs 16 data bytes"));
        let mut huge = 1i32.to_le_bytes().to_vec();
        huge.extend_from_slice(&i64::MAX.to_le_bytes());
        assert!(decode(&huge, p).is_err());
    }
}
