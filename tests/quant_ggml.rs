//! The Rust block codecs against ggml itself (through the shim in `llamacpp::ggml`), bit for bit.
//!
//! `cargo test --release --test quant_ggml -- --nocapture` prints how much was checked.

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

/// First index where two float slices differ as bit patterns (so NaN == NaN of the same bits).
fn first_bit_diff(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

fn first_byte_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Byte offsets of the fp16 scale fields in one block, per ggml-common.h.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q4K | Q5K => &[0, 2],
        Q2K => &[80, 82],
        Q3K => &[108],
        Q6K => &[208],
        _ => &[],
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

/// Edge-case blocks: every special scale in every scale field, with quants all zero, all ones,
/// or random.
fn edge_blocks(ty: GgmlType, rng: &mut Rng) -> Vec<Vec<u8>> {
    let size = ty.type_size();
    let mut out = Vec::new();
    for fill in [Some(0x00u8), Some(0xFF), Some(0x88), None] {
        for &s1 in &SPECIAL_F16 {
            for &s2 in &SPECIAL_F16[..if scale_offsets(ty).len() > 1 {
                SPECIAL_F16.len()
            } else {
                1
            }] {
                let mut b = match fill {
                    Some(v) => vec![v; size],
                    None => rng.bytes(size),
                };
                let offs = scale_offsets(ty);
                b[offs[0]..offs[0] + 2].copy_from_slice(&s1.to_le_bytes());
                if offs.len() > 1 {
                    b[offs[1]..offs[1] + 2].copy_from_slice(&s2.to_le_bytes());
                }
                out.push(b);
            }
        }
    }
    out
}

const BLOCK_TYPES: [GgmlType; 10] = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K];

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
fn dequantize_matches_ggml_bit_for_bit() {
    let mut rng = Rng(1);
    for ty in BLOCK_TYPES {
        let mut blocks = 0usize;
        // Random rows of 1..=16 blocks: every bit pattern is a valid block.
        let target = if ty.block_size() == 32 {
            40_000
        } else {
            20_000
        };
        while blocks < target {
            let nb = 1 + rng.below(16);
            let row = rng.bytes(nb * ty.type_size());
            check_dequant(ty, &row, nb * ty.block_size());
            blocks += nb;
        }
        let edges = edge_blocks(ty, &mut rng);
        let n_edges = edges.len();
        for b in &edges {
            check_dequant(ty, b, ty.block_size());
        }
        // The same edge blocks again as one long row.
        let row: Vec<u8> = edges.concat();
        check_dequant(ty, &row, n_edges * ty.block_size());
        println!(
            "{ty}: dequantize {} random + {} edge-case blocks bit-exact",
            blocks,
            2 * n_edges
        );
    }
    // F16 and BF16: every bit pattern, in one row.
    for ty in [F16, BF16] {
        let row: Vec<u8> = (0..=u16::MAX).flat_map(|v| v.to_le_bytes()).collect();
        check_dequant(ty, &row, 65536);
        println!("{ty}: dequantize all 65536 values bit-exact");
    }
    // ggml has no to_float for F32: it is a plain copy.
    let xs: Vec<f32> = (0..1000)
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .collect();
    let bytes: Vec<u8> = xs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut back = vec![0f32; xs.len()];
    quant::dequantize_row(F32, &bytes, &mut back).unwrap();
    assert_eq!(first_bit_diff(&back, &xs), None);
}

/// Test rows: (label, values). Lengths are multiples of 256.
fn float_rows(rng: &mut Rng, n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut rows = Vec::new();
    let mut gen = |label: &'static str, f: &mut dyn FnMut(&mut Rng, usize) -> f32| {
        let v: Vec<f32> = (0..n).map(|i| f(rng, i)).collect();
        rows.push((label, v));
    };
    gen("normal", &mut |r, _| r.normal());
    gen("normal*0.02", &mut |r, _| 0.02 * r.normal());
    gen("uniform", &mut |r, _| 2.0 * r.uniform() - 1.0);
    gen("positive uniform", &mut |r, _| 3.0 + r.uniform());
    gen("heavy-tailed", &mut |r, _| {
        r.normal() / (r.uniform() * r.uniform())
    });
    gen("outliers", &mut |r, i| {
        if i % 97 == 5 {
            300.0 * r.normal()
        } else {
            r.normal()
        }
    });
    gen("all zero", &mut |_, _| 0.0);
    gen("signed zeros", &mut |r, _| {
        if r.next_u64() & 1 == 0 {
            0.0
        } else {
            -0.0
        }
    });
    gen("constant", &mut |_, _| 0.75);
    gen("negative constant", &mut |_, _| -3.25);
    gen("tiny", &mut |r, _| 1e-30 * r.normal());
    gen("subnormal", &mut |r, _| 1e-41 * r.normal());
    gen("below f16", &mut |r, _| 1e-6 * r.normal());
    gen("huge", &mut |r, _| 1e30 * r.normal());
    gen("near f16 max", &mut |r, _| 65000.0 * r.normal());
    gen("near f32 max", &mut |r, _| 3e38 * (2.0 * r.uniform() - 1.0));
    gen("integers", &mut |r, _| (r.below(17) as f32) - 8.0);
    gen("sparse", &mut |r, _| {
        if r.below(10) == 0 {
            r.normal()
        } else {
            0.0
        }
    });
    gen("with inf", &mut |r, i| {
        if i % 77 == 3 {
            f32::INFINITY
        } else {
            r.normal()
        }
    });
    gen("with nan", &mut |r, i| {
        if i % 61 == 7 {
            f32::NAN
        } else {
            r.normal()
        }
    });
    // Any float, but NaNs canonical: which NaN payload survives `x + dm` depends on the operand
    // order the compiler picked, in ggml as in Rust.
    gen("random bits", &mut |r, _| {
        let v = f32::from_bits(r.next_u64() as u32);
        if v.is_nan() {
            f32::NAN
        } else {
            v
        }
    });
    rows
}

/// Row lengths, each with how many sets of [`float_rows`] to draw.
fn row_lengths() -> [(usize, usize); 3] {
    [(256, 8), (1024, 8), (4096, 48)]
}

#[test]
fn quantize_row_matches_ggml_ref_bit_for_bit() {
    let mut rng = Rng(2);
    let types = [
        F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2K, Q3K, Q4K, Q5K, Q6K,
    ];
    let mut counts = vec![0usize; types.len()];
    let mut rows_checked = 0;
    for (n, sets) in row_lengths() {
        for (label, xs) in (0..sets).flat_map(|_| float_rows(&mut rng, n)) {
            rows_checked += 1;
            for (ti, &ty) in types.iter().enumerate() {
                let expected = ggml::quantize_ref(ty, &xs).expect("ggml quantize_ref");
                let mut ours = vec![0u8; expected.len()];
                quant::quantize_row(ty, &xs, &mut ours).expect("quantize_row");
                if let Some(i) = first_byte_diff(&ours, &expected) {
                    let b = i / ty.type_size();
                    let (lo, hi) = (b * ty.type_size(), (b + 1) * ty.type_size());
                    panic!(
                        "{ty}, {label} row of {n}: byte {i} (block {b}) differs\n ours {:02x?}\n ggml {:02x?}\n x {:?}",
                        &ours[lo..hi],
                        &expected[lo..hi],
                        &xs[b * ty.block_size()..(b + 1) * ty.block_size()]
                    );
                }
                counts[ti] += n / ty.block_size();
            }
        }
    }
    for (ty, c) in types.iter().zip(counts) {
        let unit = if ty.block_size() == 1 {
            "values"
        } else {
            "blocks"
        };
        println!("{ty}: quantize_row {c} {unit} bit-exact ({rows_checked} rows)");
    }
}

#[test]
fn quantize_activation_matches_ggml_cpu_bit_for_bit() {
    let mut rng = Rng(3);
    let types = [
        F32, F16, BF16, Q8_0, Q8_1, Q8K, Q4_0, Q4_1, Q5_0, Q5_1, Q4K, Q6K,
    ];
    let mut counts = vec![0usize; types.len()];
    for (n, sets) in row_lengths() {
        for (label, xs) in (0..sets).flat_map(|_| float_rows(&mut rng, n)) {
            for (ti, &ty) in types.iter().enumerate() {
                let expected = ggml::quantize_cpu(ty, &xs).expect("ggml quantize_cpu");
                let mut ours = vec![0u8; expected.len()];
                quant::quantize_activation(ty, &xs, &mut ours).expect("quantize_activation");
                if let Some(i) = first_byte_diff(&ours, &expected) {
                    let b = i / ty.type_size();
                    let (lo, hi) = (b * ty.type_size(), (b + 1) * ty.type_size());
                    panic!(
                        "{ty}, {label} row of {n}: byte {i} differs\n ours {:02x?}\n ggml {:02x?}",
                        &ours[lo..hi],
                        &expected[lo..hi]
                    );
                }
                counts[ti] += n / ty.block_size();
            }
        }
    }
    // F16 converts whole groups of four with F16C and the tail in software: odd lengths too.
    for n in [1usize, 3, 5, 7, 9, 257, 1001] {
        for (label, xs) in float_rows(&mut rng, 1024) {
            let xs = &xs[..n];
            let expected = ggml::quantize_cpu(F16, xs).unwrap();
            let mut ours = vec![0u8; expected.len()];
            quant::quantize_activation(F16, xs, &mut ours).unwrap();
            assert_eq!(
                first_byte_diff(&ours, &expected),
                None,
                "f16 {label} length {}",
                xs.len()
            );
            counts[1] += xs.len();
        }
    }
    for (ty, c) in types.iter().zip(counts) {
        let unit = if ty.block_size() == 1 {
            "values"
        } else {
            "blocks"
        };
        println!("{ty}: quantize_activation {c} {unit} bit-exact");
    }
}

/// Weight rows as a model holds them: ggml's reference quantization of random floats.
fn weight_row(ty: GgmlType, rng: &mut Rng, n: usize) -> Vec<u8> {
    let scale = 0.02 + rng.uniform();
    let xs: Vec<f32> = (0..n).map(|_| scale * rng.normal()).collect();
    match ty {
        F32 => xs.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => ggml::quantize_ref(ty, &xs).expect("ggml quantize_ref"),
    }
}

fn activation_row(ty: GgmlType, rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<u8>) {
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
    let q = ggml::quantize_cpu(quant::vec_dot_type(ty), &xs).expect("ggml quantize_cpu");
    (xs, q)
}

/// Random activation bytes with finite scales: quants anywhere in -128..=127 (which the
/// quantizers never produce, but the sign trick of the AVX2 kernels treats specially), and
/// Q8_K bsums that need not match the quants (ggml trusts them).
fn raw_activation(act_ty: GgmlType, rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut b = rng.bytes(act_ty.row_size(n).unwrap());
    for blk in b.chunks_exact_mut(act_ty.type_size()) {
        match act_ty {
            Q8_0 => blk[0..2].copy_from_slice(&(rng.below(0x3C00) as u16).to_le_bytes()),
            Q8_1 => {
                blk[0..2].copy_from_slice(&(rng.below(0x3C00) as u16).to_le_bytes());
                blk[2..4].copy_from_slice(&(rng.below(0x7800) as u16).to_le_bytes());
            }
            Q8K => blk[0..4].copy_from_slice(&(rng.uniform() * 0.01).to_le_bytes()),
            other => panic!("no raw activation for {other}"),
        }
    }
    b
}

#[test]
fn vec_dot_matches_ggml() {
    let mut rng = Rng(4);
    let types = [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K,
    ];
    for ty in types {
        assert_eq!(
            Some(quant::vec_dot_type(ty)),
            ggml::vec_dot_type(ty),
            "{ty} vec_dot_type"
        );
        let mut lengths: Vec<usize> = vec![256, 512, 768, 1024, 1536, 2048, 4096];
        if ty.block_size() == 1 {
            lengths.extend([1, 31, 33, 300, 1000, 4095]);
        } else if ty.block_size() == 32 {
            lengths.extend([32, 96, 576]);
        }
        let (mut rows, mut exact, mut max_rel) = (0usize, 0usize, 0f64);
        for &n in &lengths {
            for trial in 0..60 {
                // Two thirds realistic rows, one third raw random bytes (any scale, any quant).
                let w = if trial % 3 == 2 && ty.block_size() > 1 {
                    let mut b = rng.bytes(ty.row_size(n).unwrap());
                    // Keep the scales finite so the sum is a number worth comparing.
                    for blk in b.chunks_exact_mut(ty.type_size()) {
                        for &o in scale_offsets(ty) {
                            let v = rng.below(0x3C00) as u16;
                            blk[o..o + 2].copy_from_slice(&v.to_le_bytes());
                        }
                    }
                    b
                } else {
                    weight_row(ty, &mut rng, n)
                };
                let a = if trial % 3 == 1 && ty.block_size() > 1 {
                    raw_activation(quant::vec_dot_type(ty), &mut rng, n)
                } else {
                    activation_row(ty, &mut rng, n).1
                };
                let expected = ggml::vec_dot(ty, n, &w, &a).expect("ggml vec_dot");
                let ours = quant::vec_dot(ty, &w, &a, n).expect("vec_dot");
                // The portable integer code (used on CPUs without AVX2) must agree too.
                let portable = quant::vec_dot_portable(ty, &w, &a, n).expect("vec_dot_portable");
                assert_eq!(
                    portable.to_bits(),
                    ours.to_bits(),
                    "{ty} n={n}: portable {portable:e}, simd {ours:e}"
                );
                rows += 1;
                if ours.to_bits() == expected.to_bits() {
                    exact += 1;
                } else {
                    let rel = ((ours - expected) as f64).abs() / (expected as f64).abs().max(1e-30);
                    max_rel = max_rel.max(rel);
                    println!("{ty} n={n}: ours {ours:e} ggml {expected:e}");
                }
            }
        }
        println!("{ty}: vec_dot {exact}/{rows} rows bit-exact, max relative error {max_rel:e}");
        assert_eq!(
            exact, rows,
            "{ty}: vec_dot differs from ggml (max relative error {max_rel:e})"
        );
    }
}

#[test]
fn dot_exact_is_the_f64_dot_of_ggml_dequantized_weights() {
    let mut rng = Rng(5);
    let types = [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K,
    ];
    for ty in types {
        let mut worst = 0f64;
        let mut rows = 0;
        let mut lengths = vec![256usize, 1024, 4096];
        if ty.block_size() == 1 {
            lengths.extend([1, 17, 300, 1001]);
        }
        for n in lengths {
            for _ in 0..20 {
                let w = weight_row(ty, &mut rng, n);
                let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                let wf = match ty {
                    F32 => w
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    _ => ggml::dequantize(ty, &w, n).expect("ggml dequantize"),
                };
                // Sequential f64 sum of exact products, and the size of the terms for the bound.
                let reference: f64 = wf.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                let magnitude: f64 = wf
                    .iter()
                    .zip(&x)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                let ours = quant::dot_exact_f64(ty, &w, &x).unwrap();
                let err = (ours - reference).abs() / magnitude.max(f64::MIN_POSITIVE);
                assert!(
                    err <= 1e-13,
                    "{ty} n={n}: {ours} vs {reference} (relative to magnitude {err:e})"
                );
                assert_eq!(quant::dot_exact(ty, &w, &x).unwrap(), ours as f32);
                // The portable accumulator (used on CPUs without AVX2/FMA) gives the same bits.
                let portable = quant::dot_exact_f64_portable(ty, &w, &x).unwrap();
                assert_eq!(
                    portable.to_bits(),
                    ours.to_bits(),
                    "{ty} n={n}: portable path differs"
                );
                worst = worst.max(err);
                rows += 1;
            }
        }
        println!("{ty}: dot_exact {rows} rows within {worst:e} of the f64 reference (relative to sum |w*x|)");
    }
}

#[test]
fn bad_input_is_a_typed_error_naming_the_type() {
    let mut out = vec![0f32; 32];
    let err = quant::dequantize_row(Q4_0, &[0u8; 17], &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            QuantError::ByteLength {
                ty: Q4_0,
                expected: 18,
                got: 17,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("q4_0:"), "{err}");

    let mut out = vec![0f32; 100];
    let err = quant::dequantize_row(Q4K, &[0u8; 144], &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            QuantError::PartialBlock {
                ty: Q4K,
                n: 100,
                block: 256
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("q4_K"), "{err}");

    let err = quant::dequantize_row(I32, &[0u8; 4], &mut [0f32; 1]).unwrap_err();
    assert!(
        matches!(err, QuantError::Unsupported { ty: I32, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("i32"), "{err}");

    let err = quant::quantize_row(Q8_0, &[0f32; 32], &mut [0u8; 33]).unwrap_err();
    assert!(err.to_string().contains("q8_0"), "{err}");

    let err = quant::vec_dot(Q4_1, &[0u8; 20], &[0u8; 34], 32).unwrap_err();
    assert!(
        matches!(
            err,
            QuantError::ByteLength {
                ty: Q4_1,
                what: "activation row",
                expected: 36,
                ..
            }
        ),
        "{err:?}"
    );

    let err = quant::vec_dot(Q8K, &[0u8; 292], &[0u8; 1024], 256).unwrap_err();
    assert!(
        matches!(err, QuantError::Unsupported { ty: Q8K, .. }),
        "{err:?}"
    );

    let err = quant::dot_exact(Q6K, &[0u8; 210], &[0f32; 255]).unwrap_err();
    assert!(err.to_string().contains("q6_K"), "{err}");
}
