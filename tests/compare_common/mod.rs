//! Synthetic dump folders for the comparator's tests and bench: the llama catalogue's names and
//! shapes filled with deterministic pseudo-random values, written through `DumpWriter`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use llorch_diff::checkpoint::catalogue::{step_checkpoints, CheckpointName};
use llorch_diff::checkpoint::manifest::ModelInfo;
use llorch_diff::checkpoint::{DumpWriter, Kind, Manifest, Tensor};

#[derive(Debug, Clone)]
pub struct Spec {
    pub n_layer: u32,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub prompt_len: usize,
    /// Decode steps after the prompt: the folder holds steps 0..=steps.
    pub steps: u32,
}

impl Spec {
    /// Small enough for many test folders.
    pub fn tiny() -> Spec {
        Spec {
            n_layer: 4,
            n_embd: 16,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 4,
            n_ff: 24,
            n_vocab: 40,
            prompt_len: 3,
            steps: 1,
        }
    }

    /// SmolLM2-135M's dimensions, 4 prompt tokens and 4 decode steps (5 steps in all).
    pub fn smollm2() -> Spec {
        Spec {
            n_layer: 30,
            n_embd: 576,
            n_head: 9,
            n_head_kv: 3,
            head_dim: 64,
            n_ff: 1536,
            n_vocab: 49152,
            prompt_len: 4,
            steps: 4,
        }
    }

    pub fn tokens_in(&self, step: u32) -> usize {
        if step == 0 {
            self.prompt_len
        } else {
            1
        }
    }

    pub fn shape(&self, step: u32, name: &CheckpointName) -> Vec<usize> {
        let t = self.tokens_in(step);
        let f = self.prompt_len + step as usize;
        let (h, hkv, d) = (self.n_head, self.n_head_kv, self.head_dim);
        match name {
            CheckpointName::Tokens => vec![t],
            CheckpointName::InpEmbd | CheckpointName::ResultNorm => vec![t, self.n_embd],
            CheckpointName::ResultOutput => vec![t, self.n_vocab],
            CheckpointName::Layer { kind, .. } => match kind {
                Kind::Qcur | Kind::QcurRope => vec![t, h, d],
                Kind::Kcur | Kind::KcurRope | Kind::Vcur => vec![t, hkv, d],
                Kind::CacheK | Kind::CacheV => vec![f, hkv, d],
                Kind::KqSoftMax => vec![h, t, f],
                Kind::KqvOut => vec![t, h * d],
                Kind::FfnGate | Kind::FfnUp | Kind::FfnSwiglu | Kind::FfnGelu => vec![t, self.n_ff],
                Kind::Qkv => vec![t, 3 * self.n_embd],
                _ => vec![t, self.n_embd],
            },
            CheckpointName::Other(_) => vec![t],
        }
    }

    /// The prompt's token ids and one generated token per step.
    pub fn prompt_tokens(&self) -> Vec<i32> {
        (0..self.prompt_len as i32).map(|i| 100 + 7 * i).collect()
    }

    pub fn generated_tokens(&self) -> Vec<i32> {
        (0..self.steps as i32).map(|i| 500 + i).collect()
    }

    /// Deterministic contents of a checkpoint (the same for every folder).
    pub fn tensor(&self, step: u32, name: &CheckpointName) -> Tensor {
        let shape = self.shape(step, name);
        let n: usize = shape.iter().product();
        let data = match name {
            CheckpointName::Tokens if step == 0 => {
                self.prompt_tokens().iter().map(|&t| t as f32).collect()
            }
            CheckpointName::Tokens => vec![self.generated_tokens()[step as usize - 1] as f32],
            _ => {
                let mut rng = Rng::new(&format!("{step}/{name}"));
                (0..n).map(|_| rng.normal()).collect()
            }
        };
        Tensor::new(shape, data)
    }
}

/// xorshift64*, seeded from a string.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: &str) -> Rng {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in seed.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        Rng(h | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (sum of four uniforms, unit variance).
    pub fn normal(&mut self) -> f32 {
        let s: f64 = (0..4).map(|_| self.uniform()).sum();
        ((s - 2.0) * 3f64.sqrt()) as f32
    }
}

pub fn manifest(spec: &Spec, producer: &str, mode: Option<&str>) -> Manifest {
    let mut m = Manifest::new(producer);
    if let Some(mode) = mode {
        m.producer_detail.insert("mode".into(), mode.into());
    } else {
        m.producer_detail
            .insert("llama.cpp".into(), "b0000 (synthetic)".into());
        m.producer_detail.insert("isa".into(), "x86-64-v3".into());
    }
    m.model = ModelInfo {
        file: "synthetic.gguf".into(),
        sha256: "ab".repeat(32),
        architecture: "llama".into(),
        n_layer: spec.n_layer,
    };
    m.prompt = "Hello | world".into();
    m.prompt_tokens = spec.prompt_tokens();
    m.generated_tokens = spec.generated_tokens();
    m.kv_type = "f16".into();
    m.threads = 2;
    m.steps = spec.steps;
    m
}

/// What to do with a checkpoint while writing a folder.
pub enum Edit {
    Keep,
    Drop,
}

/// Writes a folder with every llama checkpoint of every step; `edit` may change a tensor
/// in place or drop it.
pub fn write_folder(
    dir: &Path,
    spec: &Spec,
    m: Manifest,
    mut edit: impl FnMut(u32, &CheckpointName, &mut Tensor) -> Edit,
) -> PathBuf {
    let mut w = DumpWriter::create(dir, m).unwrap();
    for step in 0..=spec.steps {
        for name in step_checkpoints(&Kind::LLAMA, spec.n_layer) {
            let mut t = spec.tensor(step, &name);
            if let Edit::Keep = edit(step, &name, &mut t) {
                w.add(step, &name, &t).unwrap();
            }
        }
    }
    w.finish().unwrap()
}

/// The expected side (llama.cpp-like manifest) and an identical candidate (reference, `mode`).
pub fn pair(root: &Path, spec: &Spec, mode: &str) -> (PathBuf, PathBuf) {
    let a = write_folder(
        &root.join("a"),
        spec,
        manifest(spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let b = write_folder(
        &root.join("b"),
        spec,
        manifest(spec, "reference", Some(mode)),
        |_, _, _| Edit::Keep,
    );
    (a, b)
}

/// Adds noise of relative size `rel` (of each element's RMS scale) to every element: NMSE ~ rel^2.
pub fn perturb(t: &mut Tensor, rel: f64, seed: &str) {
    let mut rng = Rng::new(seed);
    for x in &mut t.data {
        *x += (rel * rng.normal() as f64) as f32;
    }
}

/// A fresh folder under the target directory, removed first if a previous run left it.
pub fn scratch(name: &str) -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("compare-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
