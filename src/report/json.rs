//! The JSON report: the whole [`Comparison`] (first divergence near the top), with a format tag.
//! Non-finite numbers are written as `null`.

use serde::Serialize;

use crate::compare::Comparison;

/// Tag of this JSON layout; bumped when a field changes meaning.
pub const FORMAT: &str = "llorch-diff-comparison/1";

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    #[serde(flatten)]
    comparison: &'a Comparison,
}

pub fn render(c: &Comparison) -> String {
    let mut s = serde_json::to_string_pretty(&Document {
        format: FORMAT,
        comparison: c,
    })
    .expect("a comparison serialises");
    s.push('\n');
    s
}
