//! The building blocks of a forward pass: weights streamed from the mapped file, matmul,
//! embedding rows, RoPE, attention over a growing KV cache. Mode-dependent arithmetic is
//! delegated to [`Numerics`].

use rayon::prelude::*;

use super::kernels;
use super::numerics::{AttnKernel, Mode, Numerics, Operand, WeightKernel};
use super::ReferenceError;
use crate::gguf::{GgufFile, TensorView};
use crate::quant::{self, GgmlType};

/// A 2-D weight matrix in the mapped file: `n_out` rows of `n_in` stored elements. It is never
/// converted as a whole; each row is decoded inside the dot product that reads it.
#[derive(Clone, Copy)]
pub struct Matrix<'f> {
    pub view: TensorView<'f>,
}

impl<'f> Matrix<'f> {
    pub fn name(&self) -> &'f str {
        &self.view.info.name
    }
    pub fn ty(&self) -> GgmlType {
        self.view.info.ggml_type
    }
    pub fn n_in(&self) -> usize {
        self.view.row_len()
    }
    pub fn n_out(&self) -> usize {
        self.view.n_rows()
    }
}

fn tensor_error(name: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Tensor {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Looks up a matrix and checks its shape (`[n_in, n_out]`, ggml order) and that its type can be
/// multiplied in this mode.
pub fn matrix<'f>(
    file: &'f GgufFile,
    name: &str,
    n_in: usize,
    n_out: usize,
) -> Result<Matrix<'f>, ReferenceError> {
    let view = file
        .tensor(name)
        .map_err(|_| tensor_error(name, "missing from the model"))?;
    let dims = &view.info.dims;
    if dims.len() != 2 || dims[0] as usize != n_in || dims[1] as usize != n_out {
        return Err(tensor_error(
            name,
            format!("has shape {dims:?}, expected [{n_in}, {n_out}]"),
        ));
    }
    let ty = view.info.ggml_type;
    // Both modes need the row decoder; ggml mode also needs the CPU dot product (whose
    // activation quantizer exists for every vec_dot_type).
    let mut probe = vec![0f32; ty.block_size()];
    let block = vec![0u8; ty.type_size()];
    if quant::dequantize_row(ty, &block, &mut probe).is_err() || !quant::has_vec_dot(ty) {
        return Err(tensor_error(
            name,
            format!("has type {ty}, which the reference does not support"),
        ));
    }
    Ok(Matrix { view })
}

/// A 1-D tensor (norm weight, bias) of `n` elements, decoded to f32 (small, so held).
pub fn vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>, ReferenceError> {
    let view = file
        .tensor(name)
        .map_err(|_| tensor_error(name, "missing from the model"))?;
    let dims = &view.info.dims;
    if dims.len() != 1 || dims[0] as usize != n {
        return Err(tensor_error(
            name,
            format!("has shape {dims:?}, expected [{n}]"),
        ));
    }
    let mut out = vec![0f32; n];
    quant::dequantize_row(view.info.ggml_type, view.data, &mut out)
        .map_err(|e| tensor_error(name, e.to_string()))?;
    Ok(out)
}

/// `y[t] = W · x[t]` for the `t` rows of `x` (`[t, n_in]` → `[t, n_out]`), parallel over the
/// output rows. Every output element is one independent dot product, so the result does not
/// depend on the thread count.
pub fn matmul(
    num: &Numerics,
    w: &Matrix<'_>,
    x: &[f32],
    t: usize,
) -> Result<Vec<f32>, ReferenceError> {
    let (n_in, n_out, ty) = (w.n_in(), w.n_out(), w.ty());
    debug_assert_eq!(x.len(), t * n_in);
    let wrap = |e: quant::QuantError| tensor_error(w.name(), e.to_string());
    let acts = x
        .chunks_exact(n_in)
        .enumerate()
        .map(|(i, row)| num.activation(ty, n_out, row, t, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(wrap)?;
    let batched =
        quant::has_batched_vec_dot(ty) && acts.iter().all(|a| a.kernel == WeightKernel::VecDot);
    if batched {
        // vec_dot for every pair, each weight row decoded once for all activation rows. Task
        // `c` computes weight rows `c * BATCH_ROWS..` for every activation row, laid out
        // `[t, rows]`; its columns are then copied into place.
        let act_rows = quant::ActRows::new(ty, acts.iter().map(|a| a.quantized()).collect(), n_in)
            .map_err(wrap)?;
        let mut chunks = vec![0f32; n_out * t];
        chunks
            .par_chunks_mut(BATCH_ROWS * t)
            .enumerate()
            .try_for_each(|(c, out)| {
                let first = c * BATCH_ROWS;
                let rows: Vec<&[u8]> = (first..first + out.len() / t)
                    .map(|o| w.view.row(o))
                    .collect();
                quant::vec_dot_block(ty, &rows, &act_rows, out)
            })
            .map_err(wrap)?;
        let mut y = vec![0f32; t * n_out];
        for (c, chunk) in chunks.chunks(BATCH_ROWS * t).enumerate() {
            let nr = chunk.len() / t;
            for (i, src) in chunk.chunks_exact(nr).enumerate() {
                y[i * n_out + c * BATCH_ROWS..][..nr].copy_from_slice(src);
            }
        }
        return Ok(y);
    }
    // Output-row-major first (each task owns whole weight rows), transposed at the end.
    let mut by_row = vec![0f32; n_out * t];
    by_row
        .par_chunks_mut(t)
        .with_min_len(16)
        .enumerate()
        .try_for_each(|(o, out)| num.dot_row(ty, w.view.row(o), &acts, n_in, out))
        .map_err(wrap)?;
    let mut y = vec![0f32; t * n_out];
    for o in 0..n_out {
        for i in 0..t {
            y[i * n_out + o] = by_row[o * t + i];
        }
    }
    Ok(y)
}

/// Weight rows one task of the batched matmul decodes and runs over the activation rows.
const BATCH_ROWS: usize = 16;

/// Rows of an embedding table (`[n_embd, n_rows]`), as ggml's `get_rows`: decoded exactly.
pub fn embedding_rows(table: &Matrix<'_>, ids: &[i32]) -> Result<Vec<f32>, ReferenceError> {
    let n = table.n_in();
    let mut out = vec![0f32; ids.len() * n];
    for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(n)) {
        let row = usize::try_from(id)
            .ok()
            .filter(|&r| r < table.n_out())
            .ok_or_else(|| {
                tensor_error(
                    table.name(),
                    format!("token id {id} is outside its {} rows", table.n_out()),
                )
            })?;
        quant::dequantize_row(table.ty(), table.view.row(row), dst)
            .map_err(|e| tensor_error(table.name(), e.to_string()))?;
    }
    Ok(out)
}

/// Element-wise `a + b`.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Adds `bias` to every row of `x`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Which elements RoPE pairs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// llama: adjacent elements `(2i, 2i+1)` (ggml's `GGML_ROPE_TYPE_NORMAL`).
    Normal,
    /// GPT-NeoX: `(i, i + n_dims/2)`.
    Neox,
}

/// One layer's KV cache: `[filled, n_head_kv, head_dim]` for K and for V, as stored (rounded to
/// f16 where the emulated cache is F16).
#[derive(Debug, Default, Clone)]
pub struct KvCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

impl KvCache {
    pub fn append(&mut self, num: &Numerics, k: &[f32], v: &[f32]) {
        self.k.extend(k.iter().map(|&x| num.kv_store(x)));
        self.v.extend(v.iter().map(|&x| num.kv_store(x)));
    }
}

/// The attention geometry of one layer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

impl Heads {
    pub fn of(p: &crate::gguf::ModelParams) -> Heads {
        Heads {
            n_head: p.n_head,
            n_head_kv: p.n_head_kv,
            head_dim: p.head_dim,
        }
    }

    /// The KV head query head `h` reads: consecutive query heads share one (GQA).
    pub fn kv_head(&self, h: usize) -> usize {
        h / (self.n_head / self.n_head_kv)
    }
}

/// Attention results: the probabilities `[n_head, t, filled]` and the weighted values
/// `[t, n_head * head_dim]`.
pub struct Attention {
    pub probs: Vec<f32>,
    pub out: Vec<f32>,
}

/// Causal attention of the queries for cache cells `cells` (`q` is `[t, n_head, head_dim]`) over
/// the cache, which holds every cell up to `cells.end`. `kv_head` maps a query head to its KV
/// head.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    num: &Numerics,
    cache: &KvCache,
    q: &[f32],
    cells: std::ops::Range<usize>,
    heads: Heads,
    scale: f32,
    window: Option<usize>,
    kv_head: impl Fn(usize) -> usize + Sync,
) -> Attention {
    let w = window;
    if let Some(att) = attention_vectorized(num, cache, q, cells.clone(), heads, scale, w, &kv_head)
    {
        return att;
    }
    attention_generic(num, cache, q, cells, heads, scale, w, kv_head)
}

/// A sliding window's mask (llama.cpp's `is_masked_swa`, `LLAMA_SWA_TYPE_STANDARD`): the
/// query at position `visible - 1` sees the key at `p` only when `visible - 1 - p < window`;
/// the cells before are set to -inf, as ggml's mask adds, so that the softmax sums the
/// same lanes.
fn mask_window(row: &mut [f32], visible: usize, window: Option<usize>) {
    if let Some(w) = window {
        row[..visible.saturating_sub(w)].fill(f32::NEG_INFINITY);
    }
}

/// [`attention`] through [`Numerics::attn_dot`], one dot product at a time: the definition the
/// vectorized path reproduces, and the path of exact mode.
#[allow(clippy::too_many_arguments)]
fn attention_generic(
    num: &Numerics,
    cache: &KvCache,
    q: &[f32],
    cells: std::ops::Range<usize>,
    heads: Heads,
    scale: f32,
    window: Option<usize>,
    kv_head: impl Fn(usize) -> usize + Sync,
) -> Attention {
    let Heads {
        n_head,
        n_head_kv,
        head_dim: d,
    } = heads;
    let filled = cache.k.len() / (n_head_kv * d);
    let (pos0, t) = (cells.start, cells.len());
    // Every row is prepared for its kernel once: keys per cell and KV head, values per KV head
    // and component (a row over the cells, as ggml reads the transposed V cache).
    let kq = num.kq_kernel(t, d);
    let keys: Vec<Operand> = cache
        .k
        .chunks_exact(d)
        .map(|k| num.operand(kq, k))
        .collect();
    let mut probs = vec![0f32; n_head * t * filled];
    probs
        .par_chunks_mut(t * filled)
        .enumerate()
        .for_each(|(h, head_probs)| {
            let hk = kv_head(h);
            for (i, row) in head_probs.chunks_exact_mut(filled).enumerate() {
                let query = num.operand(kq, &q[(i * n_head + h) * d..][..d]);
                let visible = pos0 + i + 1;
                for (f, s) in row[..visible].iter_mut().enumerate() {
                    *s = num.attn_dot(kq, &query, &keys[f * n_head_kv + hk]);
                }
                mask_window(row, visible, window);
                num.softmax_masked(row, visible, scale);
            }
        });
    let pv = num.pv_kernel(t);
    let mut column = vec![0f32; filled];
    let values: Vec<Operand> = (0..n_head_kv * d)
        .map(|r| {
            let (hk, j) = (r / d, r % d);
            for (f, c) in column.iter_mut().enumerate() {
                *c = cache.v[(f * n_head_kv + hk) * d + j];
            }
            num.operand(pv, &column)
        })
        .collect();
    let mut out = vec![0f32; t * n_head * d];
    out.par_chunks_mut(n_head * d)
        .enumerate()
        .for_each(|(i, tok_out)| {
            for (h, head_out) in tok_out.chunks_exact_mut(d).enumerate() {
                let hk = kv_head(h);
                let p = num.operand(pv, &probs[(h * t + i) * filled..][..filled]);
                for (j, o) in head_out.iter_mut().enumerate() {
                    *o = num.attn_dot(pv, &p, &values[hk * d + j]);
                }
            }
        });
    Attention { probs, out }
}

/// [`attention`] in ggml mode through the AVX2 kernels of [`kernels`]: the same operands (rounded
/// to the cache type as [`Numerics::operand`] rounds them) and the same sums, parallel over
/// (head, query) rows for K·Q and the softmax and over tokens for V·P. `None` where those kernels
/// do not apply (exact mode, a CPU without AVX2).
#[allow(clippy::too_many_arguments)]
fn attention_vectorized(
    num: &Numerics,
    cache: &KvCache,
    q: &[f32],
    cells: std::ops::Range<usize>,
    heads: Heads,
    scale: f32,
    window: Option<usize>,
    kv_head: &(impl Fn(usize) -> usize + Sync),
) -> Option<Attention> {
    let Heads {
        n_head,
        n_head_kv,
        head_dim: d,
    } = heads;
    let filled = cache.k.len() / (n_head_kv * d);
    let (pos0, t) = (cells.start, cells.len());
    let (kq, pv) = (num.kq_kernel(t, d), num.pv_kernel(t));
    let (kq_sum, pv_sum) = (kernels::Sum::of(kq)?, kernels::Sum::of(pv)?);
    if num.mode != Mode::Ggml || !kernels::available() {
        return None;
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, pos0, scale, window, kv_head, kq_sum, pv_sum);
        None
    }
    #[cfg(target_arch = "x86_64")]
    {
        // The operands as `Numerics::operand` prepares them: every value rounded to the cache
        // type; V·P rows over the cells (zero-padded to 32 for a padded vec_dot).
        let keys: Vec<f32> = cache.k.iter().map(|&x| num.kv_store(x)).collect();
        let mut probs = vec![0f32; n_head * t * filled];
        probs
            .par_chunks_mut(filled)
            .with_min_len(4)
            .enumerate()
            .for_each(|(r, row)| {
                let (h, i) = (r / t, r % t);
                let query: Vec<f32> = q[(i * n_head + h) * d..][..d]
                    .iter()
                    .map(|&x| num.kv_store(x))
                    .collect();
                let visible = pos0 + i + 1;
                // SAFETY: `kernels::available()` was checked above.
                unsafe {
                    kernels::scores_row(
                        kq_sum,
                        &query,
                        &keys,
                        n_head_kv * d,
                        kv_head(h) * d,
                        &mut row[..visible],
                    );
                    mask_window(row, visible, window);
                    kernels::softmax_row(row, visible, scale);
                }
                row[visible..].fill(0.0);
            });
        let len = match pv {
            AttnKernel::VecDot { padded: true, .. } => filled.next_multiple_of(32),
            _ => filled,
        };
        let mut columns = vec![0f32; n_head_kv * d * len];
        for (r, column) in columns.chunks_exact_mut(len).enumerate() {
            let (hk, j) = (r / d, r % d);
            for (f, c) in column[..filled].iter_mut().enumerate() {
                *c = num.kv_store(cache.v[(f * n_head_kv + hk) * d + j]);
            }
        }
        let mut out = vec![0f32; t * n_head * d];
        out.par_chunks_mut(n_head * d)
            .enumerate()
            .for_each(|(i, tok_out)| {
                let mut p = vec![0f32; len];
                for (h, head_out) in tok_out.chunks_exact_mut(d).enumerate() {
                    let src = &probs[(h * t + i) * filled..][..filled];
                    for (o, &x) in p.iter_mut().zip(src) {
                        *o = num.kv_store(x);
                    }
                    let hk = kv_head(h);
                    // SAFETY: `kernels::available()` was checked above.
                    unsafe {
                        kernels::weighted_row(
                            pv_sum,
                            &p,
                            &columns[hk * d * len..][..d * len],
                            head_out,
                        )
                    };
                }
            });
        Some(Attention { probs, out })
    }
}

/// `silu(gate) * up` for every row (`[t, n]` each), parallel over rows.
/// `gelu(gate) * up` elementwise (ggml's GEGLU, `ggml_vec_geglu_f32`): in ggml mode GELU
/// through the f16 table ([`Numerics::gelu`]) with ggml's own ends, 0 at or below -10 and
/// `gate * up` at or above 10.
pub fn geglu(num: &Numerics, gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.par_iter()
        .zip(up.par_iter())
        .map(|(&g, &u)| match num.mode {
            Mode::Ggml if g <= -10.0 => 0.0,
            Mode::Ggml if g >= 10.0 => g * u,
            Mode::Ggml => num.gelu(g) * u,
            Mode::Exact => (f64::from(num.gelu(g)) * f64::from(u)) as f32,
        })
        .collect()
}

pub fn swiglu(num: &Numerics, gate: &[f32], up: &[f32], n: usize) -> Vec<f32> {
    let mut act = vec![0f32; gate.len()];
    let fast = num.mode == Mode::Ggml && kernels::available();
    act.par_chunks_mut(n)
        .zip(gate.par_chunks(n).zip(up.par_chunks(n)))
        .for_each(|(a, (g, u))| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `kernels::available()` was checked.
                unsafe { kernels::swiglu_row(g, u, a) };
                return;
            }
            let _ = fast;
            num.swiglu_row(g, u, a);
        });
    act
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::KvType;
    use crate::reference::numerics::Mode;

    fn values(seed: u32, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// The vectorized attention gives the bits of the one-dot-at-a-time definition for every
    /// kernel ggml mode picks: a prompt (sgemm or vec_dot for K·Q, sgemm for V·P) and a decode
    /// step (vec_dot, V·P padded), F32 and F16 caches, cell counts off the lane widths.
    #[test]
    fn vectorized_attention_is_bit_identical_to_the_definition() {
        if !kernels::available() {
            return;
        }
        // 40: K·Q by sgemm on an F16 cache, a vec_dot tail on F32; 36: vec_dot with tails.
        for (head_dim, kv) in [
            (40, KvType::F32),
            (40, KvType::F16),
            (36, KvType::F32),
            (36, KvType::F16),
        ] {
            let heads = Heads {
                n_head: 4,
                n_head_kv: 2,
                head_dim,
            };
            let per_tok = heads.n_head_kv * heads.head_dim;
            let num = Numerics::new(Mode::Ggml, kv);
            for (pos0, t) in [(0, 37), (37, 1), (5, 3)] {
                let mut cache = KvCache::default();
                let filled = pos0 + t;
                cache.append(
                    &num,
                    &values(1, filled * per_tok),
                    &values(2, filled * per_tok),
                );
                let q = values(3, t * heads.n_head * heads.head_dim);
                let kv_head = |h: usize| heads.kv_head(h);
                // Without and with a sliding window shorter than the prompt.
                for window in [None, Some(5)] {
                    let cells = pos0..filled;
                    let fast = attention_vectorized(
                        &num,
                        &cache,
                        &q,
                        cells.clone(),
                        heads,
                        0.125,
                        window,
                        &kv_head,
                    )
                    .expect("ggml mode on an AVX2 CPU");
                    let slow =
                        attention_generic(&num, &cache, &q, cells, heads, 0.125, window, kv_head);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let what = format!("{kv:?} d={head_dim} {pos0}+{t} window {window:?}");
                    assert_eq!(bits(&fast.probs), bits(&slow.probs), "{what}");
                    assert_eq!(bits(&fast.out), bits(&slow.out), "{what}");
                    if let Some(w) = window {
                        // The last query sees only the last `w` cells.
                        let row = &slow.probs[(t - 1) * filled..][..filled];
                        assert!(row[..filled - w].iter().all(|&p| p == 0.0), "{what}");
                        assert!(row[filled - w..].iter().all(|&p| p > 0.0), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn exact_mode_takes_the_definition() {
        let num = Numerics::new(Mode::Exact, KvType::F32);
        let cache = KvCache {
            k: vec![1.0; 8],
            v: vec![1.0; 8],
        };
        let heads = Heads {
            n_head: 1,
            n_head_kv: 1,
            head_dim: 8,
        };
        let att = attention_vectorized(&num, &cache, &[1.0; 8], 0..1, heads, 1.0, None, &|_| 0);
        assert!(att.is_none());
    }
}
