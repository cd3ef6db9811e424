//! JUnit XML: one testsuite per step, one testcase per checkpoint, plus a `run` suite that
//! carries the first divergence, the warnings and the manifest checks so CI shows them first.
//! FAIL, MISSING and SHAPE are `<failure>`s; ERROR (an unreadable file) is an `<error>`.

use std::fmt::Write;

use super::{detail, preamble, sci};
use crate::compare::{CheckpointResult, Comparison, Verdict};

/// Escapes text for XML attributes and content, dropping characters XML 1.0 cannot hold.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

fn body(r: &CheckpointResult) -> String {
    let mut s = format!(
        "step {} {}: {}\n",
        r.step,
        r.name,
        r.reason.as_deref().unwrap_or_default()
    );
    if let Some(m) = &r.metrics {
        let _ = writeln!(
            s,
            "nmse {} cosine {} max_abs {} mean_abs {} max_rel {} worst at {:?}: {} (A) vs {} (B)",
            sci(m.nmse),
            m.cosine,
            sci(m.max_abs),
            sci(m.mean_abs),
            sci(m.max_rel),
            m.worst_index,
            m.worst_expected,
            m.worst_candidate
        );
    }
    let _ = writeln!(
        s,
        "shape {} (A) vs {} (B)",
        super::shape(&r.expected_shape),
        super::shape(&r.candidate_shape)
    );
    s
}

pub fn render(c: &Comparison) -> String {
    let failures = c
        .results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Fail | Verdict::Missing | Verdict::Shape))
        .count()
        + usize::from(!c.run_failures.is_empty());
    let errors = c.counts.error;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        r#"<testsuites name="llorch-diff compare" tests="{}" failures="{failures}" errors="{errors}">"#,
        c.results.len() + 1
    );

    let run_fail = usize::from(!c.run_failures.is_empty());
    let _ = writeln!(
        x,
        r#"  <testsuite name="run" tests="1" failures="{run_fail}" errors="0">"#
    );
    let _ = writeln!(x, "    <properties>");
    let mut prop = |name: &str, value: &str| {
        let _ = writeln!(
            x,
            r#"      <property name="{}" value="{}"/>"#,
            esc(name),
            esc(value)
        );
    };
    prop(
        "first_divergence",
        &c.first_divergence
            .as_ref()
            .map(|d| d.headline())
            .unwrap_or_else(|| "none".into()),
    );
    if let Some(g) = c.first_divergence.as_ref().and_then(|d| d.growth.as_ref()) {
        prop(
            "growth",
            &format!("{} NMSE by layer, step {}: {}", g.kind, g.step, g.summary),
        );
    }
    prop(
        "expected",
        &format!("{} {}", c.expected.label(), c.expected.dir.display()),
    );
    prop(
        "candidate",
        &format!("{} {}", c.candidate.label(), c.candidate.dir.display()),
    );
    prop("mode", &c.mode);
    for w in &c.warnings {
        prop("warning", w);
    }
    let _ = writeln!(x, "    </properties>");
    let _ = write!(
        x,
        r#"    <testcase classname="llorch-diff.run" name="manifests""#
    );
    if c.run_failures.is_empty() {
        let _ = writeln!(x, "/>");
    } else {
        let msg = c.run_failures.join("; ");
        let _ = writeln!(
            x,
            ">\n      <failure type=\"RUN\" message=\"{}\">{}</failure>\n    </testcase>",
            esc(&msg),
            esc(&msg)
        );
    }
    let _ = writeln!(
        x,
        "    <system-out>{}</system-out>",
        esc(&preamble(c).join("\n"))
    );
    let _ = writeln!(x, "  </testsuite>");

    for step in c.steps() {
        let rs: Vec<&CheckpointResult> = c.step_results(step).collect();
        let f = rs
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Fail | Verdict::Missing | Verdict::Shape))
            .count();
        let e = rs.iter().filter(|r| r.verdict == Verdict::Error).count();
        let _ = writeln!(
            x,
            r#"  <testsuite name="step{step}" tests="{}" failures="{f}" errors="{e}">"#,
            rs.len()
        );
        for r in rs {
            let _ = write!(
                x,
                r#"    <testcase classname="llorch-diff.step{step}" name="{}""#,
                esc(&r.name)
            );
            let tag = match r.verdict {
                Verdict::Pass => {
                    let _ = writeln!(x, "/>");
                    continue;
                }
                Verdict::Error => "error",
                _ => "failure",
            };
            let _ = writeln!(
                x,
                ">\n      <{tag} type=\"{}\" message=\"{}\">{}</{tag}>\n    </testcase>",
                r.verdict,
                esc(&detail(r)),
                esc(&body(r))
            );
        }
        let _ = writeln!(x, "  </testsuite>");
    }
    x.push_str("</testsuites>\n");
    x
}
