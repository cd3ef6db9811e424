//! The I-quant, ternary and FP4 codecs against ggml itself (through the shim in
//! `llamacpp::ggml`), bit for bit: `dequantize_row` against `to_float`, `vec_dot` against the
//! CPU backend's `vec_dot` (AVX2 build), on random and edge-case blocks.
//!
//! `cargo test --release --test quant_ggml_iq -- --nocapture` prints how much was checked.

use llorch_diff::llamacpp::ggml;
use llorch_diff::quant::{self, GgmlType, QuantError};

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
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Every type this file covers, in the order of the task's priorities.
const TYPES: [GgmlType; 12] = [
    IQ4NL, IQ4XS, MXFP4, IQ3S, IQ3XXS, IQ2S, IQ2XS, IQ2XXS, IQ1M, IQ1S, TQ2_0, TQ1_0,
];

/// The fp16 scale of a block, per ggml-common.h (IQ1_M spreads its own over four nibbles and
/// MXFP4 has an E8M0 byte: handled apart).
fn scale_offset(ty: GgmlType) -> Option<usize> {
    match ty {
        IQ4NL | IQ4XS | IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ1S => Some(0),
        TQ1_0 => Some(52),
        TQ2_0 => Some(64),
        _ => None,
    }
}

/// Writes the fp16 `v` as the block's super-block scale.
fn set_scale(ty: GgmlType, b: &mut [u8], v: u16) {
    if let Some(o) = scale_offset(ty) {
        b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    } else if ty == IQ1M {
        // The top nibble of each of the four u16 scale words, low nibble first.
        for k in 0..4 {
            let at = 48 + 2 * k;
            let w = u16::from_le_bytes([b[at], b[at + 1]]);
            let w = (w & 0x0FFF) | (((v >> (4 * k)) & 0xF) << 12);
            b[at..at + 2].copy_from_slice(&w.to_le_bytes());
        }
    } else if ty == MXFP4 {
        b[0] = (v & 0xFF) as u8;
    }
}

const SPECIAL_F16: [u16; 16] = [
    0x0000, 0x8000, // zeros
    0x7BFF, 0xFBFF, // largest finite
    0x7C00, 0xFC00, // infinities
    0x7E00, 0xFE00, 0x7D00, 0x7C01, 0xFFFF, // quiet, signalling, odd NaNs
    0x0001, 0x8001, 0x03FF, // subnormals
    0x0400, 0x3C00, // smallest normal, one
];

/// Edge-case blocks: every special scale (every E8M0 byte for MXFP4) with quant bytes all
/// zero, all ones, 0x88, or random.
fn edge_blocks(ty: GgmlType, rng: &mut Rng) -> Vec<Vec<u8>> {
    let scales: Vec<u16> = if ty == MXFP4 {
        (0..=255).collect()
    } else {
        SPECIAL_F16.to_vec()
    };
    let mut out = Vec::new();
    for fill in [Some(0x00u8), Some(0xFF), Some(0x88), None] {
        for &s in &scales {
            let mut b = match fill {
                Some(v) => vec![v; ty.type_size()],
                None => rng.bytes(ty.type_size()),
            };
            set_scale(ty, &mut b, s);
            out.push(b);
        }
    }
    out
}

fn first_bit_diff(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

fn check_dequant(ty: GgmlType, row: &[u8], n: usize) {
    let expected = ggml::dequantize(ty, row, n).expect("ggml dequantize");
    let mut ours = vec![0f32; n];
    quant::dequantize_row(ty, row, &mut ours).expect("dequantize_row");
    if let Some(i) = first_bit_diff(&ours, &expected) {
        panic!(
            "{ty}: element {i} of {n}: ours {:#010x} ({}), ggml {:#010x} ({}); block bytes {:02x?}",
            ours[i].to_bits(),
            ours[i],
            expected[i].to_bits(),
            expected[i],
            &row[i / ty.block_size() * ty.type_size()..][..ty.type_size()]
        );
    }
}

#[test]
fn type_table_matches_ggml() {
    // Ids, block sizes, byte sizes and names of every type the crate knows, against ggml.
    for id in 0..64u32 {
        let Ok(ty) = GgmlType::from_id(id) else {
            continue;
        };
        assert_eq!(ty.id(), id);
        assert_eq!(
            ggml::blck_size(ty),
            Some(ty.block_size()),
            "{ty}: block size"
        );
        assert_eq!(
            ggml::row_size(ty, ty.block_size()),
            Some(ty.type_size()),
            "{ty}: type size"
        );
        assert_eq!(
            ggml::type_name(ty).as_deref(),
            Some(ty.name()),
            "{ty}: name"
        );
        assert_eq!(GgmlType::parse_name(ty.name()), Some(ty));
    }
    for ty in TYPES {
        assert_eq!(
            Some(quant::vec_dot_type(ty)),
            ggml::vec_dot_type(ty),
            "{ty} vec_dot_type"
        );
    }
    // Removed ids are named, unknown ones are not.
    let e = GgmlType::from_id(36).unwrap_err().to_string();
    assert!(e.contains("iq4_nl_4_4"), "{e}");
    let e = GgmlType::from_id(99).unwrap_err().to_string();
    assert_eq!(e, "unknown ggml type id 99");
}

#[test]
fn dequantize_matches_ggml_bit_for_bit() {
    let mut rng = Rng(11);
    for ty in TYPES {
        let mut blocks = 0usize;
        let target = if ty.block_size() == 32 {
            40_000
        } else {
            20_000
        };
        // Random rows of 1..=16 blocks: every bit pattern is a valid block.
        while blocks < target {
            let nb = 1 + rng.below(16);
            let row = rng.bytes(nb * ty.type_size());
            check_dequant(ty, &row, nb * ty.block_size());
            blocks += nb;
        }
        let edges = edge_blocks(ty, &mut rng);
        for b in &edges {
            check_dequant(ty, b, ty.block_size());
        }
        let row: Vec<u8> = edges.concat();
        check_dequant(ty, &row, edges.len() * ty.block_size());
        println!(
            "{ty}: dequantize {blocks} random + {} edge-case blocks bit-exact",
            2 * edges.len()
        );
    }
}

/// Weight rows as a model holds them: ggml's own quantizer (`ggml_quantize_chunk`) on random
/// floats, with an all-ones importance matrix where ggml requires one.
fn weight_row(ty: GgmlType, rng: &mut Rng, n: usize) -> Vec<u8> {
    let scale = 0.02 + rng.uniform();
    let xs: Vec<f32> = (0..n).map(|_| scale * rng.normal()).collect();
    let ones = vec![1f32; n];
    let imatrix = ggml::quantize_requires_imatrix(ty).then_some(ones.as_slice());
    ggml::quantize_chunk(ty, &xs, n, imatrix).expect("ggml quantize_chunk")
}

/// Random weight bytes with a finite scale in every block.
fn raw_weight(ty: GgmlType, rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut b = rng.bytes(ty.row_size(n).unwrap());
    for blk in b.chunks_exact_mut(ty.type_size()) {
        let v = if ty == MXFP4 {
            100 + rng.below(40) as u16
        } else {
            rng.below(0x3C00) as u16
        };
        set_scale(ty, blk, v);
    }
    b
}

/// Random activation bytes with finite scales: quants anywhere in -128..=127 and Q8_K bsums
/// that need not match the quants.
fn raw_activation(act_ty: GgmlType, rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut b = rng.bytes(act_ty.row_size(n).unwrap());
    for blk in b.chunks_exact_mut(act_ty.type_size()) {
        match act_ty {
            Q8_0 => blk[0..2].copy_from_slice(&(rng.below(0x3C00) as u16).to_le_bytes()),
            Q8K => blk[0..4].copy_from_slice(&(rng.uniform() * 0.01).to_le_bytes()),
            other => panic!("no raw activation for {other}"),
        }
    }
    b
}

fn activation_row(ty: GgmlType, rng: &mut Rng, n: usize) -> Vec<u8> {
    let heavy = rng.below(4) == 0;
    let xs: Vec<f32> = (0..n)
        .map(|_| {
            if heavy {
                rng.normal() / rng.uniform()
            } else {
                rng.normal()
            }
        })
        .collect();
    let act_ty = quant::vec_dot_type(ty);
    let mut ours = vec![0u8; act_ty.row_size(n).unwrap()];
    quant::quantize_activation(act_ty, &xs, &mut ours).unwrap();
    let theirs = ggml::quantize_cpu(act_ty, &xs).expect("ggml quantize_cpu");
    assert_eq!(ours, theirs, "{act_ty} activation");
    ours
}

#[test]
fn vec_dot_matches_ggml() {
    let mut rng = Rng(12);
    for ty in TYPES.into_iter().filter(|&t| quant::has_vec_dot(t)) {
        let mut lengths: Vec<usize> = vec![256, 512, 768, 1024, 1536, 2048, 4096];
        if ty.block_size() == 32 {
            lengths.extend([32, 64, 96, 160, 576]);
        }
        let (mut rows, mut blocks) = (0usize, 0usize);
        for &n in &lengths {
            for trial in 0..60 {
                let w = if trial % 3 == 2 {
                    raw_weight(ty, &mut rng, n)
                } else {
                    weight_row(ty, &mut rng, n)
                };
                let a = if trial % 3 == 1 {
                    raw_activation(quant::vec_dot_type(ty), &mut rng, n)
                } else {
                    activation_row(ty, &mut rng, n)
                };
                let expected = ggml::vec_dot(ty, n, &w, &a).expect("ggml vec_dot");
                let ours = quant::vec_dot(ty, &w, &a, n).expect("vec_dot");
                let portable = quant::vec_dot_portable(ty, &w, &a, n).expect("vec_dot_portable");
                assert_eq!(
                    portable.to_bits(),
                    ours.to_bits(),
                    "{ty} n={n}: portable {portable:e}, simd {ours:e}"
                );
                assert_eq!(
                    ours.to_bits(),
                    expected.to_bits(),
                    "{ty} n={n} trial {trial}: ours {ours:e}, ggml {expected:e}"
                );
                rows += 1;
                blocks += n / ty.block_size();
            }
        }
        println!("{ty}: vec_dot {rows} rows ({blocks} blocks) bit-exact");
    }
}

#[test]
fn dot_exact_is_the_f64_dot_of_ggml_dequantized_weights() {
    let mut rng = Rng(13);
    for ty in TYPES {
        let mut worst = 0f64;
        for n in [256usize, 1024] {
            for _ in 0..10 {
                let w = weight_row(ty, &mut rng, n);
                let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                let wf = ggml::dequantize(ty, &w, n).expect("ggml dequantize");
                let reference: f64 = wf.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                let magnitude: f64 = wf
                    .iter()
                    .zip(&x)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                let ours = quant::dot_exact_f64(ty, &w, &x).unwrap();
                let err = (ours - reference).abs() / magnitude.max(f64::MIN_POSITIVE);
                assert!(err <= 1e-13, "{ty} n={n}: {ours} vs {reference}");
                let portable = quant::dot_exact_f64_portable(ty, &w, &x).unwrap();
                assert_eq!(portable.to_bits(), ours.to_bits(), "{ty}: portable path");
                worst = worst.max(err);
            }
        }
        println!("{ty}: dot_exact within {worst:e} of the f64 reference");
    }
}

#[test]
fn unsupported_types_are_refused_by_name() {
    for ty in [NVFP4, Q1_0, Q2_0] {
        let mut out = vec![0f32; ty.block_size()];
        let err = quant::dequantize_row(ty, &vec![0u8; ty.type_size()], &mut out).unwrap_err();
        assert!(
            matches!(err, QuantError::Unsupported { ty: t, .. } if t == ty),
            "{err:?}"
        );
        assert!(err.to_string().starts_with(ty.name()), "{err}");
    }
    for ty in TYPES.into_iter().filter(|&t| !quant::has_vec_dot(t)) {
        let n = ty.block_size();
        let act = vec![0u8; quant::vec_dot_type(ty).row_size(n).unwrap()];
        let err = quant::vec_dot(ty, &vec![0u8; ty.type_size()], &act, n).unwrap_err();
        assert!(err.to_string().starts_with(ty.name()), "{err}");
    }
}

/// One real MUL_MAT through ggml's CPU backend (no repacking, fewer than eight activation
/// rows, so no tiled GEMM) against the crate's row kernels: `vec_dot` for one row, and for
/// IQ4_NL at two or more rows llamafile's tinyBLAS_Q0 (`sgemm_q0_dot`).
#[test]
fn matmul_matches_ggml_backend() {
    let mut rng = Rng(14);
    let (n_in, n_out) = (512usize, 24usize);
    for ty in TYPES.into_iter().filter(|&t| quant::has_vec_dot(t)) {
        let mut outputs = 0usize;
        for t in 1..=7usize {
            let w: Vec<u8> = (0..n_out)
                .flat_map(|_| weight_row(ty, &mut rng, n_in))
                .collect();
            let x: Vec<f32> = (0..t * n_in).map(|_| rng.normal()).collect();
            let mm = ggml::mul_mat(ty, &w, n_in, n_out, &x, t, 1, false).expect("ggml mul_mat");
            assert!(!mm.repacked);
            let act_ty = quant::vec_dot_type(ty);
            let row = ty.row_size(n_in).unwrap();
            for i in 0..t {
                let mut a = vec![0u8; act_ty.row_size(n_in).unwrap()];
                quant::quantize_activation(act_ty, &x[i * n_in..(i + 1) * n_in], &mut a).unwrap();
                for o in 0..n_out {
                    let wr = &w[o * row..(o + 1) * row];
                    let ours = if ty == IQ4NL && t >= 2 {
                        quant::sgemm_q0_dot(ty, wr, &a, n_in).unwrap()
                    } else {
                        quant::vec_dot(ty, wr, &a, n_in).unwrap()
                    };
                    let theirs = mm.out[i * n_out + o];
                    assert_eq!(
                        ours.to_bits(),
                        theirs.to_bits(),
                        "{ty} t={t} row {i} out {o}: ours {ours:e}, ggml {theirs:e}"
                    );
                    outputs += 1;
                }
            }
        }
        println!("{ty}: MUL_MAT {outputs} outputs (t = 1..7, no repack) bit-exact");
    }
}

/// A GGUF holding tensors of the new ids reads back with their names, and the reference's
/// matrix lookup accepts the types it can multiply and refuses the others by name.
#[test]
fn gguf_tensors_of_new_types_are_named_and_judged() {
    use llorch_diff::gguf::reader::GgufFile;
    use llorch_diff::gguf::writer::GgufWriter;
    use llorch_diff::reference::ops;

    let dir = std::env::temp_dir().join(format!("llorch-iq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("types.gguf");
    let all = [TYPES.as_slice(), &[NVFP4, Q1_0, Q2_0]].concat();
    let mut w = GgufWriter::new();
    for ty in &all {
        w.add_tensor(format!("w.{}", ty.name()), &[256, 2], *ty)
            .unwrap();
    }
    w.write(&path, |_, _| Ok(())).unwrap();
    let file = GgufFile::open(&path).unwrap();
    for ty in all {
        let name = format!("w.{}", ty.name());
        assert_eq!(file.tensor(&name).unwrap().info.ggml_type, ty);
        match ops::matrix(&file, &name, 256, 2) {
            Ok(_) => assert!(quant::has_vec_dot(ty), "{ty} accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!quant::has_vec_dot(ty), "{ty} refused: {msg}");
                assert!(
                    msg.contains(&format!(
                        "has type {ty}, which the reference does not support"
                    )),
                    "{msg}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
