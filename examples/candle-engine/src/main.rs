//! A llama-family forward pass written on candle-core's tensor ops and its quantized GGUF
//! matmuls, tapping llorch-diff's catalogue checkpoints through `llorch-dump`.
//!
//! ```text
//! candle-engine MODEL.gguf OUT --prompt-tokens 1,2,3 [--tokens 4,5] [--steps N]
//!               [--dequantize] [--fault eps10|rope-base]
//! ```
//!
//! Step 0 evaluates the prompt tokens as one batch; decode step k (1..=steps) evaluates the
//! k-th of `--tokens` (llama.cpp's generated tokens, so both engines see the same inputs), or
//! this engine's own greedy choice when `--tokens` runs out. Weights stay quantized
//! (`QMatMul::QTensor`: candle quantizes each activation row to the weight's vec-dot type,
//! Q8_0/Q8_1/Q8_K, as ggml does) unless `--dequantize`, which dequantizes every weight to f32
//! once and multiplies in f32 (an f32 engine). `--fault` (or `CANDLE_ENGINE_FAULT`) injects a
//! deliberate bug: `eps10` multiplies the RMSNorm epsilon by ten, `rope-base` uses a RoPE
//! frequency base of 10000 whatever the model says (or 500000 if it says 10000).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Module, Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Eps10,
    RopeBase,
}

struct Opts {
    model: PathBuf,
    out: PathBuf,
    prompt_tokens: Vec<u32>,
    tokens: Vec<u32>,
    steps: u32,
    dequantize: bool,
    fault: Option<Fault>,
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u32>().with_context(|| format!("token id {t:?}")))
        .collect()
}

fn parse_fault(s: &str) -> Result<Option<Fault>> {
    Ok(match s {
        "" | "none" => None,
        "eps10" => Some(Fault::Eps10),
        "rope-base" => Some(Fault::RopeBase),
        _ => bail!("unknown fault {s:?} (eps10, rope-base)"),
    })
}

fn parse_args() -> Result<Opts> {
    let mut pos = Vec::new();
    let mut o = Opts {
        model: PathBuf::new(),
        out: PathBuf::new(),
        prompt_tokens: Vec::new(),
        tokens: Vec::new(),
        steps: 0,
        dequantize: false,
        fault: parse_fault(&std::env::var("CANDLE_ENGINE_FAULT").unwrap_or_default())?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--prompt-tokens" => o.prompt_tokens = parse_ids(&val(&a)?)?,
            "--tokens" => o.tokens = parse_ids(&val(&a)?)?,
            "--steps" => o.steps = val(&a)?.parse().context("--steps")?,
            "--fault" => o.fault = parse_fault(&val(&a)?)?,
            "--dequantize" => o.dequantize = true,
            s if s.starts_with("--") => bail!("unknown option {s}"),
            _ => pos.push(a),
        }
    }
    let [model, out] = <[String; 2]>::try_from(pos)
        .map_err(|_| anyhow::anyhow!("usage: candle-engine MODEL.gguf OUT --prompt-tokens IDS [--tokens IDS] [--steps N] [--dequantize] [--fault eps10|rope-base]"))?;
    o.model = model.into();
    o.out = out.into();
    if o.prompt_tokens.is_empty() {
        bail!("--prompt-tokens is required");
    }
    Ok(o)
}

struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

struct Model {
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    eps: f32,
    rope_base: f32,
    embd: Tensor,
    layers: Vec<Layer>,
    out_norm: Tensor,
    output: QMatMul,
}

fn meta<'a>(md: &'a HashMap<String, gguf_file::Value>, key: &str) -> Result<&'a gguf_file::Value> {
    md.get(key)
        .with_context(|| format!("GGUF metadata {key} missing"))
}

impl Model {
    fn load(path: &Path, dequantize: bool, fault: Option<Fault>) -> Result<(Model, String)> {
        let mut f = BufReader::new(File::open(path).with_context(|| path.display().to_string())?);
        let c = gguf_file::Content::read(&mut f).map_err(|e| e.with_path(path))?;
        let md = &c.metadata;
        let arch = meta(md, "general.architecture")?.to_string()?.clone();
        if arch != "llama" {
            bail!("architecture {arch} is not supported (llama only)");
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_layer = meta(md, &k("block_count"))?.to_u32()? as usize;
        let n_embd = meta(md, &k("embedding_length"))?.to_u32()? as usize;
        let n_head = meta(md, &k("attention.head_count"))?.to_u32()? as usize;
        let n_head_kv = match md.get(&k("attention.head_count_kv")) {
            Some(v) => v.to_u32()? as usize,
            None => n_head,
        };
        let head_dim = n_embd / n_head;
        if let Some(r) = md.get(&k("rope.dimension_count")) {
            if r.to_u32()? as usize != head_dim {
                bail!("partial RoPE is not supported");
            }
        }
        let mut eps = meta(md, &k("attention.layer_norm_rms_epsilon"))?.to_f32()?;
        let mut rope_base = match md.get(&k("rope.freq_base")) {
            Some(v) => v.to_f32()?,
            None => 10000.0,
        };
        match fault {
            Some(Fault::Eps10) => eps *= 10.0,
            Some(Fault::RopeBase) => {
                rope_base = if rope_base == 10000.0 {
                    500000.0
                } else {
                    10000.0
                }
            }
            None => {}
        }
        let dev = Device::Cpu;
        let mut mm = |name: &str| -> Result<QMatMul> {
            let q = c
                .tensor(&mut f, name, &dev)
                .with_context(|| name.to_string())?;
            Ok(if dequantize {
                QMatMul::Tensor(q.dequantize(&dev)?)
            } else {
                QMatMul::from_qtensor(q)?
            })
        };
        let mut layers_w = Vec::new();
        for l in 0..n_layer {
            let b = |s: &str| format!("blk.{l}.{s}.weight");
            layers_w.push((
                mm(&b("attn_q"))?,
                mm(&b("attn_k"))?,
                mm(&b("attn_v"))?,
                mm(&b("attn_output"))?,
                mm(&b("ffn_gate"))?,
                mm(&b("ffn_up"))?,
                mm(&b("ffn_down"))?,
            ));
        }
        let output_name = if c.tensor_infos.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let output = mm(output_name)?;
        let mut vec = |name: &str| -> Result<Tensor> {
            Ok(c.tensor(&mut f, name, &dev)
                .with_context(|| name.to_string())?
                .dequantize(&dev)?)
        };
        let embd = vec("token_embd.weight")?;
        let out_norm = vec("output_norm.weight")?;
        let mut layers = Vec::new();
        for (l, (wq, wk, wv, wo, w_gate, w_up, w_down)) in layers_w.into_iter().enumerate() {
            layers.push(Layer {
                attn_norm: vec(&format!("blk.{l}.attn_norm.weight"))?,
                ffn_norm: vec(&format!("blk.{l}.ffn_norm.weight"))?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }
        Ok((
            Model {
                n_head,
                n_head_kv,
                head_dim,
                eps,
                rope_base,
                embd,
                layers,
                out_norm,
                output,
            },
            arch,
        ))
    }
}

/// Dumps through llorch-dump, converting a candle tensor to its shape and f32 data.
struct Tap<'a> {
    w: &'a mut llorch_dump::Writer,
    step: u32,
}

impl Tap<'_> {
    fn put(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let shape = t.dims().to_vec();
        let data = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        self.w.put(self.step, name, &shape, &data)?;
        Ok(())
    }
}

/// x / sqrt(mean(x^2) + eps) * w over the last dimension.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps as f64)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Rotates adjacent pairs (x[2i], x[2i+1]) of every head by pos * base^(-2i/head_dim): the
/// llama (GGUF, "normal") RoPE layout. `x` is `[T, H, D]`.
fn rope(x: &Tensor, positions: &[usize], base: f32) -> Result<Tensor> {
    let (t, h, d) = x.dims3()?;
    let half = d / 2;
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for &p in positions {
        for i in 0..half {
            let theta = p as f32 * base.powf(-(2.0 * i as f32) / d as f32);
            cos.push(theta.cos());
            sin.push(theta.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (t, 1, half, 1), x.device())?;
    let sin = Tensor::from_vec(sin, (t, 1, half, 1), x.device())?;
    let x = x.reshape((t, h, half, 2))?;
    let x0 = x.narrow(3, 0, 1)?;
    let x1 = x.narrow(3, 1, 1)?;
    let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    Ok(Tensor::cat(&[r0, r1], 3)?.reshape((t, h, d))?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

/// One step: `ids` at positions `p0..p0+T`, appending to the caches; returns the logits.
fn step(
    m: &Model,
    ids: &[u32],
    p0: usize,
    cache: &mut [(Option<Tensor>, Option<Tensor>)],
    tap: &mut Tap,
) -> Result<Tensor> {
    let dev = Device::Cpu;
    let t = ids.len();
    let (nh, nkv, hd) = (m.n_head, m.n_head_kv, m.head_dim);
    let positions: Vec<usize> = (p0..p0 + t).collect();
    let idx = Tensor::new(ids, &dev)?;
    let ids_f32: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    tap.put("tokens", &Tensor::new(ids_f32, &dev)?)?;
    let mut x = m.embd.index_select(&idx, 0)?;
    tap.put("inp_embd", &x)?;
    let f = p0 + t;
    // Causal mask [T, F]: query t (position p0+t) sees positions 0..=p0+t.
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..f).map(move |j| if j > p0 + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    let mask = Tensor::from_vec(mask, (t, f), &dev)?;
    let scale = 1.0 / (hd as f64).sqrt();
    for (l, w) in m.layers.iter().enumerate() {
        let name = |k: &str| format!("blk.{l}.{k}");
        let xn = rms_norm(&x, &w.attn_norm, m.eps)?;
        tap.put(&name("attn_norm"), &xn)?;
        let q = w.wq.forward(&xn)?.reshape((t, nh, hd))?;
        tap.put(&name("Qcur"), &q)?;
        let q = rope(&q, &positions, m.rope_base)?;
        tap.put(&name("Qcur_rope"), &q)?;
        let k = w.wk.forward(&xn)?.reshape((t, nkv, hd))?;
        tap.put(&name("Kcur"), &k)?;
        let k = rope(&k, &positions, m.rope_base)?;
        tap.put(&name("Kcur_rope"), &k)?;
        let v = w.wv.forward(&xn)?.reshape((t, nkv, hd))?;
        tap.put(&name("Vcur"), &v)?;
        let (ck, cv) = &mut cache[l];
        let kk = match ck.take() {
            Some(old) => Tensor::cat(&[old, k], 0)?,
            None => k,
        };
        let vv = match cv.take() {
            Some(old) => Tensor::cat(&[old, v], 0)?,
            None => v,
        };
        tap.put(&name("cache_k"), &kk)?;
        tap.put(&name("cache_v"), &vv)?;
        // Heads first: q [H, T, D], k and v [Hkv, F, D]; each KV head serves H/Hkv query heads.
        let qh = q.transpose(0, 1)?.contiguous()?;
        let group = nh / nkv;
        let kh = kk
            .transpose(0, 1)?
            .unsqueeze(1)?
            .broadcast_as((nkv, group, f, hd))?
            .reshape((nh, f, hd))?;
        let vh = vv
            .transpose(0, 1)?
            .unsqueeze(1)?
            .broadcast_as((nkv, group, f, hd))?
            .reshape((nh, f, hd))?;
        let scores = (qh.matmul(&kh.t()?)? * scale)?.broadcast_add(&mask)?;
        let probs = softmax_last(&scores)?;
        tap.put(&name("kq_soft_max"), &probs)?;
        let o = probs
            .matmul(&vh)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((t, nh * hd))?;
        tap.put(&name("kqv_out"), &o)?;
        let a = w.wo.forward(&o)?;
        tap.put(&name("attn_out"), &a)?;
        let h = (&x + &a)?;
        tap.put(&name("ffn_inp"), &h)?;
        let hn = rms_norm(&h, &w.ffn_norm, m.eps)?;
        tap.put(&name("ffn_norm"), &hn)?;
        let g = w.w_gate.forward(&hn)?;
        tap.put(&name("ffn_gate"), &g)?;
        let u = w.w_up.forward(&hn)?;
        tap.put(&name("ffn_up"), &u)?;
        let s = (g.silu()? * u)?;
        tap.put(&name("ffn_swiglu"), &s)?;
        let d = w.w_down.forward(&s)?;
        tap.put(&name("ffn_out"), &d)?;
        x = (h + d)?;
        tap.put(&name("l_out"), &x)?;
        *ck = Some(kk);
        *cv = Some(vv);
    }
    let xn = rms_norm(&x, &m.out_norm, m.eps)?;
    tap.put("result_norm", &xn)?;
    let logits = m.output.forward(&xn)?;
    tap.put("result_output", &logits)?;
    Ok(logits)
}

fn sha256_hex(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path)?;
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

fn main() -> Result<()> {
    let o = parse_args()?;
    let (m, arch) = Model::load(&o.model, o.dequantize, o.fault)?;
    if let Some(f) = o.fault {
        eprintln!("candle-engine: fault {f:?} injected");
    }
    let mut w = llorch_dump::Writer::create(&o.out, "candle")?;
    w.set_model(llorch_dump::Model {
        file: o
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: sha256_hex(&o.model)?,
        architecture: arch,
        n_layer: m.layers.len() as u32,
    });
    w.set_prompt_tokens(
        &o.prompt_tokens
            .iter()
            .map(|&t| t as i32)
            .collect::<Vec<_>>(),
    );
    w.set_kv_type("f32");
    w.set_detail("candle-core", "0.9");
    w.set_detail(
        "matmul",
        if o.dequantize {
            "f32 (weights dequantized)"
        } else {
            "quantized (QMatMul, activations quantized to the vec-dot type)"
        },
    );
    let mut cache = vec![(None, None); m.layers.len()];
    let mut generated = Vec::new();
    let mut p0 = 0;
    let mut ids = o.prompt_tokens.clone();
    for s in 0..=o.steps {
        let logits = step(&m, &ids, p0, &mut cache, &mut Tap { w: &mut w, step: s })?;
        let last = logits.get(ids.len() - 1)?.to_vec1::<f32>()?;
        let best = last
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 {
                    (i, v)
                } else {
                    b
                }
            })
            .0 as u32;
        generated.push(best as i32);
        p0 += ids.len();
        ids = vec![o.tokens.get(s as usize).copied().unwrap_or(best)];
    }
    w.set_generated_tokens(&generated);
    w.finish()?;
    Ok(())
}
