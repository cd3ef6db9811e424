//! ggml's repacked matmul kernels (Q4_0 -> q4_0_8x8, Q4_K -> q4_K_8x8, IQ4_NL -> iq4_nl_8x8,
//! MXFP4 -> mxfp4_8x8 on x86-64-v3) against the reference's emulation, bit for bit: one MUL_MAT through ggml's CPU backend at a time, then
//! whole runs of llama.cpp and the reference on models whose weights llama.cpp repacks.
//!
//! `cargo test --release --test repack_ggml -- --nocapture --test-threads 1` prints what was
//! checked.

mod common;

use std::path::Path;

use llorch_diff::checkpoint::DumpFolder;
use llorch_diff::cpu_config::CpuConfig;
use llorch_diff::gguf::presets::{write_preset, Preset};
use llorch_diff::llamacpp::extract::{extract, ExtractOptions, ExtractSummary};
use llorch_diff::llamacpp::quantize::{quantize_model, FileType};
use llorch_diff::llamacpp::{ggml, set_verbose, KvType, Session};
use llorch_diff::quant::{self, repack, GgmlType};
use llorch_diff::reference::numerics::WeightKernel;
use llorch_diff::reference::{reference, Mode, Numerics, ReferenceOptions};

use GgmlType::*;

/// splitmix64: deterministic, dependency-free randomness.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform() as f64, self.uniform() as f64);
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// `n_out` rows of `n_in` N(0, 1/n_in) weights quantized as llama.cpp's files hold them: by
/// ggml's reference quantizer (as the crate's Rust port) for Q4_0 and Q4_K, by ggml's own
/// `ggml_quantize_chunk` for IQ4_NL and MXFP4. Every eighth row is scaled by a power of two
/// between 2^-6 and 2^5, so that the block scales (MXFP4's E8M0 exponents in particular) vary.
fn weights(ty: GgmlType, n_in: usize, n_out: usize, rng: &mut Rng) -> Vec<u8> {
    let scale = 1.0 / (n_in as f32).sqrt();
    let mut f = vec![0f32; n_in * n_out];
    for (r, row) in f.chunks_exact_mut(n_in).enumerate() {
        let row_scale = if r % 8 == 3 {
            scale * 2f32.powi((r / 8 % 12) as i32 - 6)
        } else {
            scale
        };
        for v in row {
            *v = rng.normal() * row_scale;
        }
    }
    if matches!(ty, IQ4NL | MXFP4) {
        return ggml::quantize_chunk(ty, &f, n_in, None).expect("ggml_quantize_chunk");
    }
    let row_bytes = ty.row_size(n_in).unwrap();
    let mut out = vec![0u8; row_bytes * n_out];
    for (src, dst) in f.chunks_exact(n_in).zip(out.chunks_exact_mut(row_bytes)) {
        quant::quantize_row(ty, src, dst).unwrap();
    }
    out
}

/// Activations like a normed hidden state: N(0, 1) with a few large channels.
fn activations(n_in: usize, t: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n_in * t)
        .map(|i| {
            let v = rng.normal();
            if i % 97 == 5 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

/// The reference's matmul as ops::matmul runs it: `[t, n_out]` row-major.
fn reference_mul_mat(
    num: &Numerics,
    ty: GgmlType,
    w: &[u8],
    n_in: usize,
    n_out: usize,
    x: &[f32],
    t: usize,
) -> Vec<f32> {
    let acts: Vec<_> = x
        .chunks_exact(n_in)
        .enumerate()
        .map(|(i, row)| num.activation(ty, n_out, row, t, i).unwrap())
        .collect();
    let row_bytes = ty.row_size(n_in).unwrap();
    let mut y = vec![0f32; t * n_out];
    let mut col = vec![0f32; t];
    for (o, wrow) in w.chunks_exact(row_bytes).enumerate() {
        num.dot_row(ty, wrow, &acts, n_in, &mut col).unwrap();
        for i in 0..t {
            y[i * n_out + o] = col[i];
        }
    }
    y
}

fn ggml_numerics() -> Numerics {
    Numerics::with_cpu(Mode::Ggml, KvType::F32, CpuConfig::default())
}

fn first_bit_diff(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

const TOKENS: [usize; 10] = [1, 2, 3, 4, 5, 7, 8, 9, 16, 33];

/// One shape: ggml (1 and 2 threads) against the reference, every `t` of `ts`.
fn check_shape(ty: GgmlType, n_in: usize, n_out: usize, ts: &[usize], rng: &mut Rng) -> usize {
    let num = ggml_numerics();
    let w = weights(ty, n_in, n_out, rng);
    let mut checked = 0;
    for &t in ts {
        let x = activations(n_in, t, rng);
        let one = ggml::mul_mat(ty, &w, n_in, n_out, &x, t, 1, true).expect("ggml mul_mat");
        let two = ggml::mul_mat(ty, &w, n_in, n_out, &x, t, 2, true).expect("ggml mul_mat");
        let tag = format!("{ty} n_in={n_in} n_out={n_out} t={t}");
        assert_eq!(
            one.repacked,
            repack::has_layout(ty, n_out),
            "{tag}: repacked"
        );
        assert_eq!(two.repacked, one.repacked, "{tag}: repacked with 2 threads");
        assert_eq!(
            first_bit_diff(&one.out, &two.out),
            None,
            "{tag}: 1 and 2 threads differ"
        );
        let ours = reference_mul_mat(&num, ty, &w, n_in, n_out, &x, t);
        if let Some(i) = first_bit_diff(&one.out, &ours) {
            panic!(
                "{tag}: output [{}, {}] is {:e} in ggml, {:e} in the reference (kernel {:?})",
                i / n_out,
                i % n_out,
                one.out[i],
                ours[i],
                num.weight_kernel(ty, n_in, n_out, t, i / n_out)
            );
        }
        checked += t * n_out;
    }
    checked
}

#[test]
fn q4_0_repacked_matmul_is_bit_identical() {
    let mut rng = Rng(0x5EED_0001);
    let mut n = 0;
    for n_in in [64, 256, 512, 576, 1536] {
        for n_out in [8, 16, 576] {
            n += check_shape(Q4_0, n_in, n_out, &TOKENS, &mut rng);
        }
    }
    println!("Q4_0 repacked: {n} outputs bit-identical to ggml");
}

#[test]
fn q4_k_repacked_matmul_is_bit_identical() {
    let mut rng = Rng(0x5EED_0002);
    let mut n = 0;
    for n_in in [256, 512, 1536] {
        for n_out in [8, 16, 576] {
            n += check_shape(Q4K, n_in, n_out, &TOKENS, &mut rng);
        }
    }
    println!("Q4_K repacked: {n} outputs bit-identical to ggml");
}

#[test]
fn iq4_nl_repacked_matmul_is_bit_identical() {
    let mut rng = Rng(0x5EED_0005);
    let mut n = 0;
    for n_in in [32, 64, 256, 576, 1536] {
        for n_out in [8, 16, 576] {
            n += check_shape(IQ4NL, n_in, n_out, &TOKENS, &mut rng);
        }
    }
    println!("IQ4_NL repacked: {n} outputs bit-identical to ggml");
}

#[test]
fn mxfp4_repacked_matmul_is_bit_identical() {
    let mut rng = Rng(0x5EED_0006);
    let mut n = 0;
    for n_in in [32, 64, 256, 576, 1536] {
        for n_out in [8, 16, 576] {
            n += check_shape(MXFP4, n_in, n_out, &TOKENS, &mut rng);
        }
    }
    println!("MXFP4 repacked: {n} outputs bit-identical to ggml");
}

/// A weight with `n_out % 8 != 0` stays in the plain buffer, and the reference takes the plain
/// path. Q4_K stops below eight rows: from eight rows on ggml runs its tiled GEMM for K-quants,
/// which tests/tiled_ggml.rs covers.
#[test]
fn weights_without_a_layout_are_not_repacked() {
    let mut rng = Rng(0x5EED_0003);
    let num = ggml_numerics();
    // IQ4_NL goes to llamafile's tinyBLAS_Q0 from two rows on, MXFP4 to vec_dot.
    for (ty, n_in, ts) in [
        (Q4_0, 256, &TOKENS[..]),
        (Q4K, 512, &TOKENS[..6]),
        (IQ4NL, 256, &TOKENS[..]),
        (MXFP4, 256, &TOKENS[..]),
    ] {
        check_shape(ty, n_in, 12, ts, &mut rng);
        for &t in ts {
            for i in 0..t {
                let k = num.weight_kernel(ty, n_in, 12, t, i);
                assert!(
                    !matches!(k, WeightKernel::RepackGemm | WeightKernel::RepackGemv),
                    "{ty} t={t} row {i}: {k:?}"
                );
            }
        }
    }
    // With repacking switched off the same weights go the plain way too.
    let w = weights(Q4_0, 256, 16, &mut rng);
    let x = activations(256, 1, &mut rng);
    let plain = ggml::mul_mat(Q4_0, &w, 256, 16, &x, 1, 1, false).unwrap();
    assert!(!plain.repacked);
    // And the reference follows: IQ4_NL weights with repacking off take tinyBLAS_Q0 again.
    let off = Numerics::with_cpu(
        Mode::Ggml,
        KvType::F32,
        CpuConfig {
            repack: false,
            ..CpuConfig::default()
        },
    );
    assert_eq!(
        off.weight_kernel(IQ4NL, 256, 16, 5, 0),
        WeightKernel::SgemmQ0
    );
    assert_eq!(
        num.weight_kernel(IQ4NL, 256, 16, 5, 0),
        WeightKernel::RepackGemm
    );
    let w = weights(IQ4NL, 256, 16, &mut rng);
    let x = activations(256, 5, &mut rng);
    let plain = ggml::mul_mat(IQ4NL, &w, 256, 16, &x, 5, 1, false).unwrap();
    assert!(!plain.repacked);
    let ours = reference_mul_mat(&off, IQ4NL, &w, 256, 16, &x, 5);
    assert_eq!(
        first_bit_diff(&plain.out, &ours),
        None,
        "IQ4_NL, repack off"
    );
}

/// The activation rows of the repacked GEMM are quantized four at a time by
/// ggml_quantize_mat_q8_K_4x8, which breaks a `+m`/`-m` tie for the block maximum towards `+m`
/// where from_float takes the first: the block's `d` and quants change sign. The products
/// `d_w*d_a*isum` and `dmin_w*d_a*bsum` do not (negation is exact), so the outputs are the same
/// either way; the reference matches ggml on such rows.
#[test]
fn q8_k_tie_in_a_group_of_four_follows_ggml() {
    let mut rng = Rng(0x5EED_0004);
    let (n_in, n_out) = (512, 16);
    let w = weights(Q4K, n_in, n_out, &mut rng);
    for t in [4, 5, 8] {
        let mut x = activations(n_in, t, &mut rng);
        // A tie, negative first, in the first block of every row.
        for row in x.chunks_exact_mut(n_in) {
            let big = row[..256].iter().fold(0f32, |m, v| m.max(v.abs())) * 1.5;
            row[10] = -big;
            row[77] = big;
        }
        let g = ggml::mul_mat(Q4K, &w, n_in, n_out, &x, t, 1, true).unwrap();
        assert!(g.repacked);
        let num = ggml_numerics();
        let ours = reference_mul_mat(&num, Q4K, &w, n_in, n_out, &x, t);
        assert_eq!(first_bit_diff(&g.out, &ours), None, "t={t}: tie rows");
        // The two quantizations do differ on these rows.
        let mut plain = vec![0u8; Q8K.row_size(n_in).unwrap()];
        let mut mat = plain.clone();
        quant::quantize_activation(Q8K, &x[..n_in], &mut plain).unwrap();
        repack::quantize_mat_row(Q8K, &x[..n_in], &mut mat).unwrap();
        assert_ne!(plain[..4], mat[..4], "t={t}: d of the tie block");
    }
}

// ---- whole runs ----

fn llama_cpp(model: &Path, prompt: &str, kv: KvType, steps: u32, out: &Path) -> ExtractSummary {
    set_verbose(false);
    let opts = ExtractOptions {
        steps,
        kv_type: kv,
        threads: 2,
        repack: true,
        filter: None,
    };
    extract(model, prompt, out, &opts).unwrap()
}

fn ref_opts(kv: KvType, steps: u32, ex: &ExtractSummary) -> ReferenceOptions {
    ReferenceOptions {
        mode: Mode::Ggml,
        steps,
        kv_type: kv,
        cpu: CpuConfig::default(),
        threads: 0,
        filter: None,
        fault: None,
        token_ids: None,
        decode_tokens: Some(ex.generated_tokens.clone()),
    }
}

/// Checkpoints of two dump folders that are not byte-identical, and how many there are.
fn differing_files(a: &Path, b: &Path) -> (usize, Vec<String>) {
    let folder = DumpFolder::open(a).unwrap();
    let differ = folder
        .entries
        .iter()
        .filter(|e| {
            let rel = e.path.strip_prefix(a).unwrap();
            std::fs::read(&e.path).unwrap() != std::fs::read(b.join(rel)).unwrap()
        })
        .map(|e| e.id.to_string())
        .collect();
    (folder.entries.len(), differ)
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog while the small cat sleeps \
                    under the warm kitchen table and the old man reads his morning paper";

/// Prefixes of `TEXT` that llama.cpp tokenizes (with BOS) to each of `counts` tokens.
fn prompts_of(model: &Path, counts: &[usize]) -> Vec<(usize, String)> {
    set_verbose(false);
    let s = Session::open(model, 256, KvType::F32, 1, false).unwrap();
    let mut found: Vec<(usize, String)> = Vec::new();
    let ends: Vec<usize> = (0..=TEXT.len())
        .filter(|&e| TEXT.is_char_boundary(e))
        .collect();
    for &n in counts {
        let p = ends
            .iter()
            .map(|&e| &TEXT[..e])
            .find(|p| s.tokenize(p, true, false).unwrap().len() == n)
            .unwrap_or_else(|| panic!("no prefix of the text takes {n} tokens"));
        found.push((n, p.to_string()));
    }
    found
}

/// llama.cpp and the reference in ggml mode on `model`, prompts of each token count, KV f32
/// and f16: every checkpoint byte-identical.
fn runs_are_bit_identical(model: &Path, dir: &Path, counts: &[usize]) -> usize {
    let mut checkpoints = 0;
    for (n, prompt) in prompts_of(model, counts) {
        for kv in [KvType::F32, KvType::F16] {
            let tag = format!("{n}tok-{}", kv.as_str());
            let ex_dir = dir.join(format!("ex-{tag}"));
            let ref_dir = dir.join(format!("ref-{tag}"));
            let ex = llama_cpp(model, &prompt, kv, 2, &ex_dir);
            assert_eq!(ex.prompt_tokens.len(), n, "{tag}: prompt length");
            let r = reference(model, &prompt, &ref_dir, &ref_opts(kv, 2, &ex)).unwrap();
            assert_eq!(r.prompt_tokens, ex.prompt_tokens, "{tag}: tokenization");
            assert_eq!(r.generated_tokens, ex.generated_tokens, "{tag}: tokens");
            let (total, differ) = differing_files(&ex_dir, &ref_dir);
            assert!(
                differ.is_empty(),
                "{}: {tag}: {} of {total} checkpoints differ, first {:?}",
                model.display(),
                differ.len(),
                &differ[..differ.len().min(5)]
            );
            checkpoints += total;
        }
    }
    checkpoints
}

const COUNTS: [usize; 6] = [1, 3, 4, 5, 8, 17];

#[test]
fn tiny_llama_runs_are_bit_identical_with_repacked_weights() {
    let dir = common::scratch("repack_tiny_llama");
    for quant in [Q4_0, Q4K, Q4_1, IQ4NL, MXFP4] {
        let model = dir.join(format!("tiny-llama-{quant}.gguf"));
        write_preset(Preset::TinyLlama, quant, 1, &model).unwrap();
        let n = runs_are_bit_identical(&model, &dir.join(quant.name()), &COUNTS);
        println!("tiny-llama {quant}: {n} checkpoints bit-identical");
    }
}

/// tiny-gpt2 ties its output to the token embedding: llama.cpp loads that tensor twice, plain
/// for the lookup and repacked for the output matmul.
#[test]
fn tiny_gpt2_runs_are_bit_identical_with_a_repacked_tied_output() {
    let dir = common::scratch("repack_tiny_gpt2");
    for quant in [Q4_0, Q4K, IQ4NL, MXFP4] {
        let model = dir.join(format!("tiny-gpt2-{quant}.gguf"));
        write_preset(Preset::TinyGpt2, quant, 1, &model).unwrap();
        let n = runs_are_bit_identical(&model, &dir.join(quant.name()), &COUNTS);
        println!("tiny-gpt2 {quant}: {n} checkpoints bit-identical");
    }
}

#[test]
fn smollm2_requantized_to_q4_0_is_bit_identical() {
    let dir = common::scratch("repack_smollm2");
    let model = dir.join("SmolLM2-135M-Instruct.Q4_0.gguf");
    // LLAMA_FTYPE_MOSTLY_Q4_0
    quantize_model(
        &common::smollm2(),
        &model,
        FileType::parse("Q4_0").unwrap(),
        2,
    )
    .unwrap();
    let n = runs_are_bit_identical(&model, &dir, &COUNTS);
    println!("SmolLM2 Q4_0: {n} checkpoints bit-identical");
}
