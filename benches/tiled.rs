//! Throughput of the tiled GEMM emulation (`quant::tiled::dot_rows`, each weight block unpacked
//! once for all activation rows) beside `quant::vec_dot` on the same rows.
//!
//! `cargo bench --bench tiled` (single thread; the matmul parallelises over rows elsewhere).

use std::hint::black_box;
use std::time::{Duration, Instant};

use llorch_diff::quant::{self, GgmlType};

/// A fixed pseudo-random sequence (splitmix64), mapped to roughly normal floats.
fn floats(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = |k: u32| ((z >> (16 * k)) & 0xFFFF) as f32 / 65536.0;
            (u(0) + u(1) + u(2) + u(3) - 2.0) * scale
        })
        .collect()
}

/// Best time of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn main() {
    const N: usize = 4096;
    const ROWS: usize = 512;
    const T: usize = 16;
    println!("{ROWS} weight rows of {N} elements times {T} activation rows, one thread");
    println!(
        "{:<6} {:>22} {:>22}",
        "type", "tiled ms (Gmac/s)", "vec_dot ms (Gmac/s)"
    );
    let x = floats(N * T, 7, 1.0);
    for ty in [
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ] {
        let row_bytes = ty.row_size(N).expect("whole blocks");
        let src = floats(N * ROWS, 11, 0.05);
        let mut w = vec![0u8; row_bytes * ROWS];
        for (r, out) in w.chunks_exact_mut(row_bytes).enumerate() {
            quant::quantize_row(ty, &src[r * N..(r + 1) * N], out).expect("quantize");
        }
        let act_bytes = GgmlType::Q8K.row_size(N).expect("whole blocks");
        let acts: Vec<Vec<u8>> = x
            .chunks_exact(N)
            .map(|row| {
                let mut a = vec![0u8; act_bytes];
                quant::quantize_activation(GgmlType::Q8K, row, &mut a).expect("activation");
                a
            })
            .collect();
        let mut out = vec![0f32; T];
        let tiled = best_of(5, || {
            for row in w.chunks_exact(row_bytes) {
                quant::tiled::dot_rows(ty, row, &acts, N, &mut out).unwrap();
                black_box(&out);
            }
        });
        let vd = best_of(5, || {
            let mut s = 0f32;
            for row in w.chunks_exact(row_bytes) {
                for a in &acts {
                    s += quant::vec_dot(ty, row, a, N).unwrap();
                }
            }
            black_box(s);
        });
        let macs = (N * ROWS * T) as f64;
        let rate = |d: Duration| {
            format!(
                "{:8.2} ({:6.2})",
                d.as_secs_f64() * 1e3,
                macs / d.as_secs_f64() / 1e9
            )
        };
        println!("{:<6} {:>22} {:>22}", ty.name(), rate(tiled), rate(vd));
    }
}
