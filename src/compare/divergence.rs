//! The first divergence: the earliest non-passing checkpoint in graph order, and how the error
//! of the residual stream evolves over the layers of that step, so a reader sees at once
//! whether a small difference compounds or stays put.

use serde::Serialize;

use super::{CheckpointResult, Verdict};
use crate::checkpoint::Kind;

#[derive(Debug, Clone, Serialize)]
pub struct GrowthPoint {
    pub layer: u32,
    pub nmse: Option<f64>,
    pub verdict: Verdict,
}

/// Per-layer NMSE of the residual stream in the divergent step.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub step: u32,
    /// `l_out`, or `ffn_inp` for catalogues without `l_out`.
    pub kind: String,
    pub points: Vec<GrowthPoint>,
    /// E.g. "grows 2.3 orders of magnitude from layer 5 (3.1e-06) to layer 29 (6.2e-04)".
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstDivergence {
    pub step: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    pub checkpoint: String,
    pub verdict: Verdict,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth: Option<Growth>,
}

impl FirstDivergence {
    /// "step 0, layer 5, blk.5.ffn_out: FAIL (nmse 3.1e-4 > 1e-6)".
    pub fn headline(&self) -> String {
        let layer = self
            .layer
            .map(|l| format!("layer {l}, "))
            .unwrap_or_default();
        format!(
            "step {}, {layer}{}: {} ({})",
            self.step, self.checkpoint, self.verdict, self.reason
        )
    }
}

/// Finds the first divergence in results sorted in graph order.
pub fn find(results: &[CheckpointResult]) -> Option<FirstDivergence> {
    let first = results.iter().find(|r| r.verdict != Verdict::Pass)?;
    Some(FirstDivergence {
        step: first.step,
        layer: first.layer,
        checkpoint: first.name.clone(),
        verdict: first.verdict,
        reason: first.reason.clone().unwrap_or_default(),
        nmse: first.nmse(),
        growth: growth(results, first),
    })
}

fn growth(results: &[CheckpointResult], first: &CheckpointResult) -> Option<Growth> {
    let step: Vec<&CheckpointResult> = results.iter().filter(|r| r.step == first.step).collect();
    let kind = [Kind::LOut, Kind::FfnInp]
        .into_iter()
        .find(|k| step.iter().any(|r| r.id.name.kind() == Some(*k)))?;
    let points: Vec<GrowthPoint> = step
        .iter()
        .filter(|r| r.id.name.kind() == Some(kind))
        .map(|r| GrowthPoint {
            layer: r.layer.unwrap_or(0),
            nmse: r.nmse(),
            verdict: r.verdict,
        })
        .collect();
    // Before the divergence the error is within tolerance by definition; the trend that matters
    // starts at the divergent layer (or at layer 0 when it diverged before the layers).
    let from = first.layer.unwrap_or(0);
    let after: Vec<&GrowthPoint> = points.iter().filter(|p| p.layer >= from).collect();
    let span = if after.is_empty() {
        points.iter().collect()
    } else {
        after
    };
    let summary = trend(&span);
    Some(Growth {
        step: first.step,
        kind: kind.as_str().to_string(),
        points,
        summary,
    })
}

fn trend(points: &[&GrowthPoint]) -> String {
    let finite: Vec<(u32, f64)> = points
        .iter()
        .filter_map(|p| p.nmse.filter(|v| v.is_finite()).map(|v| (p.layer, v)))
        .collect();
    let (Some(&(l0, v0)), Some(&(l1, v1))) = (finite.first(), finite.last()) else {
        return "no finite NMSE to follow".into();
    };
    if l0 == l1 {
        return format!("only layer {l0} to follow ({v0:.1e})");
    }
    let ends = format!("from layer {l0} ({v0:.1e}) to layer {l1} ({v1:.1e})");
    if v0 == 0.0 && v1 == 0.0 {
        return format!("stays at 0 from layer {l0} to layer {l1}");
    }
    if v0 == 0.0 {
        return format!("rises {ends}");
    }
    let orders = (v1 / v0).log10();
    let words = if orders >= 1.0 {
        format!("grows {orders:.1} orders of magnitude {ends}")
    } else if orders <= -1.0 {
        format!("shrinks {:.1} orders of magnitude {ends}", -orders)
    } else {
        format!("stays flat (within 10x) {ends}")
    };
    // The ends alone hide a bump in between (e.g. a layer whose error later washes out).
    let (lp, vp) = finite
        .iter()
        .copied()
        .fold((l0, v0), |a, b| if b.1 > a.1 { b } else { a });
    if vp > v0.max(v1) * 2.0 {
        format!("{words}, peaking at layer {lp} ({vp:.1e})")
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(layer: u32, nmse: f64) -> GrowthPoint {
        GrowthPoint {
            layer,
            nmse: Some(nmse),
            verdict: Verdict::Pass,
        }
    }

    #[test]
    fn trend_words() {
        let (a, b, c) = (p(3, 1e-6), p(10, 1e-3), p(12, 2e-6));
        assert!(
            trend(&[&a, &b]).starts_with("grows 3.0 orders"),
            "{}",
            trend(&[&a, &b])
        );
        assert!(trend(&[&b, &a]).starts_with("shrinks 3.0"));
        assert!(trend(&[&a, &c]).starts_with("stays flat"));
        assert!(trend(&[&a]).starts_with("only layer 3"));
        let (z0, z1) = (p(0, 0.0), p(1, 0.0));
        assert!(trend(&[&z0, &z1]).starts_with("stays at 0"));
        assert!(trend(&[&z0, &a]).starts_with("rises"));
        let peak = p(7, 1e-2);
        assert_eq!(
            trend(&[&a, &peak, &c]),
            "stays flat (within 10x) from layer 3 (1.0e-6) to layer 12 (2.0e-6), peaking at layer 7 (1.0e-2)"
        );
    }
}
