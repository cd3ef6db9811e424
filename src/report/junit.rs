//! JUnit XML: one testsuite per step, one testcase per checkpoint, plus a `run` suite that
//! carries the first divergence, the warnings and the manifest checks so CI shows them first.
//! FAIL, MISSING and SHAPE are `<failure>`s; ERROR (an unreadable file) is an `<error>`.
//! Written with `quick-junit`, which escapes the text and counts the tests.

use std::fmt::Write;

use quick_junit::{
    NonSuccessKind, Property, Report, SerializeError, TestCase, TestCaseStatus, TestSuite,
};

use super::{detail, preamble, sci};
use crate::compare::{CheckpointResult, Comparison, Verdict};

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

/// A testcase that did not pass: `kind` (failure or error), its verdict as the type, the
/// one-line `message` and the full `text`.
fn non_success(kind: NonSuccessKind, ty: &str, message: &str, text: &str) -> TestCaseStatus {
    let mut st = TestCaseStatus::non_success(kind);
    st.set_type(ty).set_message(message).set_description(text);
    st
}

pub fn render(c: &Comparison) -> Result<String, SerializeError> {
    let mut report = Report::new("llorch-diff compare");

    let mut run = TestSuite::new("run");
    let mut prop = |name: &str, value: &str| {
        run.add_property(Property::new(name, value));
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
    let status = if c.run_failures.is_empty() {
        TestCaseStatus::success()
    } else {
        let msg = c.run_failures.join("; ");
        non_success(NonSuccessKind::Failure, "RUN", &msg, &msg)
    };
    let mut manifests = TestCase::new("manifests", status);
    manifests.set_classname("llorch-diff.run");
    run.add_test_case(manifests);
    run.set_system_out(preamble(c).join("\n"));
    report.add_test_suite(run);

    for step in c.steps() {
        let mut suite = TestSuite::new(format!("step{step}"));
        for r in c.step_results(step) {
            let status = match r.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Error => non_success(
                    NonSuccessKind::Error,
                    &r.verdict.to_string(),
                    &detail(r),
                    &body(r),
                ),
                _ => non_success(
                    NonSuccessKind::Failure,
                    &r.verdict.to_string(),
                    &detail(r),
                    &body(r),
                ),
            };
            let mut case = TestCase::new(r.name.as_str(), status);
            case.set_classname(format!("llorch-diff.step{step}"));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}
