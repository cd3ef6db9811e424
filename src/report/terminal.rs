//! The terminal report: preamble (verdict, warnings, first divergence and its growth), then a
//! table. Compact: one row per step × layer with its worst checkpoint; verbose: every checkpoint.
//! No colours and no terminal-width wrapping, so the output is the same in a log file.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

use super::{clip, detail, groups, growth_lines, metric, one_minus_cos, preamble, shapes};
use crate::compare::Comparison;

/// Longest detail text in the compact table; the verbose table and the other reports keep it all.
const COMPACT_DETAIL: usize = 90;

pub fn render(c: &Comparison, verbose: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "expected (A): {} {}\ncandidate (B): {} {}  [mode {}]\n",
        c.expected.label(),
        c.expected.dir.display(),
        c.candidate.label(),
        c.candidate.dir.display(),
        c.mode
    ));
    for line in preamble(c) {
        out.push_str(&line);
        out.push('\n');
    }
    for line in growth_lines(c, 6) {
        out.push_str("    ");
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(
        &if verbose {
            full_table(c)
        } else {
            compact_table(c)
        }
        .to_string(),
    );
    out.push('\n');
    out.push_str(&c.headline());
    out.push('\n');
    out
}

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn right_align(t: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// One row per step × layer, plus the checkpoints outside the layers.
pub fn compact_table(c: &Comparison) -> Table {
    let mut t = new_table(&[
        "step",
        "checkpoint",
        "pass",
        "worst",
        "verdict",
        "NMSE",
        "1-cos",
        "max|d|",
        "detail",
    ]);
    for g in groups(c) {
        let w = g.worst();
        t.add_row(vec![
            g.step.to_string(),
            g.label.clone(),
            format!("{}/{}", g.passed(), g.results.len()),
            g.worst_kind().to_string(),
            w.verdict.to_string(),
            metric(w, |m| m.nmse),
            one_minus_cos(w),
            metric(w, |m| m.max_abs),
            clip(&detail(w), COMPACT_DETAIL),
        ]);
    }
    right_align(&mut t, &[0, 2, 5, 6, 7]);
    t
}

/// Every checkpoint with all its metrics.
pub fn full_table(c: &Comparison) -> Table {
    let mut t = new_table(&[
        "step",
        "checkpoint",
        "shape",
        "verdict",
        "NMSE",
        "1-cos",
        "max|d|",
        "mean|d|",
        "max rel",
        "worst at",
        "A / B there",
        "detail",
    ]);
    for r in &c.results {
        let (at, vals) = match &r.metrics {
            Some(m) if m.elements > 0 => (
                format!("{:?}", m.worst_index),
                // Shortest round-trip f32 text: every digit that differs shows.
                format!("{} / {}", m.worst_expected, m.worst_candidate),
            ),
            _ => ("-".into(), "-".into()),
        };
        t.add_row(vec![
            r.step.to_string(),
            r.name.clone(),
            shapes(r),
            r.verdict.to_string(),
            metric(r, |m| m.nmse),
            one_minus_cos(r),
            metric(r, |m| m.max_abs),
            metric(r, |m| m.mean_abs),
            metric(r, |m| m.max_rel),
            at,
            vals,
            detail(r),
        ]);
    }
    right_align(&mut t, &[0, 4, 5, 6, 7, 8]);
    t
}
