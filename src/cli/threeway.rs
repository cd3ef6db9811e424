//! `run --with-hf`: llama.cpp (A), the reference (B) and HF transformers (C) on one model and
//! prompt. Three pairs are judged (A-B, A-C, B-C), each with its first divergence; when two
//! pairs disagree about one producer, the report says which producer stands apart.
//!
//! A pair with transformers is judged on the checkpoints transformers dumps (every catalogue
//! kind for llama-like families, layer outputs and logits for the others), in the tolerance
//! mode `hf` (against llama.cpp or the ggml-mode reference) or `hf-exact` (against the
//! exact-mode reference); see [`crate::compare::pair_mode`].

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::compare::step_summary;
use crate::checkpoint::format::write_atomic;
use crate::checkpoint::DumpFolder;
use crate::compare::{compare_folders, Comparison, Tolerances, Verdict};
use crate::hf::{produce, HfOptions, HfSummary};

/// The sub-folder of an output folder holding transformers' dumps.
pub const TRANSFORMERS_DIR: &str = "transformers";

/// The producers, in the order of their letters.
pub const LETTERS: [(&str, &str); 3] = [
    ("A", "llama.cpp"),
    ("B", "reference"),
    ("C", "transformers"),
];

/// Runs transformers on the inputs llama.cpp evaluated (`dir/llama.cpp`'s prompt tokens and
/// generated tokens), writing `dir/transformers`.
pub fn produce_hf(
    model: &Path,
    prompt: &str,
    dir: &Path,
    llama_dir: &str,
    steps: u32,
    threads: Option<u32>,
) -> anyhow::Result<HfSummary> {
    let (prompt_tokens, decode) = super::reference::followed_inputs(&dir.join(llama_dir))?;
    let opts = HfOptions {
        prompt_tokens,
        decode_tokens: Some(decode),
        steps,
        prompt: prompt.to_string(),
        threads: threads.unwrap_or(0),
    };
    produce(model, &dir.join(TRANSFORMERS_DIR), &opts).context("hf")
}

/// One judged pair.
pub struct Pair {
    /// "A-B", "A-C", "B-C".
    pub name: String,
    pub comparison: Comparison,
    /// Checkpoints of the expected side left out because transformers does not dump them.
    pub left_out: usize,
}

/// Judges the three pairs of an output folder.
pub fn judge(out: &Path, dirs: [&str; 3], tol: &Tolerances) -> anyhow::Result<(Vec<Pair>, String)> {
    let open = |d: &str| {
        DumpFolder::open(&out.join(d)).with_context(|| format!("opening {}", out.join(d).display()))
    };
    let folders = [open(dirs[0])?, open(dirs[1])?, open(dirs[2])?];
    let mut pairs = Vec::new();
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let mut expected = folders[i].clone();
        let mut candidate = folders[j].clone();
        let mut left_out = 0;
        if j == 2 {
            // transformers dumps what its hooks reach, whatever `--filter` kept on the other
            // sides: judge the checkpoints both have.
            let dumped: std::collections::HashSet<_> =
                folders[j].entries.iter().map(|e| e.id.clone()).collect();
            let before = expected.entries.len();
            expected.entries.retain(|e| dumped.contains(&e.id));
            left_out = before - expected.entries.len();
            let kept: std::collections::HashSet<_> =
                expected.entries.iter().map(|e| e.id.clone()).collect();
            candidate.entries.retain(|e| kept.contains(&e.id));
        }
        let comparison = compare_folders(&expected, &candidate, tol)?;
        pairs.push(Pair {
            name: format!("{}-{}", LETTERS[i].0, LETTERS[j].0),
            comparison,
            left_out,
        });
    }
    let verdict = stands_apart(&pairs);
    Ok((pairs, verdict))
}

/// Which producer stands apart: the one in both failing pairs when the third pair passes.
pub fn stands_apart(pairs: &[Pair]) -> String {
    let ok: Vec<bool> = pairs.iter().map(|p| p.comparison.passed).collect();
    match ok.as_slice() {
        [true, true, true] => "all three agree within tolerance".into(),
        // A-B, A-C, B-C
        [true, false, false] => {
            "transformers (C) stands apart: llama.cpp and the reference agree".into()
        }
        [false, true, false] => {
            "the reference (B) stands apart: llama.cpp and transformers agree".into()
        }
        [false, false, true] => {
            "llama.cpp (A) stands apart: the reference and transformers agree".into()
        }
        [false, false, false] => "no two producers agree".into(),
        _ => "inconclusive: two pairs agree, the third does not (a difference near the tolerances)"
            .into(),
    }
}

fn nmse_cell(p: &Pair, row: &RowKey) -> String {
    let mut worst: Option<f64> = None;
    let mut verdict = Verdict::Pass;
    let mut any = false;
    for r in &p.comparison.results {
        if !row.matches(r) {
            continue;
        }
        any = true;
        verdict = verdict.max(r.verdict);
        if let Some(n) = r.nmse() {
            worst = Some(worst.map_or(n, |w: f64| w.max(n)));
        }
    }
    if !any {
        return "-".into();
    }
    let n = worst
        .map(|n| format!("{n:.1e}"))
        .unwrap_or_else(|| "0".into());
    let n = if worst == Some(0.0) { "0".into() } else { n };
    match verdict {
        Verdict::Pass => n,
        v => format!("{n} {v}"),
    }
}

/// One row of the three-way table: the tokens, the embedding, a layer (all its kinds), the
/// final norm or the logits, over every step.
#[derive(Clone)]
enum RowKey {
    Named(&'static str),
    Layer(u32),
}

impl RowKey {
    fn matches(&self, r: &crate::compare::CheckpointResult) -> bool {
        match self {
            RowKey::Named(k) => r.layer.is_none() && r.kind == *k,
            RowKey::Layer(l) => r.layer == Some(*l),
        }
    }
    fn label(&self) -> String {
        match self {
            RowKey::Named(k) => k.to_string(),
            RowKey::Layer(l) => format!("blk.{l}"),
        }
    }
}

fn rows(pairs: &[Pair]) -> Vec<RowKey> {
    let n_layer = pairs
        .iter()
        .flat_map(|p| p.comparison.results.iter().filter_map(|r| r.layer))
        .max()
        .map_or(0, |l| l + 1);
    let mut v = vec![RowKey::Named("tokens"), RowKey::Named("inp_embd")];
    v.extend((0..n_layer).map(RowKey::Layer));
    v.push(RowKey::Named("result_norm"));
    v.push(RowKey::Named("result_output"));
    v
}

fn pair_line(p: &Pair) -> String {
    let c = &p.comparison;
    let fd = c
        .first_divergence
        .as_ref()
        .map(|f| f.headline())
        .unwrap_or_else(|| "none".into());
    let left = if p.left_out > 0 {
        format!(", {} not dumped by transformers", p.left_out)
    } else {
        String::new()
    };
    format!(
        "{} {} vs {} [mode {}]: {}{left}; first divergence: {fd}",
        p.name,
        c.expected.label(),
        c.candidate.label(),
        c.mode,
        c.headline()
    )
}

/// The terminal table: per row, each pair's largest NMSE over the row's checkpoints and steps.
pub fn render_terminal(pairs: &[Pair], verdict: &str) -> String {
    let mut s = String::new();
    for p in pairs {
        let _ = writeln!(s, "{}", pair_line(p));
        for w in &p.comparison.run_failures {
            let _ = writeln!(s, "  RUN FAILURE: {w}");
        }
    }
    let _ = writeln!(s, "THREE-WAY: {verdict}");
    let _ = writeln!(
        s,
        "{:<14} {:>16} {:>16} {:>16}",
        "largest NMSE", "A-B", "A-C", "B-C"
    );
    for row in rows(pairs) {
        let _ = write!(s, "{:<14}", row.label());
        for p in pairs {
            let _ = write!(s, " {:>16}", nmse_cell(p, &row));
        }
        s.push('\n');
    }
    s
}

/// The Markdown section appended to the run's report.
pub fn render_markdown(pairs: &[Pair], verdict: &str) -> String {
    let mut s = String::from("\n## Three-way: llama.cpp (A), reference (B), transformers (C)\n\n");
    let _ = writeln!(s, "**{verdict}**\n");
    let _ = writeln!(s, "| pair | mode | verdict | first divergence |");
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    for p in pairs {
        let c = &p.comparison;
        let fd = c
            .first_divergence
            .as_ref()
            .map(|f| f.headline())
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            s,
            "| {} {} vs {} | {} | {} | {} |",
            p.name,
            c.expected.label(),
            c.candidate.label(),
            c.mode,
            c.headline(),
            fd.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        s,
        "\nLargest NMSE per row over every step and checkpoint kind:\n\n| row | A-B | A-C | B-C |\n| --- | ---: | ---: | ---: |"
    );
    for row in rows(pairs) {
        let cells: Vec<String> = pairs.iter().map(|p| nmse_cell(p, &row)).collect();
        let _ = writeln!(s, "| {} | {} |", row.label(), cells.join(" | "));
    }
    s
}

/// The JSON document: each pair's comparison as `compare --json` renders it, and the verdict.
pub fn render_json(pairs: &[Pair], verdict: &str) -> anyhow::Result<String> {
    let mut list = Vec::new();
    for p in pairs {
        let c: serde_json::Value =
            serde_json::from_str(&crate::report::json::render(&p.comparison))
                .context("rendering a pair as JSON")?;
        list.push(serde_json::json!({
            "pair": p.name,
            "expected": p.comparison.expected.label(),
            "candidate": p.comparison.candidate.label(),
            "left_out": p.left_out,
            "comparison": c,
        }));
    }
    let doc = serde_json::json!({
        "format": "llorch-diff-threeway/1",
        "producers": LETTERS.iter().map(|(l, n)| serde_json::json!({"letter": l, "producer": n})).collect::<Vec<_>>(),
        "passed": pairs.iter().all(|p| p.comparison.passed),
        "verdict": verdict,
        "pairs": list,
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// Prints the table, appends the section to the report and writes the JSON.
pub fn emit(
    pairs: &[Pair],
    verdict: &str,
    report_md: &Path,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    let table = render_terminal(pairs, verdict);
    let json_to_stdout = json == Some(Path::new("-"));
    if json_to_stdout {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    let md = render_markdown(pairs, verdict);
    let mut text = std::fs::read_to_string(report_md).unwrap_or_default();
    text.push_str(&md);
    write_atomic(report_md, text.as_bytes())
        .with_context(|| format!("writing {}", report_md.display()))?;
    if let Some(j) = json {
        let doc = render_json(pairs, verdict)?;
        if json_to_stdout {
            print!("{doc}");
        } else {
            write_atomic(j, doc.as_bytes()).with_context(|| format!("writing {}", j.display()))?;
            eprintln!("wrote {}", j.display());
        }
    }
    step_summary(&md)?;
    Ok(())
}
