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
