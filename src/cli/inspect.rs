//! `llorch-diff inspect`: a GGUF file's architecture, hyperparameters, tokenizer and tensors.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde_json::{json, Value};

use super::Outcome;
use crate::gguf::{GgufFile, MetaValue, ModelParams};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF file.
    pub model: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn token_text(f: &GgufFile, id: Option<u64>) -> Option<String> {
    let toks = f.get("tokenizer.ggml.tokens")?.as_array()?;
    toks.get(usize::try_from(id?).ok()?)?
        .as_str()
        .map(str::to_string)
}

fn tokenizer_summary(f: &GgufFile) -> Value {
    let s = |k: &str| f.get(k).and_then(MetaValue::as_str).map(str::to_string);
    let n = |k: &str| {
        f.get(k)
            .and_then(MetaValue::as_array)
            .map(<[MetaValue]>::len)
    };
    let id = |k: &str| f.get(k).and_then(MetaValue::as_u64);
    let bos = id("tokenizer.ggml.bos_token_id");
    let eos = id("tokenizer.ggml.eos_token_id");
    json!({
        "model": s("tokenizer.ggml.model"),
        "pre": s("tokenizer.ggml.pre"),
        "vocab_size": n("tokenizer.ggml.tokens"),
        "merges": n("tokenizer.ggml.merges"),
        "bos": { "id": bos, "text": token_text(f, bos) },
        "eos": { "id": eos, "text": token_text(f, eos) },
        "add_bos": f.get("tokenizer.ggml.add_bos_token").and_then(MetaValue::as_bool),
    })
}

/// Every `{arch}.*` metadata key (without the prefix) and its value: the hyperparameters of
/// any architecture, as its file states them.
fn arch_keys<'f>(f: &'f GgufFile, arch: &str) -> Vec<(&'f str, &'f MetaValue)> {
    let prefix = format!("{arch}.");
    f.metadata()
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k, v)))
        .collect()
}

fn shape(dims: &[u64]) -> String {
    format!(
        "[{}]",
        dims.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let f =
        GgufFile::open(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let arch = f
        .architecture()
        .with_context(|| format!("reading {}", args.model.display()))?
        .to_string();
    let params = ModelParams::from_gguf(&f);
    let tok = tokenizer_summary(&f);
    let total: u64 = f.tensors().iter().map(|t| t.n_bytes as u64).sum();

    if args.json {
        let tensors: Vec<Value> = f
            .tensors()
            .iter()
            .map(|t| {
                json!({ "name": t.name, "type": t.ggml_type.name(), "shape": t.dims, "bytes": t.n_bytes, "offset": t.offset })
            })
            .collect();
        let out = json!({
            "file": args.model.display().to_string(),
            "version": f.version(),
            "file_size": f.file_size(),
            "alignment": f.alignment(),
            "metadata_count": f.metadata().len(),
            "architecture": arch,
            "params": params.as_ref().ok(),
            "params_error": params.as_ref().err().map(ToString::to_string),
            "hyperparameters": arch_keys(&f, &arch)
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect::<serde_json::Map<_, _>>(),
            "tokenizer": tok,
            "tensor_bytes": total,
            "tensors": tensors,
        });
        return emit(serde_json::to_string_pretty(&out)? + "\n");
    }

    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}: GGUF v{}, {} bytes, {} metadata keys, {} tensors ({} bytes), alignment {}",
        args.model.display(),
        f.version(),
        f.file_size(),
        f.metadata().len(),
        f.tensors().len(),
        total,
        f.alignment()
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["hyperparameter", "value"]);
    t.add_row(vec!["architecture".to_string(), arch.clone()]);
    match &params {
        Ok(p) => {
            let rows: [(&str, String); 13] = [
                ("n_layer", p.n_layer.to_string()),
                ("n_embd", p.n_embd.to_string()),
                ("n_head", p.n_head.to_string()),
                ("n_head_kv", p.n_head_kv.to_string()),
                ("head_dim", p.head_dim.to_string()),
                ("n_ff", p.n_ff.to_string()),
                ("n_vocab", p.n_vocab.to_string()),
                ("n_ctx_train", p.n_ctx_train.to_string()),
                ("norm_eps", p.norm_eps.to_string()),
                ("rope_freq_base", p.rope_freq_base.to_string()),
                ("rope_dim", p.rope_dim.to_string()),
                (
                    "rope_scaling",
                    format!(
                        "{:?} factor {} attn_factor {} orig ctx {}",
                        p.rope_scaling.kind,
                        p.rope_scaling.factor,
                        p.rope_scaling.attn_factor,
                        p.rope_scaling.n_ctx_orig
                    )
                    .to_lowercase(),
                ),
                ("tied_output", p.tied_output.to_string()),
            ];
            for (k, v) in rows {
                t.add_row(vec![k.to_string(), v]);
            }
            if p.arch == crate::gguf::Arch::Gemma3 {
                match crate::reference::gemma3::Gemma3Params::from_gguf(&f, p) {
                    Ok(g) => {
                        let swa: Vec<String> = (0..p.n_layer)
                            .filter(|&l| g.is_swa[l])
                            .map(|l| l.to_string())
                            .collect();
                        let rows = [
                            ("sliding_window", format!("{:?}", g.window)),
                            ("sliding_window_layers", swa.join(",")),
                            ("rope_freq_base_swa", g.local_base.to_string()),
                            ("query_scale", g.query_scale.to_string()),
                            ("final_logit_softcapping", format!("{:?}", g.softcap)),
                        ];
                        for (k, v) in rows {
                            t.add_row(vec![k.to_string(), v]);
                        }
                    }
                    Err(e) => {
                        t.add_row(vec!["gemma3".to_string(), format!("unavailable: {e}")]);
                    }
                }
            }
        }
        Err(e) => {
            // The reference does not read this file's hyperparameters: show them as stored.
            t.add_row(vec!["params".to_string(), format!("unavailable: {e}")]);
            for (k, v) in arch_keys(&f, &arch) {
                t.add_row(vec![k.to_string(), v.to_string()]);
            }
        }
    }
    let _ = writeln!(text, "{t}");

    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["tokenizer", "value"]);
    if let Value::Object(m) = &tok {
        for key in [
            "model",
            "pre",
            "vocab_size",
            "merges",
            "bos",
            "eos",
            "add_bos",
        ] {
            let v = &m[key];
            let text = match v {
                Value::Object(o) => format!("{} {}", text_of(&o["id"]), text_of(&o["text"])),
                other => text_of(other),
            };
            t.add_row(vec![key.to_string(), text]);
        }
    }
    let _ = writeln!(text, "{t}");

    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["tensor", "type", "shape (ne)", "bytes"]);
    for ti in f.tensors() {
        t.add_row(vec![
            Cell::new(&ti.name),
            Cell::new(ti.ggml_type.name()),
            Cell::new(shape(&ti.dims)),
            Cell::new(ti.n_bytes).set_alignment(CellAlignment::Right),
        ]);
    }
    let _ = writeln!(text, "{t}");
    emit(text)
}

/// Prints the report; a reader that closed the pipe early (`| head`) is not an error.
fn emit(text: String) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(Outcome::Pass),
    }
}
