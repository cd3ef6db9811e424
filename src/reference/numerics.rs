//! Everything that differs between the two numeric modes, in one place.
//!
//! `exact` computes the mathematics: weights dequantized (bit for bit as ggml's `to_float`) and
//! multiplied with f32 activations, products and sums in f64, norms, RoPE angles and softmax in
//! f64, nothing rounded below f32. Its distance from llama.cpp is what llama.cpp's shortcuts
//! cost.
//!
//! `ggml` reproduces the shortcuts that llama.cpp's CPU backend takes on purpose, so that what is
//! left between it and llama.cpp is summation order alone (about 1e-7 relative):
//!
//! | emulation | ggml source (pinned tree) |
//! |---|---|
//! | activations quantized to the weight type's `vec_dot_type` (Q8_0, Q8_1, Q8_K, F16) before a matmul, then ggml's `vec_dot` | ggml-cpu/ggml-cpu.c `ggml_compute_forward_mul_mat` (`from_float`, `vec_dot`) |
//! | IQ4_NL weights at two or more rows: llamafile's tinyBLAS_Q0_AVX, one FMA accumulator per output over all blocks (`d = dA*dB`), `hsum` | ggml-cpu/llamafile/sgemm.cpp `tinyBLAS_Q0_AVX`, `llamafile_sgemm` (case `GGML_TYPE_IQ4_NL`) |
//! | I-quant, ternary and FP4 weights (IQ4_NL, IQ4_XS, MXFP4, IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S, TQ2_0, TQ1_0): the AVX2 `vec_dot` against Q8_0 (IQ4_NL, MXFP4) or Q8_K (the rest), grids from ggml-common.h | ggml-cpu/arch/x86/quants.c `ggml_vec_dot_iq*_q8_*`, `ggml_vec_dot_mxfp4_q8_0`, `ggml_vec_dot_tq*_q8_K` |
//! | RMS norm: `x*x` in f32 summed in double, `mean` and `1/sqrtf(mean+eps)` in f32 | ggml-cpu/ops.cpp `ggml_compute_forward_rms_norm_f32` |
//! | layer norm: the mean a float division of a double sum rounded to float, the variance summed by groups of eight, `1/sqrtf(var+eps)` | ggml-cpu/ops.cpp `ggml_compute_forward_norm_f32`, vec.cpp `ggml_vec_cvar_f32` |
//! | RoPE: `theta_scale = powf(base, -2/n_dims)`, `theta *= theta_scale` per pair in f32, `cosf`/`sinf` | ggml-cpu/ops.cpp `ggml_rope_cache_init`, `rope_yarn`, `rotate_pairs` |
//! | RoPE frequency factors, linear scaling, YaRN (in `reference::rope`): `theta/ff`, `freq_scale*theta`, the ramp over `ggml_rope_yarn_corr_dims` in f32, the mix and `1 + 0.1*logf(1/freq_scale)` contracted to FMAs, cos and sin times `attn_factor` | ggml-cpu/ops.cpp `rope_yarn`, `rope_yarn_ramp`; ggml.c `ggml_rope_yarn_corr_dims`; llama-context.cpp (`yarn_attn_factor`) |
//! | softmax: `x*scale` in f32, `expf(x-max)` summed in double, times `(float)(1.0/sum)` | ggml-cpu/ops.cpp `ggml_compute_forward_soft_max_f32`, vec.cpp `ggml_vec_soft_max_f32` |
//! | F16 (BF16) KV cache: K and V rounded to f16 (bf16) on store; Q rounded likewise for K·Q and the probabilities for V·P (F16's and BF16's `vec_dot_type` are themselves) | ggml-cpu/ops.cpp `set_rows`, ggml-cpu.c `mul_mat` with F16/BF16 `src0` |
//! | GELU through the f16 table: `x` rounded to f16, `gelu` looked up (computed in f32, rounded to f16); 0 below -10, `x` above 10 | ggml-cpu/vec.h `ggml_vec_gelu_f32` (`GGML_GELU_FP16`), ggml-cpu.c table init |
//! | SwiGLU: `x/(1+v_expf(-x)) * g` in f32 by groups of eight, `expf` for the tail | ggml-cpu/vec.cpp `ggml_vec_swiglu_f32`, vec.h `ggml_v_silu` |
//! | GEGLU (gemma3, in `ops::geglu`): the GELU table times `g`; `0` (positive) at or below -10, `x*g` at or above 10 | ggml-cpu/vec.h `ggml_vec_geglu_f32` (`GGML_GELU_FP16`) |
//! | sliding-window attention (gemma3, in `ops::attention`): the keys outside the window set to -inf before the softmax, as the SWA mask adds, so the sums take the same lanes | llama-hparams.h `is_masked_swa`, llama-kv-cache.cpp `set_input_kq_mask` |
//! | softmax and SiLU exponentials through `ggml_v_expf`, ggml's vectorized `expf` | ggml-cpu/vec.h |
//! | K·Q and V·P summed in ggml's lane order: `ggml_vec_dot_f32/f16` for one column, llamafile's `tinyBLAS` for two or more | ggml-cpu/vec.cpp, llamafile/sgemm.cpp |
//! | RoPE rotation contracted to FMAs by GCC: `fma(x0, cos, -(x1*sin))`, `fma(x0, sin, x1*cos)` | ggml-cpu/ops.cpp `rotate_pairs` |
//! | Q2_K..Q6_K, IQ4_XS, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M weights with eight or more activation rows (or `GGML_CPU_TILED_MM_FORCE=1`), unless `GGML_CPU_TILED_MM=0` or the weight is repacked: the tiled GEMM, per 256-element block an exact integer sum per weight row and activation row, `d*s1`, `fnmadd(dmin, s2)`, `fma` into the accumulator; IQ4_XS through the `sign_epi8` MAC (`quant::tiled`) | ggml-cpu/tiled/tiled.cpp `ggml_compute_forward_mul_mat_tiled`, `tiled_unpack_src0`, tiled-kernel.cpp `tiled_run_microtile_avx2` |
//! | repacked weights (Q4_0, Q4_K, IQ4_NL, MXFP4 with `n_out % 8 == 0`, repack on; before the tiled GEMM, tinyBLAS and vec_dot): GEMM for the first `t - t % 4` rows when `t > 3`, GEMV for the rest | ggml-cpu/repack.cpp `ggml_repack_get_optimal_repack_type`, `tensor_traits::forward_mul_mat`, `forward_mul_mat_one_chunk` |
//! | activation rows of the repacked GEMM quantized four at a time (Q8_K: a `+m`/`-m` tie in a block takes `+m`) | ggml-cpu/arch/x86/repack.cpp `ggml_quantize_mat_q8_0_4x8`, `ggml_quantize_mat_q8_K_4x8` |
//! | Q4_0, IQ4_NL, MXFP4 repacked: `fma(float(isum), scale_w*d_a, acc)` per 32-element block, the nibbles looked up as `q - 8`, `kvalues_iq4nl[q]` or `kvalues_mxfp4[q]`, `scale_w` the f16 `d` or (MXFP4) `GGML_CPU_E8M0_TO_FP32_HALF(e)` | ggml-cpu/arch/x86/repack.cpp `gemv_q4_b32_8x8_q8_0_lut_avx`, `gemm_q4_b32_8x8_q8_0_lut_avx` (via `ggml_gemv/gemm_{q4_0,iq4_nl,mxfp4}_8x8_q8_0`), repack.cpp `make_block_iq4_nlx8`, `make_block_mxfp4x8` |
//! | Q4_K repacked: scale and min sums as two FMA chains, `acc - acc_min`; per super-block (GEMV) or per pair of sub-blocks (GEMM) | ggml-cpu/arch/x86/repack.cpp `ggml_gemv_q4_K_8x8_q8_K`, `ggml_gemm_q4_K_8x8_q8_K` |
//!
//! With these, ggml mode reproduces llama.cpp's CPU results bit for bit on the models the tests
//! use. Not emulated: NVFP4, Q1_0 and Q2_0 weights (no `vec_dot` here), and the repacked
//! layouts ggml has only for other CPUs (AVX512, NEON, SVE, RISC-V).

use crate::checkpoint::KvType;
use crate::cpu_config::CpuConfig;
use crate::quant::{self, f16_to_f32, f32_to_f16_ggml, GgmlType, QuantError};

/// How the reference computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The mathematics, in f32 with f64 accumulation.
    Exact,
    /// llama.cpp's CPU arithmetic: quantized activations, f16 KV rounding, ggml's formulas.
    Ggml,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exact => "exact",
            Mode::Ggml => "ggml",
        }
    }
}

/// The arithmetic of one run: the mode, the KV cache type and the CPU backend configuration it
/// emulates.
#[derive(Debug, Clone, Copy)]
pub struct Numerics {
    pub mode: Mode,
    /// The type K, V and their matmul operands are rounded to (ggml mode, F16 or BF16 cache);
    /// `None` keeps them f32.
    kv_round: Option<GgmlType>,
    /// Which matmul kernels llama.cpp's CPU backend may pick (ggml mode).
    cpu: CpuConfig,
}

/// The kernel llama.cpp's CPU backend runs for one activation row of a weight matmul, as
/// `ggml_compute_forward_mul_mat` (ggml-cpu/ggml-cpu.c) dispatches it on x86-64-v3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKernel {
    /// Exact mode: f32 activations, f64 sums.
    Exact,
    /// `type_traits_cpu[ty].vec_dot` on activations quantized to `vec_dot_type`.
    VecDot,
    /// llamafile's tinyBLAS on F32/F16/BF16 weights (two or more rows).
    Sgemm,
    /// llamafile's `tinyBLAS_Q0_AVX` on IQ4_NL weights and Q8_0 activations (two or more rows):
    /// one accumulator over all blocks, where IQ4_NL's `vec_dot` keeps two.
    SgemmQ0,
    /// ggml-cpu/tiled: the tiled GEMM for K-quant and I-quant weights at eight or more rows.
    Tiled,
    /// ggml-cpu/repack.cpp: a repacked weight's GEMM, for whole groups of four rows.
    RepackGemm,
    /// ggml-cpu/repack.cpp: a repacked weight's GEMV, for the rows after the last group of four.
    RepackGemv,
}

impl Numerics {
    pub fn new(mode: Mode, kv_type: KvType) -> Self {
        Self::with_cpu(mode, kv_type, CpuConfig::default())
    }

    /// Numerics that emulate llama.cpp's CPU backend in the configuration `cpu`.
    pub fn with_cpu(mode: Mode, kv_type: KvType, cpu: CpuConfig) -> Self {
        Numerics {
            mode,
            kv_round: match (mode, kv_type) {
                (Mode::Ggml, KvType::F16) => Some(GgmlType::F16),
                (Mode::Ggml, KvType::Bf16) => Some(GgmlType::BF16),
                _ => None,
            },
            cpu,
        }
    }

    pub fn cpu(&self) -> CpuConfig {
        self.cpu
    }

    /// The kernel for activation row `i` of a `t`-row matmul with an `[n_in, n_out]` weight of
    /// `ty`, in the order ggml tries them: a repacked weight's kernels (ggml_cpu_extra_compute_forward),
    /// the tiled GEMM (ggml_compute_forward_mul_mat_tiled), llamafile's sgemm, then vec_dot.
    pub fn weight_kernel(
        &self,
        ty: GgmlType,
        n_in: usize,
        n_out: usize,
        t: usize,
        i: usize,
    ) -> WeightKernel {
        if self.mode == Mode::Exact {
            return WeightKernel::Exact;
        }
        if self.cpu.repack && quant::repack::has_layout(ty, n_out) {
            // forward_mul_mat_one_chunk: gemm for the first t - t % 4 rows when t > 3.
            return if t > 3 && i < t - t % 4 {
                WeightKernel::RepackGemm
            } else {
                WeightKernel::RepackGemv
            };
        }
        if self.cpu.tiled_mm
            && quant::tiled::supports(ty)
            && n_in.is_multiple_of(256)
            && (t >= 8 || self.cpu.tiled_mm_force)
        {
            return WeightKernel::Tiled;
        }
        // llamafile's sgemm takes F32/F16/BF16 weights when there are two or more columns and
        // the row length is a whole number of 8-lane chunks.
        if matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
            && t >= 2
            && n_in.is_multiple_of(8)
        {
            return WeightKernel::Sgemm;
        }
        // tinyBLAS_Q0_AVX also takes Q4_0, Q5_0 and Q8_0, whose vec_dot sums in its order.
        if ty == GgmlType::IQ4NL && t >= 2 {
            return WeightKernel::SgemmQ0;
        }
        WeightKernel::VecDot
    }

    /// The same numerics with the F16 cache rounding switched off (a fault).
    pub fn without_kv_rounding(self) -> Self {
        Numerics {
            kv_round: None,
            ..self
        }
    }

    /// Prepares activation row `i` of a `t`-row matmul for dots with the rows of an
    /// `[x.len(), n_out]` weight of `weight_type`.
    pub fn activation(
        &self,
        weight_type: GgmlType,
        n_out: usize,
        x: &[f32],
        t: usize,
        i: usize,
    ) -> Result<Activation, QuantError> {
        let kernel = self.weight_kernel(weight_type, x.len(), n_out, t, i);
        let (values, bytes) = match kernel {
            WeightKernel::Exact => (x.to_vec(), Vec::new()),
            // F16/BF16 activations are rounded to the weight type first, as for vec_dot.
            WeightKernel::Sgemm => {
                let values = match weight_type {
                    GgmlType::F16 => x.iter().map(|&v| f16_to_f32(f32_to_f16_ggml(v))).collect(),
                    GgmlType::BF16 => x
                        .iter()
                        .map(|&v| quant::bf16_to_f32(quant::f32_to_bf16(v)))
                        .collect(),
                    _ => x.to_vec(),
                };
                (values, Vec::new())
            }
            WeightKernel::VecDot
            | WeightKernel::SgemmQ0
            | WeightKernel::Tiled
            | WeightKernel::RepackGemm
            | WeightKernel::RepackGemv => {
                let act_type = quant::vec_dot_type(weight_type);
                let n_bytes = act_type.row_size(x.len()).ok_or(QuantError::PartialBlock {
                    ty: act_type,
                    n: x.len(),
                    block: act_type.block_size(),
                })?;
                let mut bytes = vec![0u8; n_bytes];
                if kernel == WeightKernel::RepackGemm {
                    // Rows in groups of four go through ggml_quantize_mat_t, not from_float.
                    quant::repack::quantize_mat_row(act_type, x, &mut bytes)?;
                } else {
                    quant::quantize_activation(act_type, x, &mut bytes)?;
                }
                (Vec::new(), bytes)
            }
        };
        Ok(Activation {
            kernel,
            values,
            bytes,
        })
    }

    /// Dots of one stored weight row of `n` elements with every prepared activation row
    /// (`out[i]` for `acts[i]`).
    pub fn dot_row(
        &self,
        weight_type: GgmlType,
        weight_row: &[u8],
        acts: &[Activation],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), QuantError> {
        // The tiled GEMM takes every row of a matmul or none: unpack each weight block once.
        if !acts.is_empty() && acts.iter().all(|a| a.kernel == WeightKernel::Tiled) {
            let rows: Vec<&[u8]> = acts.iter().map(|a| a.bytes.as_slice()).collect();
            return quant::tiled::dot_rows(weight_type, weight_row, &rows, n, out);
        }
        // The sgemm path reads the row as floats: decode it once for all activation rows.
        let mut decoded = Vec::new();
        for (y, act) in out.iter_mut().zip(acts) {
            *y = match act.kernel {
                WeightKernel::Exact => quant::dot_exact(weight_type, weight_row, &act.values)?,
                WeightKernel::VecDot => quant::vec_dot(weight_type, weight_row, &act.bytes, n)?,
                WeightKernel::SgemmQ0 => {
                    quant::sgemm_q0_dot(weight_type, weight_row, &act.bytes, n)?
                }
                WeightKernel::Tiled => quant::tiled::dot(weight_type, weight_row, &act.bytes, n)?,
                WeightKernel::RepackGemm => {
                    quant::repack::gemm_dot(weight_type, weight_row, &act.bytes, n)?
                }
                WeightKernel::RepackGemv => {
                    quant::repack::gemv_dot(weight_type, weight_row, &act.bytes, n)?
                }
                WeightKernel::Sgemm => {
                    if decoded.is_empty() {
                        decoded = vec![0f32; n];
                        quant::dequantize_row(weight_type, weight_row, &mut decoded)?;
                    }
                    tinyblas_dot(&decoded, &act.values)
                }
            };
        }
        Ok(())
    }

    /// `x / rms(x) * w`.
    pub fn rms_norm(&self, x: &[f32], eps: f32, w: &[f32], out: &mut [f32]) {
        let n = x.len();
        match self.mode {
            Mode::Exact => {
                let mean = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n as f64;
                let scale = 1.0 / (mean + f64::from(eps)).sqrt();
                for i in 0..n {
                    out[i] = (f64::from(x[i]) * scale * f64::from(w[i])) as f32;
                }
            }
            Mode::Ggml => {
                let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
                let mean = (sum / n as f64) as f32;
                let scale = 1.0f32 / (mean + eps).sqrt();
                for i in 0..n {
                    out[i] = x[i] * scale * w[i];
                }
            }
        }
    }

    /// `(x - mean) / std * w + b`.
    pub fn layer_norm(&self, x: &[f32], eps: f32, w: &[f32], b: &[f32], out: &mut [f32]) {
        let n = x.len();
        match self.mode {
            Mode::Exact => {
                let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
                let var = x
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / n as f64;
                let scale = 1.0 / (var + f64::from(eps)).sqrt();
                for i in 0..n {
                    let y = (f64::from(x[i]) - mean) * scale;
                    out[i] = (y * f64::from(w[i]) + f64::from(b[i])) as f32;
                }
            }
            // ggml_compute_forward_norm_f32: the sum in double rounded to float, the mean a
            // float division; ggml_vec_cvar_f32 sums squares by groups of eight (hsum in f32,
            // then double) and the tail in double.
            Mode::Ggml => {
                let sum = x.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
                let mean = sum / n as f32;
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v - mean;
                }
                let whole = n / 8 * 8;
                let mut var = 0f64;
                for group in out[..whole].chunks_exact(8) {
                    let mut sq = [0f32; 8];
                    for (s, &c) in sq.iter_mut().zip(group) {
                        *s = c * c;
                    }
                    var += f64::from(hsum8(&sq));
                }
                for &c in &out[whole..] {
                    var += f64::from(c * c);
                }
                let var = (var / n as f64) as f32;
                let scale = 1.0f32 / (var + eps).sqrt();
                for i in 0..n {
                    out[i] = out[i] * scale * w[i] + b[i];
                }
            }
        }
    }

    /// Rotates `(x0, x1)` by an angle given as `(cos, sin)`.
    #[inline]
    pub fn rotate(&self, x0: f32, x1: f32, (c, s): (f32, f32)) -> (f32, f32) {
        match self.mode {
            Mode::Exact => {
                let (x0, x1, c, s) = (f64::from(x0), f64::from(x1), f64::from(c), f64::from(s));
                ((x0 * c - x1 * s) as f32, (x0 * s + x1 * c) as f32)
            }
            // GCC contracts `x0*c - x1*s` and `x0*s + x1*c` in rotate_pairs into one FMA each,
            // the first product fused (measured against llama.cpp's dumps).
            Mode::Ggml => (x0.mul_add(c, -(x1 * s)), x0.mul_add(s, x1 * c)),
        }
    }

    /// Softmax of `scale * scores` over `row` in place; entries at and past `visible` are masked
    /// (probability 0).
    pub fn softmax_masked(&self, row: &mut [f32], visible: usize, scale: f32) {
        match self.mode {
            Mode::Exact => {
                let scaled: Vec<f64> = row[..visible]
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(scale))
                    .collect();
                let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scaled.iter().map(|&v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (o, v) in row.iter_mut().zip(&e) {
                    *o = (v / sum) as f32;
                }
            }
            Mode::Ggml => softmax_ggml(row, visible, scale),
        }
        for v in &mut row[visible..] {
            *v = 0.0;
        }
    }

    /// The kernel llama.cpp uses for K·Q (rows of `head_dim`) in a step of `t` tokens.
    pub fn kq_kernel(&self, t: usize, head_dim: usize) -> AttnKernel {
        match self.mode {
            Mode::Exact => AttnKernel::ExactF64,
            // The query is rounded to the cache type (`vec_dot_type`); llamafile's sgemm takes
            // the product when it has two or more columns and an F16 cache (an F32 query is not
            // contiguous for a prompt, and sgemm refuses single columns).
            Mode::Ggml if self.kv_round.is_some() && t >= 2 && head_dim.is_multiple_of(8) => {
                AttnKernel::Sgemm
            }
            Mode::Ggml => AttnKernel::VecDot {
                ty: self.cache_type(),
                padded: false,
            },
        }
    }

    /// The kernel llama.cpp uses for V·P (rows over the cells) in a step of `t` tokens.
    pub fn pv_kernel(&self, t: usize) -> AttnKernel {
        match self.mode {
            Mode::Exact => AttnKernel::ExactF64,
            Mode::Ggml if t >= 2 => AttnKernel::Sgemm,
            // ggml multiplies over the whole padded cache (a multiple of 256 cells) whose unused
            // cells hold zeros: zero-padding to vec_dot's step of 32 reproduces its lanes.
            Mode::Ggml => AttnKernel::VecDot {
                ty: self.cache_type(),
                padded: true,
            },
        }
    }

    /// One row of an attention product as `kernel` reads it: rounded to the cache type, padded
    /// and encoded where the kernel needs it. Prepared once, dotted many times.
    pub fn operand(&self, kernel: AttnKernel, x: &[f32]) -> Operand {
        let mut values: Vec<f32> = match kernel {
            AttnKernel::ExactF64 => x.to_vec(),
            _ => x.iter().map(|&v| self.kv_operand(v)).collect(),
        };
        let bytes = match kernel {
            AttnKernel::VecDot { ty, padded } => {
                if padded {
                    values.resize(values.len().next_multiple_of(32), 0.0);
                }
                match ty {
                    GgmlType::F16 => values
                        .iter()
                        .flat_map(|&f| f32_to_f16_ggml(f).to_le_bytes())
                        .collect(),
                    GgmlType::BF16 => values
                        .iter()
                        .flat_map(|&f| quant::f32_to_bf16(f).to_le_bytes())
                        .collect(),
                    _ => values.iter().flat_map(|f| f.to_le_bytes()).collect(),
                }
            }
            _ => Vec::new(),
        };
        Operand { values, bytes }
    }

    /// The dot product of two operands prepared for `kernel`.
    pub fn attn_dot(&self, kernel: AttnKernel, a: &Operand, b: &Operand) -> f32 {
        match kernel {
            AttnKernel::ExactF64 => dot_f64(&a.values, &b.values),
            AttnKernel::Sgemm => tinyblas_dot(&a.values, &b.values),
            // `vec_dot` reproduces ggml_vec_dot_f32/f16; the operands have equal lengths.
            AttnKernel::VecDot { ty, .. } => {
                quant::vec_dot(ty, &a.bytes, &b.bytes, a.values.len()).unwrap_or(f32::NAN)
            }
        }
    }

    fn cache_type(&self) -> GgmlType {
        self.kv_round.unwrap_or(GgmlType::F32)
    }

    /// What a value becomes when stored in the KV cache.
    #[inline]
    pub fn kv_store(&self, x: f32) -> f32 {
        match self.kv_round {
            Some(GgmlType::F16) => f16_to_f32(f32_to_f16_ggml(x)),
            Some(_) => quant::bf16_to_f32(quant::f32_to_bf16(x)),
            None => x,
        }
    }

    /// What the other operand of a matmul with the KV cache becomes (the query for K·Q, the
    /// probabilities for V·P): F16's and BF16's `vec_dot_type` are themselves.
    #[inline]
    fn kv_operand(&self, x: f32) -> f32 {
        self.kv_store(x)
    }

    /// `silu(gate) * up` over one row.
    pub fn swiglu_row(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        match self.mode {
            Mode::Exact => {
                for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                    let g = f64::from(g);
                    *o = (g / (1.0 + (-g).exp()) * f64::from(u)) as f32;
                }
            }
            Mode::Ggml => swiglu_ggml(gate, up, out),
        }
    }

    /// GPT-2's tanh approximation of GELU.
    pub fn gelu(&self, x: f32) -> f32 {
        const GELU_COEF_A: f32 = 0.044715;
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        match self.mode {
            Mode::Exact => {
                let x = f64::from(x);
                let a = f64::from(GELU_COEF_A);
                let k = (2.0 / std::f64::consts::PI).sqrt();
                (0.5 * x * (1.0 + (k * x * (1.0 + a * x * x)).tanh())) as f32
            }
            Mode::Ggml => {
                if x <= -10.0 {
                    0.0
                } else if x >= 10.0 {
                    x
                } else {
                    let xh = f16_to_f32(f32_to_f16_ggml(x));
                    let g = 0.5
                        * xh
                        * (1.0 + (SQRT_2_OVER_PI * xh * (1.0 + GELU_COEF_A * xh * xh)).tanh());
                    f16_to_f32(f32_to_f16_ggml(g))
                }
            }
        }
    }
}

/// ggml's softmax of `scale * row[..visible]` in place (`ggml_compute_forward_soft_max_f32`);
/// the cells from `visible` on are left as they are. Inlined into its callers so that the
/// vectorized kernels compile its FMAs as instructions.
#[inline(always)]
pub(crate) fn softmax_ggml(row: &mut [f32], visible: usize, scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in &mut row[..visible] {
        *v *= scale;
        max = max.max(*v);
    }
    // Groups of eight from cell 0, as the AVX2 loop over the padded row takes them; masked
    // cells are exp(-inf) = 0 and add nothing.
    let mut sum = 0f64;
    for group in row[..visible].chunks_mut(8) {
        let mut lanes = [0f32; 8];
        for (lane, v) in lanes.iter_mut().zip(group.iter_mut()) {
            *v = v_expf(*v - max);
            *lane = *v;
        }
        sum += f64::from(hsum8(&lanes));
    }
    let inv = (1.0 / sum) as f32;
    for v in &mut row[..visible] {
        *v *= inv;
    }
}

/// ggml_vec_swiglu_f32: `ggml_v_silu` (x / (1 + v_expf(0 - x))) for whole groups of eight,
/// `ggml_silu_f32` (x / (1 + expf(-x))) for the tail. Inlined as [`softmax_ggml`].
#[inline(always)]
pub(crate) fn swiglu_ggml(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let whole = gate.len() / 8 * 8;
    for (i, ((o, &g), &u)) in out.iter_mut().zip(gate).zip(up).enumerate() {
        let e = if i < whole {
            v_expf(0.0 - g)
        } else {
            (-g).exp()
        };
        *o = g / (1.0 + e) * u;
    }
}

/// f64 dot product of two f32 rows.
fn dot_f64(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum::<f64>() as f32
}

/// llamafile's `tinyBLAS<8, __m256, ...>::gemm_bloc` for one output (ggml-cpu/llamafile/
/// sgemm.cpp): one 8-lane FMA accumulator over chunks of eight, then `hsum`. Rows are zero-padded
/// to a whole chunk (the cache they come from is).
fn tinyblas_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (i, (&a, &b)) in x.iter().zip(y).enumerate() {
        acc[i % 8] = a.mul_add(b, acc[i % 8]);
    }
    hsum8(&acc)
}

/// The horizontal sum of an `__m256` as ggml and llamafile take it: high half plus low half,
/// then `(0 + 2) + (1 + 3)`.
#[inline(always)]
fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// `ggml_v_expf` (ggml-cpu/vec.h, AVX2 branch) on one lane: ggml's vectorized `expf`, within
/// 2 ulp of it, and what ggml's softmax uses for every whole group of eight.
#[inline(always)]
fn v_expf(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits() << 23;
    let k = c(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    // A NaN `n` takes the first path, as the vector compare does.
    let large = n.abs() > 126.0;
    if !large {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7f00_0000));
    let s2 = c(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// How an attention product (K·Q or V·P) is summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnKernel {
    /// Exact mode: f64 products and sums.
    ExactF64,
    /// llamafile's sgemm (tinyBLAS) lane order.
    Sgemm,
    /// `ggml_vec_dot_f32` or `ggml_vec_dot_f16`, rows zero-padded to 32 when `padded`.
    VecDot { ty: GgmlType, padded: bool },
}

/// An attention row prepared for its kernel by [`Numerics::operand`].
#[derive(Debug, Clone)]
pub struct Operand {
    values: Vec<f32>,
    /// The values in the cache type's bytes, for [`AttnKernel::VecDot`].
    bytes: Vec<u8>,
}

/// An activation row ready for dots with weight rows, for the kernel that will take it.
#[derive(Debug, Clone)]
pub struct Activation {
    pub kernel: WeightKernel,
    /// The f32 values the kernel reads (exact mode, sgemm).
    values: Vec<f32>,
    /// The row quantized to the weight type's `vec_dot_type` (vec_dot, tiled and repacked
    /// kernels).
    bytes: Vec<u8>,
}

impl Activation {
    /// The row quantized to the weight type's `vec_dot_type` (empty for exact mode and sgemm).
    pub fn quantized(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_masks() {
        for mode in [Mode::Exact, Mode::Ggml] {
            let n = Numerics::new(mode, KvType::F32);
            let mut row = vec![1.0, 2.0, 3.0, 100.0];
            n.softmax_masked(&mut row, 3, 0.5);
            assert_eq!(row[3], 0.0);
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "{mode:?}: {s}");
            assert!(row[2] > row[1] && row[1] > row[0]);
        }
    }

    #[test]
    fn v_expf_is_close_to_exp_and_zero_at_minus_infinity() {
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(0.0), 1.0);
        for i in -800..=80 {
            let x = i as f32 / 10.0;
            let want = f64::from(x).exp();
            let got = f64::from(v_expf(x));
            assert!((got - want).abs() <= 3e-7 * want, "{x}: {got} vs {want}");
        }
    }

    #[test]
    fn kv_rounding_only_in_ggml_mode_with_f16() {
        let x = 0.1f32;
        assert_eq!(Numerics::new(Mode::Exact, KvType::F16).kv_store(x), x);
        assert_eq!(Numerics::new(Mode::Ggml, KvType::F32).kv_store(x), x);
        let r = Numerics::new(Mode::Ggml, KvType::F16).kv_store(x);
        assert_ne!(r, x);
        assert_eq!(r, half::f16::from_f32(x).to_f32());
    }

    #[test]
    fn gelu_table_matches_formula_closely() {
        let e = Numerics::new(Mode::Exact, KvType::F32);
        let g = Numerics::new(Mode::Ggml, KvType::F32);
        for i in -120..=120 {
            let x = i as f32 / 10.0;
            assert!(
                (e.gelu(x) - g.gelu(x)).abs() <= 2e-3 * (1.0 + x.abs()),
                "{x}"
            );
        }
        assert_eq!(g.gelu(-10.5), 0.0);
        assert_eq!(g.gelu(10.5), 10.5);
    }
}
