//! The extract job: tokenize with llama.cpp, evaluate the prompt as one batch (step 0), then
//! greedy decode steps of one token each, dumping every catalogued checkpoint of every step.
//!
//! Any architecture the pinned llama.cpp loads is extracted: one with a catalogue
//! ([`GraphFamily`]) gets all of it; any other the checkpoints llama.cpp names the same way in
//! every graph ([`capture::universal_rules`]). With `all_nodes`, every node of every step's
//! graph is dumped too, under [`capture::node_checkpoint`] names, with its ggml op in the
//! manifest.

use std::path::{Path, PathBuf};

use crate::glob::Glob;

use super::capture::{self, CaptureError, GraphFamily};
use super::{KvType, LlamaError, Session};
use crate::checkpoint::folder::BackgroundWriter;
use crate::checkpoint::manifest::ModelInfo;
use crate::checkpoint::{greedy_token, CheckpointName, DumpError, DumpWriter, Manifest, Tensor};
use crate::cpu_config::CpuConfig;

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Greedy decode steps after the prompt.
    pub steps: u32,
    pub kv_type: KvType,
    pub threads: usize,
    /// Use the CPU backend's repacked weight layouts (llama.cpp's default).
    pub repack: bool,
    /// Only checkpoints whose name matches are dumped (and asked of llama.cpp).
    pub filter: Option<Glob>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("the prompt tokenizes to no tokens")]
    EmptyPrompt,
    #[error("{tokens} positions (prompt + steps) exceed the model's {n_pos} learned positions")]
    Context { tokens: usize, n_pos: usize },
    #[error(transparent)]
    Llama(#[from] LlamaError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Dump(#[from] DumpError),
}

/// What the run produced besides the folder.
#[derive(Debug, Clone)]
pub struct ExtractSummary {
    pub folder: PathBuf,
    pub prompt_tokens: Vec<i32>,
    pub generated_tokens: Vec<i32>,
    pub checkpoints: usize,
}

/// Checks the file before llama.cpp sees it: llama.cpp aborts on some malformed input.
pub fn check_model_file(path: &Path) -> Result<(), ExtractError> {
    let err = |reason: String| ExtractError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a file".into()));
    }
    let file = crate::gguf::GgufFile::open(path).map_err(|e| err(e.to_string()))?;
    let arch = file.architecture().map_err(|e| err(e.to_string()))?;
    // llama.cpp asserts (aborting the process) on a RoPE scaling type it does not know.
    let key = format!("{arch}.rope.scaling.type");
    if let Some(v) = file.get(&key) {
        if !matches!(v.as_str(), Some("none" | "linear" | "yarn" | "longrope")) {
            return Err(err(format!(
                "metadata key '{key}' = {v} is not a RoPE scaling type llama.cpp knows \
                 (none, linear, yarn, longrope)"
            )));
        }
    }
    Ok(())
}

/// The rows of a learned absolute position table (gpt2's `position_embd.weight`), if the model
/// has one: llama.cpp has no position beyond it and aborts on a lookup out of range.
pub fn learned_positions(model: &Path) -> Option<usize> {
    let file = crate::gguf::GgufFile::open(model).ok()?;
    let t = file.tensor("position_embd.weight").ok()?;
    Some(t.n_rows())
}

/// The manifest fields that describe the llama.cpp build.
pub fn producer_detail() -> std::collections::BTreeMap<String, String> {
    [
        ("llama_cpp", env!("LLORCH_LLAMA_PIN")),
        ("flags", env!("LLORCH_LLAMA_FLAGS")),
        ("compiler", env!("LLORCH_LLAMA_COMPILER")),
        ("isa", env!("LLORCH_LLAMA_ISA")),
        ("flash_attn", "disabled"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// How far an extract has come, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The model is loaded; `steps` decode steps follow the prompt.
    Loaded { steps: u32 },
    /// Step `step` (0 = the prompt) is evaluated and handed to the writer.
    Step { step: u32 },
}

/// Bytes of checkpoints waiting for the writer thread at most: a short prompt's whole step (about
/// 83 MB for SmolLM2 and 55 tokens) is handed over at once, and written while the next step is
/// computed.
const WRITE_QUEUE_BYTES: usize = 256 << 20;

pub fn extract(
    model: &Path,
    prompt: &str,
    out: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractSummary, ExtractError> {
    extract_with_progress(model, prompt, out, opts, false, &mut |_| {})
}

/// [`extract`], and with `all_nodes` every node of every step's graph besides (the filter
/// applies to the catalogue's checkpoints only).
pub fn extract_nodes(
    model: &Path,
    prompt: &str,
    out: &Path,
    opts: &ExtractOptions,
    all_nodes: bool,
) -> Result<ExtractSummary, ExtractError> {
    extract_with_progress(model, prompt, out, opts, all_nodes, &mut |_| {})
}

/// [`extract`], with `all_nodes` every node of every step's graph besides (the filter applies to
/// the catalogue's checkpoints only), telling `progress` where it is.
pub fn extract_with_progress(
    model: &Path,
    prompt: &str,
    out: &Path,
    opts: &ExtractOptions,
    all_nodes: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExtractSummary, ExtractError> {
    check_model_file(model)?;
    // A context large enough for the usual prompt; reopened below if the prompt is longer.
    let mut n_ctx = 512;
    let mut session = Session::open(model, n_ctx, opts.kv_type, opts.threads, opts.repack)?;
    let arch = session.meta("general.architecture").unwrap_or_default();
    let family = GraphFamily::from_architecture(&arch);
    let prompt_tokens = session.tokenize(prompt, true, false)?;
    if prompt_tokens.is_empty() {
        return Err(ExtractError::EmptyPrompt);
    }
    let positions = prompt_tokens.len() + opts.steps as usize;
    if let Some(n_pos) = learned_positions(model) {
        if positions > n_pos {
            return Err(ExtractError::Context {
                tokens: positions,
                n_pos,
            });
        }
    }
    let needed = prompt_tokens.len() + opts.steps as usize;
    if needed > n_ctx {
        n_ctx = needed.div_ceil(256) * 256;
        drop(session);
        session = Session::open(model, n_ctx, opts.kv_type, opts.threads, opts.repack)?;
    }
    let dims = session.dims();
    progress(Progress::Loaded { steps: opts.steps });

    let wanted = |name: &CheckpointName| {
        opts.filter
            .as_ref()
            .is_none_or(|g| g.is_match(&name.to_string()))
    };
    let rules: Vec<_> = match family {
        Some(f) => capture::rules(f, dims.n_layer as u32),
        None => capture::universal_rules(dims.n_layer as u32),
    }
    .into_iter()
    .filter(|r| wanted(&r.name))
    .collect();
    if all_nodes {
        let mut names: Vec<String> = rules.iter().map(|r| r.node.clone()).collect();
        names.sort();
        names.dedup();
        session.capture_all_and(&names)?;
    } else {
        // Only the (node, op) pairs the rules take are observed (an empty op: any op).
        let mut nodes: Vec<(String, &str)> = rules.iter().map(|r| (r.node.clone(), r.op)).collect();
        nodes.sort();
        nodes.dedup();
        session.capture_nodes(&nodes)?;
    }

    let mut manifest = Manifest::new("llama.cpp");
    manifest.producer_detail = producer_detail();
    CpuConfig::from_env(opts.repack).record(&mut manifest.producer_detail);
    manifest.model =
        ModelInfo::of_file(model, &arch, dims.n_layer as u32).map_err(|e| ExtractError::Model {
            path: model.to_path_buf(),
            reason: e.to_string(),
        })?;
    manifest.prompt = prompt.to_string();
    manifest.prompt_tokens = prompt_tokens.clone();
    manifest.kv_type = opts.kv_type.as_str().to_string();
    manifest.threads = opts.threads as u32;
    manifest.steps = opts.steps;
    // Files are written on a thread of their own while llama.cpp computes the next step.
    let mut writer = BackgroundWriter::new(DumpWriter::create(out, manifest)?, WRITE_QUEUE_BYTES);

    let mut generated = Vec::new();
    let mut input = prompt_tokens.clone();
    let mut pos = 0usize;
    for step in 0..=opts.steps {
        let captures = session.decode_views(&input, pos)?;
        let filled = pos + input.len();
        if wanted(&CheckpointName::Tokens) {
            let ids = Tensor::new(vec![input.len()], input.iter().map(|&t| t as f32).collect());
            writer.add(step, &CheckpointName::Tokens, ids)?;
        }
        // The last node of each name and op (a node renamed twice is still one node).
        let mut index = std::collections::HashMap::with_capacity(captures.len());
        let mut by_name = std::collections::HashMap::with_capacity(captures.len());
        for (i, c) in captures.iter().enumerate() {
            index.insert((c.name, c.op), i);
            by_name.insert(c.name, i);
        }
        for rule in &rules {
            let taken = if rule.op.is_empty() {
                by_name.get(rule.node.as_str())
            } else {
                index.get(&(rule.node.as_str(), rule.op))
            };
            let arranged = taken
                .map(|&i| &captures[i])
                .ok_or_else(|| capture::missing(rule))
                .and_then(|c| capture::arrange(rule, c, filled));
            match arranged {
                Ok(t) => writer.add(step, &rule.name, t)?,
                // Without a catalogue, a universal checkpoint the family lacks is left out.
                Err(_) if family.is_none() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if all_nodes {
            // Nodes captured a second time under a "src:" name are dumped once, as themselves.
            let graph = captures.iter().filter(|c| !c.name.starts_with("src:"));
            for (i, c) in graph.enumerate() {
                // ggml's ne reversed, without the outer dimensions of one.
                let mut shape: Vec<usize> = c.ne.iter().rev().copied().collect();
                while shape.len() > 1 && shape[0] == 1 {
                    shape.remove(0);
                }
                let t = Tensor::new(shape, c.data.to_vec());
                writer.add_node(step, &capture::node_checkpoint(i, c.name, c.op), c.op, t)?;
            }
        }
        let last = session
            .logits(input.len() - 1, dims.n_vocab)
            .ok_or_else(|| LlamaError::Shim("llama.cpp returned no logits".into()))?;
        let next = greedy_token(&last) as i32;
        generated.push(next);
        pos = filled;
        input = vec![next];
        progress(Progress::Step { step });
    }
    let mut writer = writer.finish()?;
    writer.manifest.generated_tokens = generated.clone();
    let checkpoints = writer.manifest.checkpoints.len();
    let folder = writer.finish()?;
    Ok(ExtractSummary {
        folder,
        prompt_tokens,
        generated_tokens: generated,
        checkpoints,
    })
}

/// Every node of the prompt's graph that the callback sees, in graph order: name, op, ggml ne.
pub fn survey(
    model: &Path,
    prompt: &str,
    kv_type: KvType,
) -> Result<Vec<(String, String, [usize; 4])>, ExtractError> {
    check_model_file(model)?;
    let mut session = Session::open(model, 512, kv_type, 1, true)?;
    let tokens = session.tokenize(prompt, true, false)?;
    if tokens.is_empty() {
        return Err(ExtractError::EmptyPrompt);
    }
    session.capture_all();
    let captures = session.decode(&tokens, 0)?;
    Ok(captures.into_iter().map(|c| (c.name, c.op, c.ne)).collect())
}
