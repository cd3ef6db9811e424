//! numpy `.npy` files as an alternative dump encoding, so another engine's dumps written with
//! `numpy.save` compare directly. f32 and f64 arrays in C or Fortran order are accepted.

use std::fs;
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use super::format::{DumpError, Tensor};

pub fn read_npy(path: &Path) -> Result<Tensor, DumpError> {
    let bytes = fs::read(path).map_err(|e| DumpError::io(path, e))?;
    decode_npy(&bytes, path)
}

/// Parses the bytes of a `.npy` file; `path` only names it in errors.
pub fn decode_npy(bytes: &[u8], path: &Path) -> Result<Tensor, DumpError> {
    check_lengths(bytes).map_err(|e| DumpError::format(path, format!("npy: {e}")))?;
    let array: ArrayD<f32> = match ArrayD::<f32>::read_npy(bytes) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => ArrayD::<f64>::read_npy(bytes)
            .map_err(|e| DumpError::format(path, format!("npy: {e}")))?
            .mapv(|v| v as f32),
        Err(e) => return Err(DumpError::format(path, format!("npy: {e}"))),
    };
    let shape = array.shape().to_vec();
    // iter() walks in logical (C) order whatever the memory layout.
    let data: Vec<f32> = array.iter().copied().collect();
    Ok(Tensor { shape, data })
}

pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), DumpError> {
    let array = ArrayD::from_shape_vec(t.shape.clone(), t.data.clone())
        .map_err(|e| DumpError::format(path, format!("shape: {e}")))?;
    let mut bytes = Vec::new();
    array
        .write_npy(&mut bytes)
        .map_err(|e| DumpError::format(path, format!("npy: {e}")))?;
    super::format::write_atomic(path, &bytes)
}

/// Deepest bracket nesting accepted in a header (a real one has 2: the dict and the shape).
const MAX_HEADER_NESTING: usize = 16;

/// ndarray-npy allocates what a file announces before reading it: the header's length, then
/// the shape times the item size. A few bytes announcing gigabytes would abort the process, so
/// both are checked against the bytes present first, reading the header as ndarray-npy does
/// (py_literal). The nesting of the header is bounded too, since the header parser recurses.
/// Whatever else is wrong is left to ndarray-npy to report.
fn check_lengths(bytes: &[u8]) -> Result<(), String> {
    use py_literal::Value;

    let (Some(b"\x93NUMPY"), Some(&major)) = (bytes.get(..6), bytes.get(6)) else {
        return Ok(());
    };
    let (start, header_len) = match major {
        1 => match bytes.get(8..10) {
            Some(b) => (10, usize::from(u16::from_le_bytes([b[0], b[1]]))),
            None => return Ok(()),
        },
        2 | 3 => match bytes.get(8..12) {
            Some(b) => (12, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    let Some(header) = bytes.get(start..).and_then(|rest| rest.get(..header_len)) else {
        return Err(format!(
            "the header is {header_len} bytes long but the file has {} after the preamble",
            bytes.len() - start
        ));
    };
    let data_len = bytes.len() - start - header_len;
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => continue,
        }
        if depth > MAX_HEADER_NESTING {
            return Err(format!(
                "the header nests brackets deeper than {MAX_HEADER_NESTING} levels"
            ));
        }
    }
    let Some(text) = std::str::from_utf8(header)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
    else {
        return Ok(());
    };
    let Ok(Value::Dict(dict)) = text.parse::<Value>() else {
        return Ok(());
    };
    // As ndarray-npy: a repeated key's last value counts.
    let mut descr = None;
    let mut shape = None;
    for (k, v) in &dict {
        match k.as_string().map(String::as_str) {
            Some("descr") => descr = v.as_string().map(String::as_str),
            Some("shape") => {
                shape = v.as_tuple().and_then(|t| {
                    t.iter()
                        .map(|d| d.as_integer()?.to_string().parse::<u64>().ok())
                        .collect::<Option<Vec<u64>>>()
                })
            }
            _ => {}
        }
    }
    let item_size: u64 = match descr {
        Some("<f4" | ">f4") => 4,
        Some("<f8" | ">f8") => 8,
        _ => return Ok(()),
    };
    let Some(shape) = shape else {
        return Ok(());
    };
    let needed = shape
        .iter()
        .try_fold(item_size, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    if needed != data_len as u64 {
        return Err(format!(
            "shape {shape:?} of {} needs {needed} data bytes, the file has {data_len}",
            descr.unwrap_or_default()
        ));
    }
    Ok(())
}
