//! The reference's weight matmuls for K-quant and I-quant weights against one real MUL_MAT of
//! ggml's CPU backend, bit for bit: vec_dot below eight activation rows, the tiled GEMM from
//! eight on (ggml-cpu/tiled), weights not repacked.
//!
//! `cargo test --release --test tiled_ggml -- --nocapture` prints how much was checked.

use llorch_diff::checkpoint::KvType;
use llorch_diff::cpu_config::CpuConfig;
use llorch_diff::llamacpp::ggml;
use llorch_diff::quant::{self, GgmlType};
use llorch_diff::reference::numerics::WeightKernel;
use llorch_diff::reference::{Mode, Numerics};

use GgmlType::*;

const K_QUANTS: [GgmlType; 5] = [Q2K, Q3K, Q4K, Q5K, Q6K];

/// The I-quants ggml's tiled GEMM takes (`ggml_tiled_supported`).
const I_QUANTS: [GgmlType; 8] = [IQ4XS, IQ2XXS, IQ2XS, IQ2S, IQ3XXS, IQ3S, IQ1S, IQ1M];

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
}

/// Byte offsets of the fp16 scale fields in one block, per ggml-common.h.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        Q4K | Q5K => &[0, 2],
        Q2K => &[80, 82],
        Q3K => &[108],
        Q6K => &[208],
        IQ4XS | IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ1S => &[0],
        _ => &[],
    }
}

/// `n_out` weight rows as ggml writes them: normal values with a per-row magnitude and a few
/// outliers, through ggml's own reference quantizer.
fn realistic_weights(rng: &mut Rng, ty: GgmlType, n_in: usize, n_out: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n_out {
        let scale = 0.02 * (1.0 + 4.0 * rng.uniform());
        let row: Vec<f32> = (0..n_in)
            .map(|_| {
                let v = rng.normal() * scale;
                if rng.uniform() < 0.01 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect();
        if I_QUANTS.contains(&ty) {
            // As make-model writes them: ggml_quantize_chunk, with an all-ones importance
            // matrix where ggml requires one.
            let ones = vec![1f32; n_in];
            let imatrix = ggml::quantize_requires_imatrix(ty).then_some(ones.as_slice());
            out.extend(ggml::quantize_chunk(ty, &row, n_in, imatrix).expect("ggml quantizes"));
        } else {
            out.extend(ggml::quantize_ref(ty, &row).expect("ggml quantizes K-quant rows"));
        }
    }
    out
}

/// Raw random bytes with finite, moderate fp16 scales: every code, scale and min pattern.
fn random_weights(rng: &mut Rng, ty: GgmlType, n_in: usize, n_out: usize) -> Vec<u8> {
    let mut w = rng.bytes(ty.row_size(n_in).unwrap() * n_out);
    for block in w.chunks_exact_mut(ty.type_size()) {
        for &at in scale_offsets(ty) {
            // sign, exponent 2^-14..2^-7, random mantissa
            let bits = (rng.next_u64() as u16 & 0x83FF) | ((1 + rng.next_u64() as u16 % 8) << 10);
            block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
        if ty == IQ1M {
            // The fp16 scale is the top nibbles of the four u16 at 48..56, lowest first.
            let bits = (rng.next_u64() as u16 & 0x83FF) | ((1 + rng.next_u64() as u16 % 8) << 10);
            for k in 0..4 {
                let at = 48 + 2 * k + 1;
                block[at] = (block[at] & 0x0F) | ((((bits >> (4 * k)) & 0xF) as u8) << 4);
            }
        }
    }
    w
}

fn activations(rng: &mut Rng, n_in: usize, t: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n_in * t);
    for _ in 0..t {
        let scale = 0.5 + 2.0 * rng.uniform();
        x.extend((0..n_in).map(|_| rng.normal() * scale));
    }
    x
}

/// The reference's `[t, n_out]` product, computed as ops::matmul does: each activation row
/// prepared for the kernel ggml runs, then every weight row dotted with all of them.
fn reference(
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
    let mut out = vec![0f32; t];
    for o in 0..n_out {
        num.dot_row(
            ty,
            &w[o * row_bytes..(o + 1) * row_bytes],
            &acts,
            n_in,
            &mut out,
        )
        .unwrap();
        for i in 0..t {
            y[i * n_out + o] = out[i];
        }
    }
    y
}

fn first_bit_diff(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

/// The reference's configuration: ggml's reading of this process's environment, no repacking.
fn numerics() -> Numerics {
    Numerics::with_cpu(Mode::Ggml, KvType::F32, CpuConfig::from_env(false))
}

#[allow(clippy::too_many_arguments)]
fn check_case(
    num: &Numerics,
    ty: GgmlType,
    w: &[u8],
    n_in: usize,
    n_out: usize,
    x: &[f32],
    t: usize,
    threads: usize,
    what: &str,
) {
    let ours = reference(num, ty, w, n_in, n_out, x, t);
    let theirs =
        ggml::mul_mat(ty, w, n_in, n_out, x, t, threads, false).expect("ggml computes the matmul");
    assert!(!theirs.repacked, "{ty}: repacked although repack is off");
    if let Some(k) = first_bit_diff(&ours, &theirs.out) {
        panic!(
            "{ty} {what} n_in={n_in} n_out={n_out} t={t} threads={threads}: element {k} \
             (row {}, output {}): reference {:e} ({:#010x}), ggml {:e} ({:#010x}), kernel {:?}",
            k / n_out,
            k % n_out,
            ours[k],
            ours[k].to_bits(),
            theirs.out[k],
            theirs.out[k].to_bits(),
            num.weight_kernel(ty, n_in, n_out, t, 0)
        );
    }
}

/// Every K-quant type, several row lengths and output counts, activation row counts on both
/// sides of ggml's threshold of eight: identical bits.
#[test]
fn k_quant_matmuls_match_ggml_bit_for_bit() {
    let num = numerics();
    let cpu = num.cpu();
    let mut rng = Rng(0x711E_D000);
    let mut cases = 0;
    let mut tiled_cases = 0;
    for ty in K_QUANTS {
        for n_in in [256, 512, 1536] {
            for n_out in [24, 37] {
                let w = realistic_weights(&mut rng, ty, n_in, n_out);
                for t in [1, 7, 8, 9, 16, 33] {
                    let kernel = num.weight_kernel(ty, n_in, n_out, t, 0);
                    let tiled = cpu.tiled_mm && (t >= 8 || cpu.tiled_mm_force);
                    let expected = if tiled {
                        WeightKernel::Tiled
                    } else {
                        WeightKernel::VecDot
                    };
                    assert_eq!(kernel, expected, "{ty} t={t}");
                    tiled_cases += usize::from(tiled);
                    let x = activations(&mut rng, n_in, t);
                    let threads = 1 + (t + n_out) % 2;
                    check_case(&num, ty, &w, n_in, n_out, &x, t, threads, "realistic");
                    cases += 1;
                }
            }
        }
    }
    println!("{cases} matmuls ({tiled_cases} through the tiled GEMM) identical to ggml");
}

/// Every I-quant the tiled GEMM takes, weights from ggml's own quantizer, activation row counts
/// on both sides of eight, one and two threads: identical bits.
#[test]
fn i_quant_matmuls_match_ggml_bit_for_bit() {
    let num = numerics();
    let cpu = num.cpu();
    let mut rng = Rng(0x1A0A_7000);
    let mut cases = 0;
    let mut tiled_cases = 0;
    for ty in I_QUANTS {
        for (n_in, n_out) in [(256, 24), (512, 37), (1536, 19)] {
            let w = realistic_weights(&mut rng, ty, n_in, n_out);
            for t in [1, 7, 8, 9, 16, 33] {
                let kernel = num.weight_kernel(ty, n_in, n_out, t, 0);
                let tiled = cpu.tiled_mm && (t >= 8 || cpu.tiled_mm_force);
                if tiled {
                    assert_eq!(kernel, WeightKernel::Tiled, "{ty} t={t}");
                } else {
                    assert_ne!(kernel, WeightKernel::Tiled, "{ty} t={t}");
                }
                let x = activations(&mut rng, n_in, t);
                for threads in [1, 2] {
                    check_case(&num, ty, &w, n_in, n_out, &x, t, threads, "quantized");
                    cases += 1;
                    tiled_cases += usize::from(tiled);
                }
            }
        }
    }
    println!("{cases} matmuls ({tiled_cases} through the tiled GEMM) identical to ggml");
}

/// Raw random weight bytes (any codes, scales and mins; finite fp16 fields), tiled sizes.
#[test]
fn random_byte_weights_match_ggml_bit_for_bit() {
    let num = numerics();
    let mut rng = Rng(0xB17E_5000);
    for ty in K_QUANTS.into_iter().chain(I_QUANTS) {
        for (n_in, n_out, t) in [(256, 16, 8), (768, 37, 17), (1024, 40, 40)] {
            let w = random_weights(&mut rng, ty, n_in, n_out);
            let x = activations(&mut rng, n_in, t);
            check_case(&num, ty, &w, n_in, n_out, &x, t, 2, "random bytes");
        }
    }
}

/// The tiled GEMM sums in another order than vec_dot: at eight rows and more, ggml's results
/// are not vec_dot's for some element of every type (so the comparison above can tell the two
/// kernels apart), and the portable copy of the tiled dot agrees with ggml too.
#[test]
fn tiled_differs_from_vec_dot_and_portable_copy_matches() {
    let num = numerics();
    if !num.cpu().tiled_mm {
        eprintln!("GGML_CPU_TILED_MM=0 in the environment: nothing to check");
        return;
    }
    let mut rng = Rng(0xD1FF_0000);
    let (n_in, n_out, t) = (1536, 37, 16);
    for ty in K_QUANTS.into_iter().chain(I_QUANTS) {
        let w = realistic_weights(&mut rng, ty, n_in, n_out);
        let x = activations(&mut rng, n_in, t);
        let theirs = ggml::mul_mat(ty, &w, n_in, n_out, &x, t, 1, false).unwrap();
        let row_bytes = ty.row_size(n_in).unwrap();
        let mut differ = 0;
        for i in 0..t {
            let mut a = vec![0u8; GgmlType::Q8K.row_size(n_in).unwrap()];
            quant::quantize_activation(GgmlType::Q8K, &x[i * n_in..(i + 1) * n_in], &mut a)
                .unwrap();
            for o in 0..n_out {
                let wr = &w[o * row_bytes..(o + 1) * row_bytes];
                let g = theirs.out[i * n_out + o];
                let portable = quant::tiled::dot_portable(ty, wr, &a, n_in).unwrap();
                assert_eq!(portable.to_bits(), g.to_bits(), "{ty} row {i} output {o}");
                let single = quant::tiled::dot(ty, wr, &a, n_in).unwrap();
                assert_eq!(single.to_bits(), g.to_bits(), "{ty} row {i} output {o}");
                let v = quant::vec_dot(ty, wr, &a, n_in).unwrap();
                differ += usize::from(v.to_bits() != g.to_bits());
            }
        }
        println!(
            "{ty}: {differ} of {} outputs differ from vec_dot",
            t * n_out
        );
        assert!(differ > 0, "{ty}: ggml's tiled results all equal vec_dot's");
    }
}

#[test]
fn rejects_bad_input() {
    let w = vec![0u8; Q4K.row_size(256).unwrap()];
    let a = vec![0u8; Q8K.row_size(256).unwrap()];
    assert!(quant::tiled::dot(Q4K, &w, &a, 256).is_ok());
    assert!(quant::tiled::dot(Q4K, &w[1..], &a, 256).is_err());
    assert!(quant::tiled::dot(Q4K, &w, &a[1..], 256).is_err());
    assert!(quant::tiled::dot(Q4K, &w, &a, 255).is_err());
    assert!(quant::tiled::dot(Q8_0, &w, &a, 256).is_err());
    assert!(quant::tiled::dot(IQ4NL, &w, &a, 256).is_err());
    assert!(quant::tiled::dot(TQ2_0, &w, &a, 256).is_err());
    let mut out = [0f32; 2];
    assert!(quant::tiled::dot_rows(Q4K, &w, &[&a[..]], 256, &mut out).is_err());
}
