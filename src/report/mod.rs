//! Renders the judge's verdicts: terminal table, Markdown with a heatmap picture, JSON, JUnit.
//! Every renderer takes a [`Comparison`] and puts the first divergence at the top.

pub mod heatmap;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod terminal;

use std::io::Write;
use std::path::PathBuf;

use crate::compare::{CheckpointResult, Comparison, Verdict};

/// The environment variable naming the file of a GitHub Actions job summary.
pub const STEP_SUMMARY_ENV: &str = "GITHUB_STEP_SUMMARY";

/// Appends `markdown` to the file `$GITHUB_STEP_SUMMARY` names (created if missing). Returns
/// the file, or None when the variable is unset or empty.
pub fn append_step_summary(markdown: &str) -> std::io::Result<Option<PathBuf>> {
    let Some(path) = std::env::var_os(STEP_SUMMARY_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(markdown.as_bytes())?;
    if !markdown.ends_with('\n') {
        f.write_all(b"\n")?;
    }
    Ok(Some(path))
}

/// A row of the compact table: one step × layer (all its checkpoints), or one checkpoint
/// outside the layers (`tokens`, `inp_embd`, `result_norm`, `result_output`, other names).
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub step: u32,
    pub layer: Option<u32>,
    /// `blk.5`, or the checkpoint name.
    pub label: String,
    pub results: Vec<&'a CheckpointResult>,
}

impl<'a> Group<'a> {
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count()
    }

    /// The checkpoint that represents the group: the most severe verdict, then the largest
    /// error relative to its NMSE tolerance.
    /// Ties go to the earliest in graph order.
    pub fn worst(&self) -> &'a CheckpointResult {
        let mut w = self.results[0];
        for &r in &self.results[1..] {
            if r.verdict
                .cmp(&w.verdict)
                .then(badness(r).total_cmp(&badness(w)))
                .is_gt()
            {
                w = r;
            }
        }
        w
    }

    /// The kind to name in the `worst` column: none when nothing in the group differs at all.
    pub fn worst_kind(&self) -> &'a str {
        let w = self.worst();
        if self.layer.is_none() || (w.verdict == Verdict::Pass && badness(w) == 0.0) {
            "-"
        } else {
            &w.kind
        }
    }
}

/// NMSE in units of its tolerance (plain NMSE when ungated); NaN ranks worst.
pub fn badness(r: &CheckpointResult) -> f64 {
    match r.nmse() {
        Some(v) if v.is_nan() => f64::INFINITY,
        Some(v) => match r.gate.nmse {
            Some(t) if t > 0.0 => v / t,
            _ => v,
        },
        None => 0.0,
    }
}

/// Groups results (in graph order) into compact-table rows.
pub fn groups(c: &Comparison) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for r in &c.results {
        let key_matches = |g: &Group| g.step == r.step && g.layer.is_some() && g.layer == r.layer;
        match out.last_mut() {
            Some(g) if key_matches(g) => g.results.push(r),
            _ => out.push(Group {
                step: r.step,
                layer: r.layer,
                label: match r.layer {
                    Some(l) => format!("blk.{l}"),
                    None => r.name.clone(),
                },
                results: vec![r],
            }),
        }
    }
    out
}

/// Short scientific notation: `3.1e-4`, `0`, `NaN`, `inf`.
pub fn sci(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:.1e}")
    }
}

/// `1 - cosine`, which keeps the digits that matter when the cosine is 0.9999999.
pub fn one_minus_cos(r: &CheckpointResult) -> String {
    r.metrics
        .as_ref()
        .map(|m| sci((1.0 - m.cosine).max(0.0)))
        .unwrap_or_else(|| "-".into())
}

pub fn metric(r: &CheckpointResult, f: impl Fn(&crate::compare::Metrics) -> f64) -> String {
    r.metrics
        .as_ref()
        .map(|m| sci(f(m)))
        .unwrap_or_else(|| "-".into())
}

pub fn shape(s: &Option<Vec<usize>>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "-".into(),
    }
}

/// The shape column: one shape when both sides agree.
pub fn shapes(r: &CheckpointResult) -> String {
    if r.expected_shape == r.candidate_shape || r.candidate_shape.is_none() {
        shape(&r.expected_shape)
    } else if r.expected_shape.is_none() {
        shape(&r.candidate_shape)
    } else {
        format!(
            "{} vs {}",
            shape(&r.expected_shape),
            shape(&r.candidate_shape)
        )
    }
}

/// What to say about a checkpoint: why it failed, or the metrics specific to its kind.
pub fn detail(r: &CheckpointResult) -> String {
    if let Some(reason) = &r.reason {
        return reason.clone();
    }
    if let Some(t) = &r.tokens {
        let n = r.metrics.as_ref().map(|m| m.elements).unwrap_or(0);
        return if t.mismatches == 0 {
            format!("{n} token id(s) equal")
        } else {
            format!("{} differ", t.mismatches)
        };
    }
    if let Some(l) = &r.logits {
        return format!(
            "top-1 {}/{}, top-5 overlap >= {}/5, max KL {}",
            l.top1_agree,
            l.rows.len(),
            l.min_top5_overlap,
            sci(l.max_kl)
        );
    }
    String::new()
}

/// Cuts a string to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

/// The per-layer residual NMSE series as `L0 1.2e-9 ...` lines, `per_line` points each;
/// failing layers are marked `!`.
pub fn growth_lines(c: &Comparison, per_line: usize) -> Vec<String> {
    let Some(g) = c.first_divergence.as_ref().and_then(|d| d.growth.as_ref()) else {
        return vec![];
    };
    g.points
        .chunks(per_line.max(1))
        .map(|chunk| {
            chunk
                .iter()
                .map(|p| {
                    let mark = if p.verdict == Verdict::Pass { " " } else { "!" };
                    format!(
                        "L{:<2} {:>7}{mark}",
                        p.layer,
                        p.nmse.map(sci).unwrap_or_else(|| "-".into())
                    )
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect()
}

/// The lines every output starts with: verdict, run failures, warnings, first divergence.
pub fn preamble(c: &Comparison) -> Vec<String> {
    let mut v = vec![c.headline()];
    v.extend(c.run_failures.iter().map(|f| format!("RUN FAILURE: {f}")));
    v.extend(c.warnings.iter().map(|w| format!("WARNING: {w}")));
    v.push(match &c.first_divergence {
        Some(d) => format!("FIRST DIVERGENCE: {}", d.headline()),
        None => "FIRST DIVERGENCE: none, every checkpoint is within tolerance".into(),
    });
    if let Some(g) = c.first_divergence.as_ref().and_then(|d| d.growth.as_ref()) {
        v.push(format!(
            "  {} NMSE by layer, step {}: {}",
            g.kind, g.step, g.summary
        ));
    }
    v
}
