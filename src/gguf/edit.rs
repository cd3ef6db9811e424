//! Copies of a GGUF file with metadata keys set or removed and F32 tensors added: the
//! published variants of a family (Llama 3.x frequency factors, RoPE scaling) made from a
//! model at hand, and files with something the reference must refuse.

use std::path::Path;

use super::reader::{GgufError, GgufFile, MetaValue, TensorInfo};
use super::writer::GgufWriter;
use crate::quant::GgmlType;

/// What to change in the copy.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// Keys to set (replacing the value in place, or appended when new).
    pub set: Vec<(String, MetaValue)>,
    /// Keys to leave out.
    pub remove: Vec<String>,
    /// F32 tensors to append: name, dims (ggml `ne`), values.
    pub add_f32: Vec<(String, Vec<u64>, Vec<f32>)>,
}

impl Edit {
    pub fn set(mut self, key: impl Into<String>, value: MetaValue) -> Self {
        self.set.push((key.into(), value));
        self
    }

    pub fn remove(mut self, key: impl Into<String>) -> Self {
        self.remove.push(key.into());
        self
    }

    pub fn add_f32(mut self, name: impl Into<String>, values: Vec<f32>) -> Self {
        let dims = vec![values.len() as u64];
        self.add_f32.push((name.into(), dims, values));
        self
    }
}

/// Writes `src` with `edit` applied to `dst` (tensor data copied byte for byte).
pub fn copy_with(src: &Path, dst: &Path, edit: &Edit) -> Result<(), GgufError> {
    let f = GgufFile::open(src)?;
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        if edit.remove.contains(k) {
            continue;
        }
        let v = edit
            .set
            .iter()
            .find(|(sk, _)| sk == k)
            .map_or(v, |(_, sv)| sv);
        if k == "general.alignment" {
            if let Some(a) = v.as_u64().and_then(|a| u32::try_from(a).ok()) {
                w.set_alignment(a)?;
                continue;
            }
        }
        w.add_meta(k.clone(), v.clone())?;
    }
    for (k, v) in &edit.set {
        if f.get(k).is_none() {
            w.add_meta(k.clone(), v.clone())?;
        }
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ggml_type)?;
    }
    for (name, dims, _) in &edit.add_f32 {
        w.add_tensor(name.clone(), dims, GgmlType::F32)?;
    }
    w.write(dst, |info: &TensorInfo, buf: &mut [u8]| {
        if let Some((_, _, values)) = edit.add_f32.iter().find(|(n, _, _)| *n == info.name) {
            for (b, x) in buf.chunks_exact_mut(4).zip(values) {
                b.copy_from_slice(&x.to_le_bytes());
            }
            return Ok(());
        }
        buf.copy_from_slice(f.tensor(&info.name)?.data);
        Ok(())
    })
}

/// The RoPE frequency factors Llama 3.1 computes (`rope_type = "llama3"` in its
/// `config.json`; llama.cpp's converter writes them as `rope_freqs.weight`): 1 for the
/// wavelengths shorter than `old_ctx / high_freq_factor`, `factor` for those longer than
/// `old_ctx / low_freq_factor`, and a smooth blend between. One factor per rotated pair of a
/// `head_dim`-wide head.
pub fn llama3_rope_factors(
    base: f32,
    head_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    old_ctx: f64,
) -> Vec<f32> {
    let low_wavelen = old_ctx / low_freq_factor;
    let high_wavelen = old_ctx / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / f64::from(base).powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth =
                    (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}
