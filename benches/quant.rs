//! Throughput of the row codecs, in GB/s of weight bytes read.
//!
//! `cargo bench --bench quant` (single thread; the matmul parallelises over rows elsewhere).

use std::hint::black_box;
use std::time::{Duration, Instant};

use llorch_diff::quant::{self, GgmlType};

/// A fixed pseudo-random sequence (splitmix64), mapped to roughly normal floats.
fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Sum of four uniforms: close enough to a bell for weights.
            let u = |k: u32| ((z >> (16 * k)) & 0xFFFF) as f32 / 65536.0;
            (u(0) + u(1) + u(2) + u(3) - 2.0) * 0.05
        })
        .collect()
}

/// Best time of `reps` runs of `f`, each run at least ~50 ms of work.
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
    const ROWS: usize = 1024;
    let types = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];
    let x = floats(N, 7);
    println!(
        "{ROWS} rows of {N} elements per type, one thread; GB/s of weight bytes (and Gelem/s)"
    );
    println!(
        "{:<6} {:>9} {:>18} {:>18} {:>18}",
        "type", "MB", "dequantize_row", "dot_exact", "vec_dot"
    );
    for ty in types {
        let row_bytes = ty.row_size(N).expect("whole blocks");
        let mut w = vec![0u8; row_bytes * ROWS];
        let src = floats(N * ROWS, 11);
        for (r, out) in w.chunks_exact_mut(row_bytes).enumerate() {
            quant::quantize_row(ty, &src[r * N..(r + 1) * N], out).expect("quantize");
        }
        let act_ty = quant::vec_dot_type(ty);
        let mut act = vec![0u8; act_ty.row_size(N).expect("whole blocks")];
        quant::quantize_activation(act_ty, &x, &mut act).expect("activation");

        let total = (row_bytes * ROWS) as f64;
        let elems = (N * ROWS) as f64;
        let rate = |d: Duration| {
            let s = d.as_secs_f64();
            format!("{:6.2} ({:5.2})", total / s / 1e9, elems / s / 1e9)
        };

        let mut buf = vec![0f32; N];
        let deq = best_of(5, || {
            for row in w.chunks_exact(row_bytes) {
                quant::dequantize_row(ty, row, &mut buf).unwrap();
                black_box(&buf);
            }
        });
        let exact = best_of(5, || {
            let mut s = 0f32;
            for row in w.chunks_exact(row_bytes) {
                s += quant::dot_exact(ty, row, &x).unwrap();
            }
            black_box(s);
        });
        let vd = best_of(5, || {
            let mut s = 0f32;
            for row in w.chunks_exact(row_bytes) {
                s += quant::vec_dot(ty, row, &act, N).unwrap();
            }
            black_box(s);
        });
        println!(
            "{:<6} {:>9.1} {:>18} {:>18} {:>18}",
            ty.name(),
            total / 1e6,
            rate(deq),
            rate(exact),
            rate(vd)
        );
    }
}
