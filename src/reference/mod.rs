//! The Rust reference forward pass: an independent producer of the same checkpoints as
//! llama.cpp, from the same GGUF file and prompt.
//!
//! - [`llama`], [`qwen2`], [`qwen3`], [`gemma3`] and [`gpt2`] read top-down like the mathematics, with one tap per checkpoint at
//!   the line that computes it;
//! - [`blocks`] holds the pieces the llama-style families share (Q/K/V projections, SwiGLU
//!   FFN, embedding and output head), [`rope`] RoPE with frequency factors and scaling;
//! - [`ops`] holds the shared building blocks (streamed quantized matmul, attention);
//! - [`support`] refuses what the reference does not implement (tensors, metadata keys)
//!   instead of computing another model than the file describes;
//! - [`numerics`] holds everything that differs between the `exact` and `ggml` modes.
//!
//! Weights are never held as f32: every matrix row is decoded from the memory map inside the
//! dot product that reads it. Only norm weights and biases (vectors) are decoded up front.
//!
//! [`Fault`]s are deliberate mistakes for proving that the comparison catches them. They are
//! off unless named explicitly, and a faulted run says so in its manifest.

pub mod blocks;
pub mod gemma3;
pub mod gpt2;
mod kernels;
pub mod llama;
pub mod numerics;
pub mod ops;
pub mod qwen2;
pub mod qwen3;
pub mod rope;
pub mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::glob::Glob;

use crate::checkpoint::manifest::ModelInfo;
use crate::checkpoint::{
    greedy_token, CheckpointName, DumpError, DumpWriter, Kind, KvType, Manifest, Tensor,
};
use crate::cpu_config::CpuConfig;
use crate::gguf::{Arch, GgufFile, ModelParams};
use crate::tokenizer::{Tokenizer, TokenizerError};

pub use numerics::{Mode, Numerics};
use ops::{Heads, KvCache};

/// A deliberate mistake injected into the reference, each touching one checkpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Fault {
    /// RoPE base divided by ten (first touches `Qcur_rope`).
    RopeBase,
    /// The other RoPE pairing: NeoX-style pairs `(i, i + n/2)` where the family uses adjacent
    /// ones, and adjacent ones where it uses NeoX (`Qcur_rope`).
    RopeNeox,
    /// Query head `h` reads KV head `h % n_head_kv` instead of `h / group` (`kq_soft_max`).
    GqaModulo,
    /// Norm epsilon ten times the file's (`attn_norm`).
    EpsX10,
    /// Attention scores not scaled by `1/sqrt(head_dim)` (`kq_soft_max`).
    NoAttnScale,
    /// Decode tokens rotated one position too far (`Qcur_rope` of the first decode step).
    PosOffByOne,
    /// Gate and up projections swapped (`ffn_gate`).
    GateUpSwap,
    /// K and V kept in f32 where llama.cpp's F16 cache rounds them (`cache_k`, ggml mode with
    /// an F16 cache).
    KvF32,
    /// The Q and K biases left out (`Qcur`; families with Q/K/V biases).
    NoQkBias,
    /// The per-head RMSNorm of Q and K skipped (`Qcur_normed`; qwen3).
    SkipQkNorm,
    /// Embeddings not scaled by sqrt(n_embd) (`inp_embd`; gemma3).
    NoEmbdScale,
    /// The norm after the attention output skipped (`attn_post_norm`; gemma3).
    SkipPostNorm,
    /// The sliding window applied to the global layers too (`kq_soft_max` of the first
    /// global layer, once a prompt is longer than the window; gemma3).
    SwaEverywhere,
    /// No sliding window anywhere (`kq_soft_max` of the first layer, once a prompt is longer
    /// than the window; gemma3).
    NoSwa,
    /// The global RoPE base in the sliding-window layers instead of their own
    /// (`Qcur_rope`; gemma3).
    LocalRopeBase,
}

impl Fault {
    pub const ALL: [Fault; 15] = [
        Fault::RopeBase,
        Fault::RopeNeox,
        Fault::GqaModulo,
        Fault::EpsX10,
        Fault::NoAttnScale,
        Fault::PosOffByOne,
        Fault::GateUpSwap,
        Fault::KvF32,
        Fault::NoQkBias,
        Fault::SkipQkNorm,
        Fault::NoEmbdScale,
        Fault::SkipPostNorm,
        Fault::SwaEverywhere,
        Fault::NoSwa,
        Fault::LocalRopeBase,
    ];

    /// Whether the fault changes anything on a model of `arch` whose Q/K/V projections have
    /// biases or not.
    pub fn applies_to(self, arch: Arch, qkv_bias: bool) -> bool {
        match self {
            Fault::RopeBase | Fault::RopeNeox | Fault::PosOffByOne => arch != Arch::Gpt2,
            Fault::GateUpSwap => arch != Arch::Gpt2,
            Fault::NoQkBias => qkv_bias && arch != Arch::Gpt2,
            Fault::SkipQkNorm => matches!(arch, Arch::Qwen3 | Arch::Gemma3),
            Fault::NoEmbdScale
            | Fault::SkipPostNorm
            | Fault::SwaEverywhere
            | Fault::NoSwa
            | Fault::LocalRopeBase => arch == Arch::Gemma3,
            _ => true,
        }
    }

    /// The command-line name (`rope-base`, ...).
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// The ISA whose ggml-cpu kernels ggml mode reproduces: llama.cpp's default build here
/// (`build.rs`). A llama.cpp built for another ISA takes other kernels.
pub const EMULATED_ISA: &str = "x86-64-v3";

#[derive(Debug, Clone)]
pub struct ReferenceOptions {
    pub mode: Mode,
    /// Greedy decode steps after the prompt.
    pub steps: u32,
    /// The KV cache type to emulate (rounding applies in ggml mode only).
    pub kv_type: KvType,
    /// llama.cpp's CPU backend configuration to emulate in ggml mode (which matmul kernels).
    pub cpu: CpuConfig,
    /// Worker threads; 0 for one per core. Results do not depend on it.
    pub threads: usize,
    /// Only checkpoints whose name matches are dumped.
    pub filter: Option<Glob>,
    pub fault: Option<Fault>,
    /// Prompt token ids to evaluate instead of tokenizing the prompt.
    pub token_ids: Option<Vec<i32>>,
    /// The token fed at each decode step (step `s` gets `decode_tokens[s - 1]`) instead of the
    /// reference's own greedy choice: another producer's choices, so that both sides evaluate
    /// the same inputs at every step even where their greedy choices differ. The reference's
    /// own choices are still recorded as its generated tokens.
    pub decode_tokens: Option<Vec<i32>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error(
        "the reference does not cover architecture {arch:?} (it covers {covered}); `extract` \
         still dumps its universal checkpoints and --all-nodes",
        arch = .0,
        covered = Arch::ALL.map(Arch::name).join(", ")
    )]
    Architecture(String),
    /// A tensor or metadata key the reference does not implement, named.
    #[error("{0}")]
    Unsupported(String),
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    #[error("the prompt tokenizes to no tokens")]
    EmptyPrompt,
    #[error("{tokens} positions exceed the model's {n_ctx} learned positions")]
    Context { tokens: usize, n_ctx: usize },
    #[error("{given} decode tokens given for {steps} steps")]
    DecodeTokens { given: usize, steps: u32 },
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("thread pool: {0}")]
    Threads(String),
    #[error(transparent)]
    Dump(#[from] DumpError),
}

/// What the run produced besides the folder.
#[derive(Debug, Clone)]
pub struct ReferenceSummary {
    pub folder: PathBuf,
    pub prompt_tokens: Vec<i32>,
    pub generated_tokens: Vec<i32>,
    pub checkpoints: usize,
}

/// The arithmetic and the injected fault of one run, as the architectures see them.
pub struct Run {
    pub numerics: Numerics,
    fault: Option<Fault>,
}

impl Run {
    pub fn new(mode: Mode, kv_type: KvType, cpu: CpuConfig, fault: Option<Fault>) -> Run {
        let numerics = Numerics::with_cpu(mode, kv_type, cpu);
        Run {
            numerics: if fault == Some(Fault::KvF32) {
                numerics.without_kv_rounding()
            } else {
                numerics
            },
            fault,
        }
    }

    fn has(&self, f: Fault) -> bool {
        self.fault == Some(f)
    }

    /// The norm epsilon to use.
    fn norm_eps(&self, p: &ModelParams) -> f32 {
        if self.has(Fault::EpsX10) {
            p.norm_eps * 10.0
        } else {
            p.norm_eps
        }
    }

    /// Positions of `t` tokens evaluated from cache position `pos0`.
    fn positions(&self, pos0: usize, t: usize) -> Vec<usize> {
        let shift = usize::from(self.has(Fault::PosOffByOne) && pos0 > 0);
        (pos0 + shift..pos0 + shift + t).collect()
    }

    /// The attention score scale.
    fn attn_scale(&self, head_dim: usize) -> f32 {
        if self.has(Fault::NoAttnScale) {
            1.0
        } else {
            1.0 / (head_dim as f32).sqrt()
        }
    }

    /// A family's own attention scale, unless the fault drops it.
    fn attn_scale_of(&self, scale: f32) -> f32 {
        if self.has(Fault::NoAttnScale) {
            1.0
        } else {
            scale
        }
    }

    /// The RoPE to apply, with the RoPE faults.
    fn rope<'r>(&self, rope: &'r rope::Rope) -> std::borrow::Cow<'r, rope::Rope> {
        let mut r = std::borrow::Cow::Borrowed(rope);
        if self.has(Fault::RopeBase) {
            r.to_mut().base /= 10.0;
        }
        if self.has(Fault::RopeNeox) {
            let style = match rope.style {
                ops::RopeStyle::Normal => ops::RopeStyle::Neox,
                ops::RopeStyle::Neox => ops::RopeStyle::Normal,
            };
            r.to_mut().style = style;
        }
        r
    }

    /// The KV head query head `h` reads.
    fn kv_head(&self, heads: Heads, h: usize) -> usize {
        if self.has(Fault::GqaModulo) {
            h % heads.n_head_kv
        } else {
            heads.kv_head(h)
        }
    }
}

impl Run {
    /// The attention block both architectures share: stores this step's K and V (`q`, `k`, `v`
    /// as `[t, heads, head_dim]`) in the layer's cache, attends over it, and taps `cache_k`,
    /// `cache_v`, `kq_soft_max` and `kqv_out`. Returns the weighted values
    /// `[t, n_head * head_dim]`.
    pub fn attend(
        &self,
        layer: usize,
        cache: &mut KvCache,
        qkv: [&[f32]; 3],
        pos0: usize,
        heads: Heads,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let scale = self.attn_scale(heads.head_dim);
        self.attend_with(layer, cache, qkv, pos0, heads, scale, None, taps)
    }

    /// [`Run::attend`] with the scores scaled by `scale` (llama.cpp's `kq_scale`) and, with
    /// `window`, each query seeing only the keys less than `window` positions back.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_with(
        &self,
        layer: usize,
        cache: &mut KvCache,
        [q, k, v]: [&[f32]; 3],
        pos0: usize,
        heads: Heads,
        scale: f32,
        window: Option<usize>,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError> {
        let Heads {
            n_head,
            n_head_kv,
            head_dim: d,
        } = heads;
        let t = q.len() / (n_head * d);
        let blk = |kind| CheckpointName::layer(layer as u32, kind);
        cache.append(&self.numerics, k, v);
        let filled = pos0 + t;
        taps.put(blk(Kind::CacheK), &[filled, n_head_kv, d], &cache.k)?;
        taps.put(blk(Kind::CacheV), &[filled, n_head_kv, d], &cache.v)?;
        let att = ops::attention(
            &self.numerics,
            cache,
            q,
            pos0..filled,
            heads,
            scale,
            window,
            |h| self.kv_head(heads, h),
        );
        taps.put(blk(Kind::KqSoftMax), &[n_head, t, filled], &att.probs)?;
        taps.put(blk(Kind::KqvOut), &[t, n_head * d], &att.out)?;
        Ok(att.out)
    }
}

/// Where an architecture writes its checkpoints for one step.
pub struct Taps<'w> {
    writer: &'w mut DumpWriter,
    step: u32,
    filter: Option<&'w Glob>,
}

impl Taps<'_> {
    /// Dumps one checkpoint (unless the filter leaves it out).
    pub fn put(
        &mut self,
        name: CheckpointName,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(), DumpError> {
        if self.filter.is_some_and(|g| !g.is_match(&name.to_string())) {
            return Ok(());
        }
        self.writer.add(
            self.step,
            &name,
            &Tensor::new(shape.to_vec(), data.to_vec()),
        )
    }
}

/// One architecture's forward pass, holding its KV cache between steps.
pub trait Forward: Send {
    /// Evaluates `tokens` at cache positions `pos0..`, tapping every checkpoint; returns the
    /// logits `[tokens.len(), n_vocab]`.
    fn step(
        &mut self,
        run: &Run,
        tokens: &[i32],
        pos0: usize,
        taps: &mut Taps<'_>,
    ) -> Result<Vec<f32>, ReferenceError>;
}

fn model_error(path: &Path, reason: impl ToString) -> ReferenceError {
    ReferenceError::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The manifest fields that describe the reference's configuration.
pub fn producer_detail(opts: &ReferenceOptions) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    d.insert("mode".to_string(), opts.mode.as_str().to_string());
    d.insert(
        "kv_emulation".to_string(),
        opts.kv_type.as_str().to_string(),
    );
    if opts.mode == Mode::Ggml {
        opts.cpu.record(&mut d);
    }
    if let Some(f) = opts.fault {
        d.insert("fault".to_string(), f.name());
    }
    if opts.decode_tokens.is_some() {
        d.insert("decode_inputs".to_string(), "followed".to_string());
    }
    d
}

/// The forward pass of the file's architecture, with its weights checked (every tensor of the
/// file is one it uses).
fn load<'f>(
    file: &'f GgufFile,
    params: &ModelParams,
) -> Result<Box<dyn Forward + 'f>, ReferenceError> {
    Ok(match params.arch {
        Arch::Llama => Box::new(llama::Llama::load(file, params)?),
        Arch::Gpt2 => Box::new(gpt2::Gpt2::load(file, params)?),
        Arch::Qwen2 => Box::new(qwen2::Qwen2::load(file, params)?),
        Arch::Qwen3 => Box::new(qwen3::Qwen3::load(file, params)?),
        Arch::Gemma3 => Box::new(gemma3::Gemma3::load(file, params)?),
    })
}

/// Checks that the reference can evaluate `model` as llama.cpp would, without running it:
/// the architecture, the hyperparameters, every `{arch}.*` key and every tensor.
pub fn check_model(model: &Path) -> Result<(), ReferenceError> {
    let file = GgufFile::open(model).map_err(|e| model_error(model, e))?;
    let arch = file
        .architecture()
        .map_err(|e| model_error(model, e))?
        .to_string();
    if Arch::parse(&arch).is_none() {
        return Err(ReferenceError::Architecture(arch));
    }
    let params = ModelParams::from_gguf(&file).map_err(|e| model_error(model, e))?;
    support::check_keys(&file, params.arch)?;
    load(&file, &params).map(drop)
}

/// Runs the reference on `model` and `prompt` and writes the dump folder `out`.
/// How far a reference run has come, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The model is loaded; `steps` decode steps follow the prompt.
    Loaded { steps: u32 },
    /// Step `step` (0 = the prompt) is evaluated and written.
    Step { step: u32 },
}

pub fn reference(
    model: &Path,
    prompt: &str,
    out: &Path,
    opts: &ReferenceOptions,
) -> Result<ReferenceSummary, ReferenceError> {
    reference_with_progress(model, prompt, out, opts, &mut |_| {})
}

/// [`reference`], telling `progress` where it is.
pub fn reference_with_progress(
    model: &Path,
    prompt: &str,
    out: &Path,
    opts: &ReferenceOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReferenceSummary, ReferenceError> {
    // The reader's I/O errors name the path themselves; checking the file first keeps the
    // common case (no such file) to one mention of it, as extract does.
    let meta = std::fs::metadata(model).map_err(|e| model_error(model, e))?;
    if !meta.is_file() {
        return Err(model_error(model, "not a file"));
    }
    let file = GgufFile::open(model).map_err(|e| model_error(model, e))?;
    let arch = file
        .architecture()
        .map_err(|e| model_error(model, e))?
        .to_string();
    if Arch::parse(&arch).is_none() {
        return Err(ReferenceError::Architecture(arch));
    }
    let params = ModelParams::from_gguf(&file).map_err(|e| model_error(model, e))?;
    support::check_keys(&file, params.arch)?;
    let prompt_tokens = match &opts.token_ids {
        Some(ids) => ids.clone(),
        None => Tokenizer::from_gguf(&file)?.encode(prompt)?,
    };
    if prompt_tokens.is_empty() {
        return Err(ReferenceError::EmptyPrompt);
    }
    if let Some(d) = &opts.decode_tokens {
        if d.len() < opts.steps as usize {
            return Err(ReferenceError::DecodeTokens {
                given: d.len(),
                steps: opts.steps,
            });
        }
    }
    let mut net = load(&file, &params)?;
    let run = Run::new(opts.mode, opts.kv_type, opts.cpu, opts.fault);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| ReferenceError::Threads(e.to_string()))?;

    let mut manifest = Manifest::new("reference");
    manifest.producer_detail = producer_detail(opts);
    manifest.model = ModelInfo::of_file(model, &arch, params.n_layer as u32)
        .map_err(|e| model_error(model, e))?;
    manifest.prompt = prompt.to_string();
    manifest.prompt_tokens = prompt_tokens.clone();
    manifest.kv_type = opts.kv_type.as_str().to_string();
    manifest.threads = pool.current_num_threads() as u32;
    manifest.steps = opts.steps;
    let mut writer = DumpWriter::create(out, manifest)?;
    progress(Progress::Loaded { steps: opts.steps });

    let mut generated = Vec::new();
    let mut input = prompt_tokens.clone();
    let mut pos = 0usize;
    for step in 0..=opts.steps {
        let mut taps = Taps {
            writer: &mut writer,
            step,
            filter: opts.filter.as_ref(),
        };
        let ids: Vec<f32> = input.iter().map(|&t| t as f32).collect();
        taps.put(CheckpointName::Tokens, &[input.len()], &ids)?;
        let logits = pool.install(|| net.step(&run, &input, pos, &mut taps))?;
        let last = &logits[(input.len() - 1) * params.n_vocab..];
        let next = greedy_token(last) as i32;
        generated.push(next);
        pos += input.len();
        let fed = match &opts.decode_tokens {
            Some(d) => d.get(step as usize).copied().unwrap_or(next),
            None => next,
        };
        input = vec![fed];
        progress(Progress::Step { step });
    }
    writer.manifest.generated_tokens = generated.clone();
    let checkpoints = writer.manifest.checkpoints.len();
    let folder = writer.finish()?;
    Ok(ReferenceSummary {
        folder,
        prompt_tokens,
        generated_tokens: generated,
        checkpoints,
    })
}
