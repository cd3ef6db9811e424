//! The Markdown report: verdict and first divergence at the top, the error heatmap (an SVG
//! written beside the Markdown), the environment of both sides, the tolerances, the compact
//! table and every checkpoint.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::{detail, groups, metric, one_minus_cos, preamble, sci, shapes};
use crate::checkpoint::format::{write_atomic, DumpError};
use crate::compare::{Comparison, Environment, Verdict};

/// Escapes text for a table cell or inline use: no raw HTML, no column breaks, one line.
fn cell(s: &str) -> String {
    let s = s
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;");
    s.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

/// A tolerance as written in a TOML file: `1e-6`, `0.99999`.
fn num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e4) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

fn tokens(t: &[i32]) -> String {
    if t.is_empty() {
        return "-".into();
    }
    format!(
        "{} ({})",
        t.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        t.len()
    )
}

/// The path of the heatmap written beside `md`: same stem, `.svg`.
pub fn svg_path(md: &Path) -> PathBuf {
    md.with_extension("svg")
}

/// Renders the Markdown; `svg_link` is the heatmap's path relative to the Markdown file.
pub fn render(c: &Comparison, svg_link: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# llorch-diff: {} (A) vs {} (B)\n",
        cell(&c.expected.label()),
        cell(&c.candidate.label())
    );
    let pre = preamble(c);
    let _ = writeln!(md, "**{}**\n", cell(&pre[0]));
    for line in &pre[1..] {
        let _ = writeln!(md, "- {}", cell(line.trim_start()));
    }
    md.push('\n');

    first_divergence(&mut md, c);
    if let Some(link) = svg_link {
        let _ = writeln!(md, "## Error heatmap\n");
        let _ = writeln!(
            md,
            "log10 NMSE by layer and checkpoint kind; outlined cells did not pass.\n"
        );
        let _ = writeln!(
            md,
            "![error heatmap: log10 NMSE per layer and checkpoint kind]({link})\n"
        );
    }
    environment(&mut md, c);
    tolerances(&mut md, c);

    let _ = writeln!(md, "## Results by layer\n");
    let _ = writeln!(
        md,
        "One row per step and layer, showing its worst checkpoint.\n"
    );
    layer_table(&mut md, c);
    md.push('\n');

    let _ = writeln!(md, "## Every checkpoint\n");
    let _ = writeln!(
        md,
        "<details><summary>{} checkpoints</summary>\n",
        c.results.len()
    );
    let _ = writeln!(md, "| step | checkpoint | shape | verdict | NMSE | 1-cos | max\\|d\\| | mean\\|d\\| | max rel | worst at | detail |");
    let _ = writeln!(md, "|---:|---|---|---|---:|---:|---:|---:|---:|---|---|");
    for r in &c.results {
        let at = r
            .metrics
            .as_ref()
            .filter(|m| m.elements > 0)
            .map(|m| format!("{:?}", m.worst_index))
            .unwrap_or("-".into());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.step,
            r.name,
            shapes(r),
            bold_unless_pass(r.verdict),
            metric(r, |m| m.nmse),
            one_minus_cos(r),
            metric(r, |m| m.max_abs),
            metric(r, |m| m.mean_abs),
            metric(r, |m| m.max_rel),
            at,
            cell(&detail(r))
        );
    }
    let _ = writeln!(md, "\n</details>");
    md
}

/// The compact table: one row per step and layer, its worst checkpoint.
fn layer_table(md: &mut String, c: &Comparison) {
    let _ = writeln!(
        md,
        "| step | checkpoint | pass | worst | verdict | NMSE | 1-cos | max\\|d\\| | detail |"
    );
    let _ = writeln!(md, "|---:|---|---:|---|---|---:|---:|---:|---|");
    for g in groups(c) {
        let w = g.worst();
        let verdict = bold_unless_pass(w.verdict);
        let _ = writeln!(
            md,
            "| {} | {} | {}/{} | {} | {verdict} | {} | {} | {} | {} |",
            g.step,
            g.label,
            g.passed(),
            g.results.len(),
            g.worst_kind(),
            metric(w, |m| m.nmse),
            one_minus_cos(w),
            metric(w, |m| m.max_abs),
            cell(&detail(w))
        );
    }
}

/// A compact Markdown verdict for a CI job summary (`$GITHUB_STEP_SUMMARY`): a heading, the
/// verdict and first divergence, and the compact table folded away.
pub fn summary(c: &Comparison, title: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### {}\n", cell(title));
    let pre = preamble(c);
    let _ = writeln!(md, "**{}**\n", cell(&pre[0]));
    for line in &pre[1..] {
        let _ = writeln!(md, "- {}", cell(line.trim_start()));
    }
    let _ = writeln!(
        md,
        "\n<details><summary>Results by layer ({} (A) vs {} (B), mode {})</summary>\n",
        cell(&c.expected.label()),
        cell(&c.candidate.label()),
        cell(&c.mode)
    );
    layer_table(&mut md, c);
    let _ = writeln!(md, "\n</details>\n");
    md
}

fn bold_unless_pass(v: Verdict) -> String {
    if v == Verdict::Pass {
        v.to_string()
    } else {
        format!("**{v}**")
    }
}

fn first_divergence(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "## First divergence\n");
    let Some(d) = &c.first_divergence else {
        let _ = writeln!(md, "None: every checkpoint is within tolerance.\n");
        return;
    };
    let layer = d.layer.map(|l| format!(", layer {l}")).unwrap_or_default();
    let _ = writeln!(
        md,
        "Step {}{layer}, `{}`: **{}**: {}\n",
        d.step,
        d.checkpoint,
        d.verdict,
        cell(&d.reason)
    );
    let Some(g) = &d.growth else { return };
    let _ = writeln!(
        md,
        "Residual stream (`{}`) NMSE by layer in step {}: {}.\n",
        g.kind, g.step, g.summary
    );
    let _ = writeln!(md, "| layer | NMSE | verdict |");
    let _ = writeln!(md, "|---:|---:|---|");
    for p in &g.points {
        let here = if d.layer == Some(p.layer) {
            " (first divergence)"
        } else {
            ""
        };
        let _ = writeln!(
            md,
            "| {} | {} | {}{here} |",
            p.layer,
            p.nmse.map(sci).unwrap_or("-".into()),
            bold_unless_pass(p.verdict)
        );
    }
    md.push('\n');
}

fn environment(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "## Environment\n");
    let (a, b) = (
        c.expected.environment.as_ref(),
        c.candidate.environment.as_ref(),
    );
    let _ = writeln!(md, "| | expected (A) | candidate (B) |");
    let _ = writeln!(md, "|---|---|---|");
    // `must_match`: a difference in this field makes the two runs incomparable.
    let mut row = |name: &str, must_match: bool, f: &dyn Fn(&Environment) -> String| {
        let va = a.map(f).unwrap_or_else(|| "(no manifest)".into());
        let vb = b.map(f).unwrap_or_else(|| "(no manifest)".into());
        let mark = if must_match && a.is_some() && b.is_some() && va != vb {
            " (differs)"
        } else {
            ""
        };
        let _ = writeln!(md, "| {name}{mark} | {} | {} |", cell(&va), cell(&vb));
    };
    row("producer", false, &|e| e.producer.clone());
    row("model file", false, &|e| e.model_file.clone());
    row("model sha256", true, &|e| format!("`{}`", e.model_sha256));
    row("architecture", true, &|e| {
        format!("{} ({} layers)", e.architecture, e.n_layer)
    });
    let keys: BTreeSet<&String> = a
        .iter()
        .chain(b.iter())
        .flat_map(|e| e.producer_detail.keys())
        .collect();
    for k in keys {
        row(k, false, &|e| {
            e.producer_detail
                .get(k)
                .cloned()
                .unwrap_or_else(|| "-".into())
        });
    }
    row("KV cache type", true, &|e| e.kv_type.clone());
    row("threads", false, &|e| e.threads.to_string());
    row("prompt", true, &|e| format!("{:?}", e.prompt));
    row("prompt tokens", true, &|e| tokens(&e.prompt_tokens));
    row("generated tokens", true, &|e| tokens(&e.generated_tokens));
    row("decode steps", true, &|e| e.steps.to_string());
    let _ = writeln!(
        md,
        "| folder | {} | {} |",
        cell(&c.expected.dir.display().to_string()),
        cell(&c.candidate.dir.display().to_string())
    );
    let _ = writeln!(
        md,
        "| checkpoints | {} | {} |",
        c.expected.checkpoints, c.candidate.checkpoints
    );
    md.push('\n');
}

fn tolerances(md: &mut String, c: &Comparison) {
    let _ = writeln!(md, "## Tolerances\n");
    let _ = writeln!(
        md,
        "Mode `{}`; from {}. Token ids compare exactly.\n",
        c.mode,
        c.tolerance_sources.join(", then ")
    );
    let _ = writeln!(
        md,
        "| kind | nmse <= | cosine >= | max\\|d\\| <= | max rel <= | KL <= | top-1 >= |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    let mut seen = BTreeSet::new();
    let opt = |v: Option<f64>| v.map(num).unwrap_or("-".into());
    for r in &c.results {
        if r.kind == "tokens" || !seen.insert(r.kind.clone()) {
            continue;
        }
        let g = &r.gate;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.kind),
            opt(g.nmse),
            opt(g.cosine),
            opt(g.max_abs),
            opt(g.max_rel),
            opt(g.kl),
            opt(g.top1)
        );
    }
    md.push('\n');
}

/// Writes `md` and the heatmap beside it (same stem, `.svg`), both atomically. Returns the
/// paths written.
pub fn write(c: &Comparison, md: &Path) -> Result<Vec<PathBuf>, DumpError> {
    let svg = svg_path(md);
    let link = svg
        .file_name()
        .map(|n| n.to_string_lossy().replace(' ', "%20"))
        .unwrap_or_default();
    write_atomic(&svg, super::heatmap::render(c).as_bytes())?;
    write_atomic(md, render(c, Some(&link)).as_bytes())?;
    Ok(vec![md.to_path_buf(), svg])
}
