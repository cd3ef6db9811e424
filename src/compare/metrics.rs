//! Error metrics of one checkpoint pair: `a` is the expected tensor (normally llama.cpp's),
//! `b` the candidate. Everything is accumulated in f64 so that the metric itself adds no error
//! comparable to the f32 differences it measures.

use serde::Serialize;

/// The denominator of the relative error is `max(|a|, floor)` with
/// `floor = max(REL_FLOOR_FRACTION * rms(a), REL_FLOOR_ABS)`: elements of `a` that are tiny
/// next to the tensor's typical size (exact zeros after a ReLU-like op, near-cancellations)
/// would otherwise turn an f32 rounding difference into an enormous "relative" error.
pub const REL_FLOOR_FRACTION: f64 = 1e-6;
/// Keeps the floor positive when `a` is all zeros.
pub const REL_FLOOR_ABS: f64 = 1e-30;

/// How many non-finite values each side holds; any of them fails the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NonFinite {
    pub expected_nan: usize,
    pub expected_inf: usize,
    pub candidate_nan: usize,
    pub candidate_inf: usize,
    /// Multi-index of the first element where either side is non-finite.
    pub first_index: Vec<usize>,
}

impl NonFinite {
    pub fn describe(&self) -> String {
        let side = |nan: usize, inf: usize| match (nan, inf) {
            (0, 0) => "none".to_string(),
            (n, 0) => format!("{n} NaN"),
            (0, i) => format!("{i} inf"),
            (n, i) => format!("{n} NaN, {i} inf"),
        };
        format!(
            "non-finite values: expected {}, candidate {} (first at {:?})",
            side(self.expected_nan, self.expected_inf),
            side(self.candidate_nan, self.candidate_inf),
            self.first_index
        )
    }
}

/// Element-wise error metrics. When either side holds non-finite values they are computed over
/// the positions where both sides are finite, and [`Metrics::non_finite`] says so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub elements: usize,
    pub max_abs: f64,
    pub mean_abs: f64,
    /// `max |a-b| / max(|a|, floor)`; see [`REL_FLOOR_FRACTION`].
    pub max_rel: f64,
    pub rmse: f64,
    /// `mean((a-b)^2) / var(a)`; falls back to `/ mean(a^2)` when `a` is constant and to the raw
    /// MSE when `a` is all zeros.
    pub nmse: f64,
    /// 1 when both sides are all zeros, 0 when exactly one is.
    pub cosine: f64,
    /// Multi-index (outermost first) of the element with the largest absolute error.
    pub worst_index: Vec<usize>,
    pub worst_expected: f32,
    pub worst_candidate: f32,
    pub non_finite: Option<NonFinite>,
}

/// Converts a flat C-order index into a multi-index of `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Computes the element-wise metrics. `a` and `b` must have the same length (checked by the
/// caller against the shapes); `shape` is used only to report the worst element's position.
pub fn compute(a: &[f32], b: &[f32], shape: &[usize]) -> Metrics {
    debug_assert_eq!(a.len(), b.len());
    let n_all = a.len().min(b.len());
    let (a, b) = (&a[..n_all], &b[..n_all]);

    // Pass 1: non-finite census, mean and energy of a.
    let mut nf = NonFinite {
        expected_nan: 0,
        expected_inf: 0,
        candidate_nan: 0,
        candidate_inf: 0,
        first_index: vec![],
    };
    let mut first_bad: Option<usize> = None;
    let mut n = 0usize;
    let mut sum_a = 0f64;
    let mut sum_a2 = 0f64;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if x.is_finite() && y.is_finite() {
            let x = x as f64;
            n += 1;
            sum_a += x;
            sum_a2 += x * x;
            continue;
        }
        first_bad.get_or_insert(i);
        if x.is_nan() {
            nf.expected_nan += 1;
        } else if x.is_infinite() {
            nf.expected_inf += 1;
        }
        if y.is_nan() {
            nf.candidate_nan += 1;
        } else if y.is_infinite() {
            nf.candidate_inf += 1;
        }
    }
    let non_finite = first_bad.map(|i| {
        nf.first_index = unravel(i, shape);
        nf
    });

    let nf64 = n.max(1) as f64;
    let mean_a = sum_a / nf64;
    let rms_a = (sum_a2 / nf64).sqrt();
    let floor = (REL_FLOOR_FRACTION * rms_a).max(REL_FLOOR_ABS);

    // Pass 2: everything that depends on the mean or the floor.
    let mut var_acc = 0f64;
    let mut sum_d2 = 0f64;
    let mut sum_absd = 0f64;
    let mut sum_b2 = 0f64;
    let mut sum_ab = 0f64;
    let mut max_abs = 0f64;
    let mut max_rel = 0f64;
    let mut worst = None::<usize>;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let (x, y) = (x as f64, y as f64);
        let d = x - y;
        let ad = d.abs();
        let c = x - mean_a;
        var_acc += c * c;
        sum_d2 += d * d;
        sum_absd += ad;
        sum_b2 += y * y;
        sum_ab += x * y;
        if ad > max_abs || worst.is_none() {
            max_abs = ad;
            worst = Some(i);
        }
        let rel = ad / x.abs().max(floor);
        if rel > max_rel {
            max_rel = rel;
        }
    }
    let mse = sum_d2 / nf64;
    let var_a = var_acc / nf64;
    let mean_a2 = sum_a2 / nf64;
    let nmse = if var_a > 0.0 {
        mse / var_a
    } else if mean_a2 > 0.0 {
        mse / mean_a2
    } else {
        mse
    };
    let cosine = match (sum_a2 > 0.0, sum_b2 > 0.0) {
        // sqrt of the product, not the product of sqrts: sqrt(fl(x*x)) == x exactly, so
        // identical tensors give exactly 1. Separate roots only where the product overflows.
        (true, true) => {
            let p = sum_a2 * sum_b2;
            let norm = if p.is_finite() && p > 0.0 {
                p.sqrt()
            } else {
                sum_a2.sqrt() * sum_b2.sqrt()
            };
            (sum_ab / norm).clamp(-1.0, 1.0)
        }
        (false, false) => 1.0,
        _ => 0.0,
    };
    let worst_i = worst.unwrap_or(0);
    Metrics {
        elements: n_all,
        max_abs,
        mean_abs: sum_absd / nf64,
        max_rel,
        rmse: mse.sqrt(),
        nmse,
        cosine,
        worst_index: if n_all == 0 {
            vec![]
        } else {
            unravel(worst_i, shape)
        },
        worst_expected: a.get(worst_i).copied().unwrap_or(0.0),
        worst_candidate: b.get(worst_i).copied().unwrap_or(0.0),
        non_finite,
    }
}

/// Per-token-row comparison of logits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitRow {
    /// `KL(softmax(a) || softmax(b))` in nats: the divergence of the candidate's distribution
    /// from the expected one.
    pub kl: f64,
    pub top1_expected: usize,
    pub top1_candidate: usize,
    /// How many of the expected top-5 token ids are in the candidate's top-5 (ties broken by
    /// lower id).
    pub top5_overlap: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitMetrics {
    pub rows: Vec<LogitRow>,
    pub max_kl: f64,
    pub mean_kl: f64,
    /// Rows whose top-1 token agrees.
    pub top1_agree: usize,
    pub min_top5_overlap: usize,
}

impl LogitMetrics {
    /// Fraction of rows whose top-1 agrees (1 when there are no rows).
    pub fn top1_fraction(&self) -> f64 {
        if self.rows.is_empty() {
            1.0
        } else {
            self.top1_agree as f64 / self.rows.len() as f64
        }
    }

    /// Row with the largest KL.
    pub fn worst_row(&self) -> Option<usize> {
        (0..self.rows.len()).max_by(|&i, &j| self.rows[i].kl.total_cmp(&self.rows[j].kl))
    }
}

/// Log-softmax of one row in f64, stable for any finite logits.
fn log_softmax(row: &[f32], out: &mut Vec<f64>) {
    out.clear();
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    out.extend(row.iter().map(|&x| x as f64 - lse));
}

/// Indices of the `k` largest values, largest first; ties go to the lower index.
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &x) in row.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&j| row[j] >= x) {
            continue;
        }
        // Strictly greater moves ahead, so an equal earlier index stays first.
        let pos = best.iter().position(|&j| x > row[j]).unwrap_or(best.len());
        best.insert(pos, i);
        best.truncate(k);
    }
    best
}

/// Logit metrics over rows of `n_vocab` values. The caller makes sure both sides are finite.
pub fn logits(a: &[f32], b: &[f32], n_vocab: usize) -> LogitMetrics {
    let mut rows = Vec::new();
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    if n_vocab > 0 {
        for (ra, rb) in a.chunks_exact(n_vocab).zip(b.chunks_exact(n_vocab)) {
            log_softmax(ra, &mut la);
            log_softmax(rb, &mut lb);
            let kl: f64 = la.iter().zip(&lb).map(|(&p, &q)| p.exp() * (p - q)).sum();
            let ta = top_k(ra, 5);
            let tb = top_k(rb, 5);
            rows.push(LogitRow {
                // The sum of non-negative terms in exact arithmetic; rounding can leave -1e-17.
                kl: kl.max(0.0),
                top1_expected: ta[0],
                top1_candidate: tb[0],
                top5_overlap: ta.iter().filter(|i| tb.contains(i)).count(),
            });
        }
    }
    let max_kl = rows.iter().map(|r| r.kl).fold(0.0, f64::max);
    let mean_kl = if rows.is_empty() {
        0.0
    } else {
        rows.iter().map(|r| r.kl).sum::<f64>() / rows.len() as f64
    };
    LogitMetrics {
        max_kl,
        mean_kl,
        top1_agree: rows
            .iter()
            .filter(|r| r.top1_expected == r.top1_candidate)
            .count(),
        min_top5_overlap: rows.iter().map(|r| r.top5_overlap).min().unwrap_or(5),
        rows,
    }
}

/// Token ids compare exactly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenMetrics {
    pub mismatches: usize,
    /// `(index, expected, candidate)` of the first differing token.
    pub first_mismatch: Option<(usize, f32, f32)>,
}

pub fn tokens(a: &[f32], b: &[f32]) -> TokenMetrics {
    let mut m = TokenMetrics {
        mismatches: 0,
        first_mismatch: None,
    };
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if x.to_bits() != y.to_bits() {
            m.mismatches += 1;
            m.first_mismatch.get_or_insert((i, x, y));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64, tol: f64) -> bool {
        (x - y).abs() <= tol * y.abs().max(1e-300)
    }

    #[test]
    fn hand_computed_small_case() {
        // a = [1, 2, 3, 4], b = [1, 2, 3, 5]: one error of 1 at index 3.
        let m = compute(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 5.0], &[2, 2]);
        assert_eq!(m.max_abs, 1.0);
        assert_eq!(m.mean_abs, 0.25);
        assert_eq!(m.rmse, 0.5); // sqrt(1/4)
                                 // var(a) = mean([2.25, .25, .25, 2.25]) = 1.25; mse = 0.25.
        assert!(close(m.nmse, 0.2, 1e-15), "{}", m.nmse);
        // |d| / |a| = 1/4 at the worst element.
        assert_eq!(m.max_rel, 0.25);
        // a.b = 1+4+9+20 = 34, |a| = sqrt(30), |b| = sqrt(39).
        assert!(close(m.cosine, 34.0 / (30f64.sqrt() * 39f64.sqrt()), 1e-15));
        assert_eq!(m.worst_index, vec![1, 1]);
        assert_eq!((m.worst_expected, m.worst_candidate), (4.0, 5.0));
        assert!(m.non_finite.is_none());
    }

    #[test]
    fn identical_is_zero_error() {
        let a = [0.5f32, -1.5, 2.25];
        let m = compute(&a, &a, &[3]);
        assert_eq!(
            (m.max_abs, m.nmse, m.max_rel, m.cosine),
            (0.0, 0.0, 0.0, 1.0)
        );
        let r: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0)
            .collect();
        assert_eq!(compute(&r, &r, &[1000]).cosine, 1.0);
    }

    #[test]
    fn nmse_fallbacks_for_constant_and_zero_expected() {
        // Constant a = 2: var 0, mean(a^2) = 4; mse = (0 + 1)/2.
        let m = compute(&[2.0, 2.0], &[2.0, 3.0], &[2]);
        assert!(close(m.nmse, 0.5 / 4.0, 1e-15));
        // All-zero a: the raw MSE; cosine 0 since only one side is zero.
        let m = compute(&[0.0, 0.0], &[0.0, 2.0], &[2]);
        assert!(close(m.nmse, 2.0, 1e-15));
        assert_eq!(m.cosine, 0.0);
        // Both zero: identical, cosine 1.
        let m = compute(&[0.0, 0.0], &[0.0, 0.0], &[2]);
        assert_eq!((m.nmse, m.cosine), (0.0, 1.0));
    }

    #[test]
    fn relative_error_is_floored() {
        // rms(a) = sqrt((1e6^2 + 0)/2); the exact zero gets floor 1e-6 * rms instead of 0.
        let rms = (1e12f64 / 2.0).sqrt();
        let m = compute(&[1e6, 0.0], &[1e6, 1e-3], &[2]);
        let d = 1e-3f32 as f64;
        assert!(close(m.max_rel, d / (1e-6 * rms), 1e-12), "{}", m.max_rel);
    }

    #[test]
    fn non_finite_counted_and_excluded() {
        let m = compute(
            &[1.0, f32::NAN, 3.0, 4.0],
            &[1.0, 2.0, f32::INFINITY, 4.0],
            &[4],
        );
        let nf = m.non_finite.clone().unwrap();
        assert_eq!(
            (
                nf.expected_nan,
                nf.expected_inf,
                nf.candidate_nan,
                nf.candidate_inf
            ),
            (1, 0, 0, 1)
        );
        assert_eq!(nf.first_index, vec![1]);
        assert_eq!(m.max_abs, 0.0);
        assert!(nf.describe().contains("expected 1 NaN, candidate 1 inf"));
    }

    #[test]
    fn unravel_is_c_order() {
        assert_eq!(unravel(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(unravel(13, &[2, 3, 4]), vec![1, 0, 1]);
    }

    #[test]
    fn kl_of_two_token_distributions() {
        // Row 0 identical; row 1: p = softmax([0, 0]) = [.5, .5], q = softmax([ln 3, 0]) = [.75, .25].
        let a = [1.0f32, 2.0, 0.0, 0.0];
        let b = [1.0f32, 2.0, 3f32.ln(), 0.0];
        let l = logits(&a, &b, 2);
        assert_eq!(l.rows.len(), 2);
        assert!(l.rows[0].kl < 1e-15);
        let want = 0.5 * (0.5f64 / 0.75).ln() + 0.5 * (0.5f64 / 0.25).ln();
        assert!(
            close(l.rows[1].kl, want, 1e-6),
            "{} vs {want}",
            l.rows[1].kl
        );
        assert_eq!(l.max_kl, l.rows[1].kl);
        // Row 1 ties [0, 0]: expected top-1 is index 0, candidate's is index 0 (ln 3 > 0).
        assert_eq!(l.top1_agree, 2);
        assert_eq!(l.worst_row(), Some(1));
    }

    #[test]
    fn kl_is_stable_for_large_logits() {
        let a = [1000.0f32, 999.0, -1000.0];
        let b = [1000.0f32, 998.0, -1000.0];
        let l = logits(&a, &b, 3);
        // p = softmax([1, 0]) ~ [e/(e+1), 1/(e+1)], q = softmax([2, 0]).
        let (e, e2) = (1f64.exp(), 2f64.exp());
        let (p0, p1, q0, q1) = (
            e / (e + 1.0),
            1.0 / (e + 1.0),
            e2 / (e2 + 1.0),
            1.0 / (e2 + 1.0),
        );
        let want = p0 * (p0 / q0).ln() + p1 * (p1 / q1).ln();
        assert!(l.rows[0].kl.is_finite());
        assert!(
            close(l.rows[0].kl, want, 1e-9),
            "{} vs {want}",
            l.rows[0].kl
        );
    }

    #[test]
    fn top1_and_top5() {
        let a = [0.0f32, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0];
        // Candidate swaps the top two and pushes index 5 out of its top-5 in favour of 6.
        let b = [0.0f32, 8.0, 9.0, 7.0, 6.0, 1.0, 4.0];
        let l = logits(&a, &b, 7);
        assert_eq!((l.rows[0].top1_expected, l.rows[0].top1_candidate), (1, 2));
        assert_eq!(l.rows[0].top5_overlap, 4);
        assert_eq!(l.top1_agree, 0);
        assert_eq!(l.top1_fraction(), 0.0);
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 2), vec![1, 2]);
        assert_eq!(top_k(&[1.0, 2.0], 5), vec![1, 0]);
    }

    #[test]
    fn tokens_exact() {
        let t = tokens(&[1.0, 2.0, 3.0], &[1.0, 5.0, 4.0]);
        assert_eq!(t.mismatches, 2);
        assert_eq!(t.first_mismatch, Some((1, 2.0, 5.0)));
        assert_eq!(tokens(&[7.0], &[7.0]).mismatches, 0);
    }
}
