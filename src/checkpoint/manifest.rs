//! `manifest.json`: what produced a dump folder, on what, and which checkpoints it holds.
//!
//! Nothing time- or machine-dependent beyond the recorded build goes in, so that two runs of the
//! same inputs give byte-identical folders.

use serde::{Deserialize, Serialize};

use super::format::DumpError;

/// The KV cache type a run uses (llama.cpp) or emulates (the reference).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    F32,
    F16,
    Bf16,
}

impl KvType {
    /// The ggml type id (0 = F32, 1 = F16, 30 = BF16).
    pub fn ggml_id(self) -> i32 {
        match self {
            KvType::F32 => 0,
            KvType::F16 => 1,
            KvType::Bf16 => 30,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Bf16 => "bf16",
        }
    }
}

pub const FORMAT: &str = "llorch-diff-dump/1";
pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// `llama.cpp`, `reference`, or another engine's name.
    pub producer: String,
    /// How the producer was built or configured (llama.cpp pin, flags, ISA; reference mode).
    #[serde(default)]
    pub producer_detail: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub model: ModelInfo,
    #[serde(default)]
    pub prompt: String,
    /// Prompt token ids (step 0 input).
    #[serde(default)]
    pub prompt_tokens: Vec<i32>,
    /// Greedy tokens generated after each step (one per step).
    #[serde(default)]
    pub generated_tokens: Vec<i32>,
    #[serde(default)]
    pub kv_type: String,
    #[serde(default)]
    pub threads: u32,
    /// Decode steps after the prompt (step 0); the folder holds steps 0..=steps.
    #[serde(default)]
    pub steps: u32,
    /// Checkpoints in graph order, step by step.
    pub checkpoints: Vec<Entry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// File name only (not the full path, which varies between machines).
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub n_layer: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub step: u32,
    pub name: String,
    /// Relative to the folder, `/`-separated.
    pub file: String,
    /// Outermost first.
    pub shape: Vec<usize>,
    /// The ggml op of a graph node dumped by `extract --all-nodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
}

impl ModelInfo {
    /// The model file as a manifest records it: its name (not the machine-dependent path) and
    /// sha256.
    pub fn of_file(
        path: &std::path::Path,
        architecture: &str,
        n_layer: u32,
    ) -> std::io::Result<ModelInfo> {
        Ok(ModelInfo {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: sha256_file(path)?,
            architecture: architecture.to_string(),
            n_layer,
        })
    }
}

impl Manifest {
    pub fn new(producer: &str) -> Self {
        Manifest {
            format: FORMAT.to_string(),
            producer: producer.to_string(),
            producer_detail: Default::default(),
            model: ModelInfo::default(),
            prompt: String::new(),
            prompt_tokens: vec![],
            generated_tokens: vec![],
            kv_type: String::new(),
            threads: 0,
            steps: 0,
            checkpoints: vec![],
        }
    }
}

impl Manifest {
    /// Parses `manifest.json` bytes and checks what a reader relies on: the format tag, and
    /// that every entry's file is a relative path inside the folder. `path` only names the
    /// file in errors.
    pub fn parse(bytes: &[u8], path: &std::path::Path) -> Result<Manifest, DumpError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| DumpError::format(path, format!("invalid manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(DumpError::format(
                path,
                format!("format is {:?}, expected {FORMAT:?}", m.format),
            ));
        }
        for e in &m.checkpoints {
            if e.file.split('/').any(|c| c == ".." || c.is_empty()) || e.file.starts_with('/') {
                return Err(DumpError::format(
                    path,
                    format!("entry {} has unsafe path {:?}", e.name, e.file),
                ));
            }
        }
        Ok(m)
    }
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
