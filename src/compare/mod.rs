//! The judge: reads two dump folders and decides, checkpoint by checkpoint. Knows only dumps.
//!
//! `A` (expected) is normally llama.cpp's dump, `B` (candidate) the reference or another engine.
//! Every checkpoint present on either side gets exactly one [`Verdict`]; nothing is skipped.

pub mod divergence;
pub mod metrics;
pub mod tolerance;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::checkpoint::catalogue::{CheckpointId, CheckpointName};
use crate::checkpoint::folder::{DumpFolder, FolderEntry};
use crate::checkpoint::Manifest;

pub use divergence::{FirstDivergence, Growth, GrowthPoint};
pub use metrics::{LogitMetrics, Metrics, TokenMetrics};
pub use tolerance::{Gate, Tolerances};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("tolerances: {0}")]
    Tolerances(String),
    #[error("no tolerances for mode {mode:?} (known: {known}); pick one with --mode or add [{mode}.default] to a --tolerances file")]
    UnknownMode { mode: String, known: String },
}

/// The judgement of one checkpoint. Ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    /// A gate failed, token ids differ, or a side holds NaN/inf.
    Fail,
    /// Present on one side only.
    Missing,
    /// Both sides present with different shapes.
    Shape,
    /// A file could not be read (truncated, wrong header, shape contradicting the manifest).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Missing => "MISSING",
            Verdict::Shape => "SHAPE",
            Verdict::Error => "ERROR",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checkpoint pair and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointResult {
    #[serde(skip)]
    pub id: CheckpointId,
    pub step: u32,
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    pub verdict: Verdict,
    /// Why it did not pass: the failing gates, the absent side, both shapes, or the read error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub expected_shape: Option<Vec<usize>>,
    pub candidate_shape: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<LogitMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenMetrics>,
    /// The gates this checkpoint was judged by.
    pub gate: Gate,
}

impl CheckpointResult {
    pub fn nmse(&self) -> Option<f64> {
        self.metrics.as_ref().map(|m| m.nmse)
    }

    fn new(id: &CheckpointId, gate: Gate) -> Self {
        CheckpointResult {
            step: id.step,
            name: id.name.to_string(),
            kind: id.name.kind_str().to_string(),
            layer: id.name.layer_index(),
            id: id.clone(),
            verdict: Verdict::Pass,
            reason: None,
            expected_shape: None,
            candidate_shape: None,
            metrics: None,
            logits: None,
            tokens: None,
            gate,
        }
    }
}

/// What a dump folder's manifest says about how it was produced (everything but the
/// checkpoint list).
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub producer: String,
    pub producer_detail: BTreeMap<String, String>,
    pub model_file: String,
    pub model_sha256: String,
    pub architecture: String,
    pub n_layer: u32,
    pub prompt: String,
    pub prompt_tokens: Vec<i32>,
    pub generated_tokens: Vec<i32>,
    pub kv_type: String,
    pub threads: u32,
    pub steps: u32,
}

impl From<&Manifest> for Environment {
    fn from(m: &Manifest) -> Self {
        Environment {
            producer: m.producer.clone(),
            producer_detail: m.producer_detail.clone(),
            model_file: m.model.file.clone(),
            model_sha256: m.model.sha256.clone(),
            architecture: m.model.architecture.clone(),
            n_layer: m.model.n_layer,
            prompt: m.prompt.clone(),
            prompt_tokens: m.prompt_tokens.clone(),
            generated_tokens: m.generated_tokens.clone(),
            kv_type: m.kv_type.clone(),
            threads: m.threads,
            steps: m.steps,
        }
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub dir: PathBuf,
    pub checkpoints: usize,
    /// `None` for a folder without `manifest.json`.
    pub environment: Option<Environment>,
}

impl Side {
    fn of(f: &DumpFolder) -> Self {
        Side {
            dir: f.dir.clone(),
            checkpoints: f.entries.len(),
            environment: f.manifest.as_ref().map(Environment::from),
        }
    }

    /// Producer name for headings: the manifest's, else the folder name.
    pub fn label(&self) -> String {
        match &self.environment {
            Some(e) if !e.producer.is_empty() => e.producer.clone(),
            _ => self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.dir.display().to_string()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub missing: usize,
    pub shape: usize,
    pub error: usize,
}

impl Counts {
    fn of(results: &[CheckpointResult]) -> Self {
        let mut c = Counts {
            total: results.len(),
            ..Counts::default()
        };
        for r in results {
            *match r.verdict {
                Verdict::Pass => &mut c.pass,
                Verdict::Fail => &mut c.fail,
                Verdict::Missing => &mut c.missing,
                Verdict::Shape => &mut c.shape,
                Verdict::Error => &mut c.error,
            } += 1;
        }
        c
    }

    pub fn summary(&self) -> String {
        format!(
            "{} checkpoints: {} PASS, {} FAIL, {} MISSING, {} SHAPE, {} ERROR",
            self.total, self.pass, self.fail, self.missing, self.shape, self.error
        )
    }
}

/// The whole judgement of two dump folders.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// True when every checkpoint passed and nothing in the manifests fails the run.
    pub passed: bool,
    /// The earliest non-passing checkpoint in graph order, with how the error grows after it.
    pub first_divergence: Option<FirstDivergence>,
    /// Reasons outside any one checkpoint that fail the run (e.g. different prompt tokens).
    pub run_failures: Vec<String>,
    /// Differences a reader must see first (different models, missing manifests, ...).
    pub warnings: Vec<String>,
    pub counts: Counts,
    /// Reference mode whose tolerances were used.
    pub mode: String,
    pub tolerance_sources: Vec<String>,
    pub expected: Side,
    pub candidate: Side,
    /// Every checkpoint present on either side, in graph order.
    pub results: Vec<CheckpointResult>,
}

impl Comparison {
    /// Results of one step, in graph order.
    pub fn step_results(&self, step: u32) -> impl Iterator<Item = &CheckpointResult> {
        self.results.iter().filter(move |r| r.step == step)
    }

    /// Steps present, ascending.
    pub fn steps(&self) -> Vec<u32> {
        let mut s: Vec<u32> = self.results.iter().map(|r| r.step).collect();
        s.dedup();
        s
    }

    /// One line for the top of every output.
    pub fn headline(&self) -> String {
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        format!("{verdict}: {}", self.counts.summary())
    }
}

/// The mode a candidate folder was produced in: forced, its manifest's, or the default.
pub fn candidate_mode(candidate: &DumpFolder, tol: &Tolerances) -> String {
    tol.force_mode
        .clone()
        .or_else(|| {
            candidate
                .manifest
                .as_ref()
                .and_then(|m| m.producer_detail.get("mode").cloned())
        })
        .unwrap_or_else(|| tolerance::DEFAULT_MODE.to_string())
}

/// The producer name of HF transformers' dumps (`llorch-diff hf`).
pub const TRANSFORMERS: &str = "transformers";

/// The tolerance mode of a pair: forced, else `hf-exact` for HF transformers against the
/// reference in exact mode (two f32 implementations of the same mathematics) and `hf` for HF
/// transformers against llama.cpp or the reference in ggml mode, else the candidate's mode.
pub fn pair_mode(expected: &DumpFolder, candidate: &DumpFolder, tol: &Tolerances) -> String {
    if tol.force_mode.is_none() {
        let producer = |f: &DumpFolder| f.manifest.as_ref().map(|m| m.producer.clone());
        let mode = |f: &DumpFolder| {
            f.manifest
                .as_ref()
                .and_then(|m| m.producer_detail.get("mode").cloned())
        };
        let hf = |f: &DumpFolder| producer(f).as_deref() == Some(TRANSFORMERS);
        let other = match (hf(expected), hf(candidate)) {
            (true, false) => Some(candidate),
            (false, true) => Some(expected),
            _ => None,
        };
        if let Some(other) = other {
            let m = if mode(other).as_deref() == Some("exact") {
                "hf-exact"
            } else {
                "hf"
            };
            if tol.has_mode(m) {
                return m.to_string();
            }
        }
    }
    candidate_mode(candidate, tol)
}

/// Compares two dump folders checkpoint by checkpoint (in parallel) and finds the first
/// divergence. Unreadable checkpoint files are verdicts, not errors; only a configuration that
/// cannot judge at all (an unknown mode) is an error.
pub fn compare_folders(
    expected: &DumpFolder,
    candidate: &DumpFolder,
    tol: &Tolerances,
) -> Result<Comparison, CompareError> {
    let mode = pair_mode(expected, candidate, tol);
    if !tol.has_mode(&mode) {
        // Reports the error with the list of known modes.
        tol.gate(&mode, "default")?;
    }

    let mut pairs: BTreeMap<&CheckpointId, (Option<&FolderEntry>, Option<&FolderEntry>)> =
        BTreeMap::new();
    for e in &expected.entries {
        pairs.entry(&e.id).or_default().0 = Some(e);
    }
    for e in &candidate.entries {
        pairs.entry(&e.id).or_default().1 = Some(e);
    }
    let mut gates: BTreeMap<String, Gate> = BTreeMap::new();
    for id in pairs.keys() {
        let kind = id.name.kind_str();
        if !gates.contains_key(kind) {
            gates.insert(kind.to_string(), tol.gate(&mode, kind)?);
        }
    }
    let pairs: Vec<_> = pairs.into_iter().collect();
    let results: Vec<CheckpointResult> = pairs
        .par_iter()
        .map(|(id, (a, b))| {
            judge_pair(
                id,
                *a,
                *b,
                expected,
                candidate,
                gates[id.name.kind_str()].clone(),
            )
        })
        .collect();

    let (warnings, run_failures) = compare_manifests(expected, candidate, &mode);
    let counts = Counts::of(&results);
    let first_divergence = divergence::find(&results);
    Ok(Comparison {
        passed: run_failures.is_empty() && counts.pass == counts.total,
        first_divergence,
        run_failures,
        warnings,
        counts,
        mode,
        tolerance_sources: tol.sources.clone(),
        expected: Side::of(expected),
        candidate: Side::of(candidate),
        results,
    })
}

fn judge_pair(
    id: &CheckpointId,
    a: Option<&FolderEntry>,
    b: Option<&FolderEntry>,
    fa: &DumpFolder,
    fb: &DumpFolder,
    gate: Gate,
) -> CheckpointResult {
    let mut r = CheckpointResult::new(id, gate);
    r.expected_shape = a.and_then(|e| e.shape.clone());
    r.candidate_shape = b.and_then(|e| e.shape.clone());
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (a, _) => {
            r.verdict = Verdict::Missing;
            r.reason = Some(
                if a.is_some() {
                    "missing from the candidate (B)"
                } else {
                    "missing from the expected (A)"
                }
                .into(),
            );
            return r;
        }
    };
    // Both manifests know the shapes: no need to read files that cannot match.
    if let (Some(sa), Some(sb)) = (&a.shape, &b.shape) {
        if sa != sb {
            r.verdict = Verdict::Shape;
            r.reason = Some(format!("shape {sa:?} (A) vs {sb:?} (B)"));
            return r;
        }
    }
    let ta = fa.load(a);
    let tb = fb.load(b);
    let (ta, tb) = match (ta, tb) {
        (Ok(ta), Ok(tb)) => (ta, tb),
        (ta, tb) => {
            let mut why = Vec::new();
            if let Err(e) = &ta {
                why.push(format!("expected (A): {e}"));
            }
            if let Err(e) = &tb {
                why.push(format!("candidate (B): {e}"));
            }
            r.verdict = Verdict::Error;
            r.reason = Some(why.join("; "));
            return r;
        }
    };
    r.expected_shape = Some(ta.shape.clone());
    r.candidate_shape = Some(tb.shape.clone());
    if ta.shape != tb.shape {
        r.verdict = Verdict::Shape;
        r.reason = Some(format!("shape {:?} (A) vs {:?} (B)", ta.shape, tb.shape));
        return r;
    }

    let m = metrics::compute(&ta.data, &tb.data, &ta.shape);
    let mut failures = Vec::new();
    if let Some(nf) = &m.non_finite {
        failures.push(nf.describe());
    }
    match &id.name {
        CheckpointName::Tokens => {
            let t = metrics::tokens(&ta.data, &tb.data);
            if let Some((i, x, y)) = t.first_mismatch {
                failures.push(format!(
                    "{} token id(s) differ, first at {i}: {x} (A) vs {y} (B)",
                    t.mismatches
                ));
            }
            r.tokens = Some(t);
        }
        name => {
            failures.extend(gate_failures(&m, &r.gate));
            if *name == CheckpointName::ResultOutput && m.non_finite.is_none() {
                let n_vocab = ta.shape.last().copied().unwrap_or(ta.data.len());
                let l = metrics::logits(&ta.data, &tb.data, n_vocab);
                failures.extend(logit_failures(&l, &r.gate));
                r.logits = Some(l);
            }
        }
    }
    r.metrics = Some(m);
    if !failures.is_empty() {
        r.verdict = Verdict::Fail;
        r.reason = Some(failures.join("; "));
    }
    r
}

/// `v <= max`, false for NaN so that a NaN metric never passes.
fn within_max(v: f64, max: f64) -> bool {
    matches!(
        v.partial_cmp(&max),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

/// `v >= min`, false for NaN.
fn within_min(v: f64, min: f64) -> bool {
    matches!(
        v.partial_cmp(&min),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// Messages for every element-wise gate that does not hold. NaN metrics fail every gate.
pub fn gate_failures(m: &Metrics, g: &Gate) -> Vec<String> {
    let mut f = Vec::new();
    let mut above = |name: &str, v: f64, tol: Option<f64>| {
        if let Some(t) = tol {
            if !within_max(v, t) {
                f.push(format!("{name} {v:.3e} > {t:.0e}"));
            }
        }
    };
    above("nmse", m.nmse, g.nmse);
    above("max_abs", m.max_abs, g.max_abs);
    above("max_rel", m.max_rel, g.max_rel);
    if let Some(t) = g.cosine {
        if !within_min(m.cosine, t) {
            f.push(format!("cosine {:.8} < {t}", m.cosine));
        }
    }
    f
}

/// Messages for the logit gates that do not hold.
pub fn logit_failures(l: &LogitMetrics, g: &Gate) -> Vec<String> {
    let mut f = Vec::new();
    if let Some(t) = g.kl {
        if !within_max(l.max_kl, t) {
            let at = l
                .worst_row()
                .map(|i| format!(" (token {i})"))
                .unwrap_or_default();
            f.push(format!("KL {:.3e} > {t:.0e}{at}", l.max_kl));
        }
    }
    if let Some(t) = g.top1 {
        if !within_min(l.top1_fraction(), t) {
            let first = l
                .rows
                .iter()
                .position(|r| r.top1_expected != r.top1_candidate);
            let at = first
                .map(|i| {
                    format!(
                        ", first at token {i}: {} (A) vs {} (B)",
                        l.rows[i].top1_expected, l.rows[i].top1_candidate
                    )
                })
                .unwrap_or_default();
            f.push(format!(
                "top-1 agrees on {}/{} tokens < {:.0}%{at}",
                l.top1_agree,
                l.rows.len(),
                t * 100.0
            ));
        }
    }
    f
}

fn short_tokens(t: &[i32]) -> String {
    const MAX: usize = 16;
    let shown: Vec<String> = t.iter().take(MAX).map(|x| x.to_string()).collect();
    let more = if t.len() > MAX {
        format!(", ... ({} total)", t.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(", "))
}

fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Manifest-level checks: `(warnings, run failures)`.
fn compare_manifests(
    expected: &DumpFolder,
    candidate: &DumpFolder,
    mode: &str,
) -> (Vec<String>, Vec<String>) {
    let mut warn = Vec::new();
    let mut fail = Vec::new();
    let (ma, mb) = match (&expected.manifest, &candidate.manifest) {
        (Some(a), Some(b)) => (a, b),
        (a, b) => {
            for (m, side) in [
                (a.is_none(), "expected (A)"),
                (b.is_none(), "candidate (B)"),
            ] {
                if m {
                    warn.push(format!("{side} has no manifest.json: prompt, model and environment unknown, shapes taken from the files"));
                }
            }
            return (warn, fail);
        }
    };
    match (ma.prompt_tokens.is_empty(), mb.prompt_tokens.is_empty()) {
        (false, false) if ma.prompt_tokens != mb.prompt_tokens => fail.push(format!(
            "prompt tokens differ (first at position {}): {} (A) vs {} (B); the two runs did not evaluate the same input",
            first_difference(&ma.prompt_tokens, &mb.prompt_tokens),
            short_tokens(&ma.prompt_tokens),
            short_tokens(&mb.prompt_tokens)
        )),
        (true, false) => warn.push("expected (A) manifest records no prompt tokens".into()),
        (false, true) => warn.push("candidate (B) manifest records no prompt tokens".into()),
        _ => {}
    }
    if !ma.model.sha256.is_empty()
        && !mb.model.sha256.is_empty()
        && !ma.model.sha256.eq_ignore_ascii_case(&mb.model.sha256)
    {
        warn.push(format!(
            "models differ: {} sha256 {} (A) vs {} sha256 {} (B)",
            ma.model.file, ma.model.sha256, mb.model.file, mb.model.sha256
        ));
    }
    if ma.prompt != mb.prompt && !ma.prompt.is_empty() && !mb.prompt.is_empty() {
        warn.push(format!(
            "prompt text differs: {:?} (A) vs {:?} (B)",
            ma.prompt, mb.prompt
        ));
    }
    if ma.generated_tokens != mb.generated_tokens {
        let i = first_difference(&ma.generated_tokens, &mb.generated_tokens);
        let at = |g: &[i32]| {
            g.get(i)
                .map(|t| t.to_string())
                .unwrap_or_else(|| "none".into())
        };
        warn.push(format!(
            "generated tokens diverge at step {i}: {} (A) vs {} (B)",
            at(&ma.generated_tokens),
            at(&mb.generated_tokens)
        ));
    }
    if !ma.kv_type.is_empty() && !mb.kv_type.is_empty() && ma.kv_type != mb.kv_type {
        warn.push(format!(
            "KV cache types differ: {} (A) vs {} (B)",
            ma.kv_type, mb.kv_type
        ));
    }
    if ma.steps != mb.steps {
        warn.push(format!(
            "step counts differ: {} (A) vs {} (B)",
            ma.steps, mb.steps
        ));
    }
    // Both producers record the CPU backend configuration (which kernels llama.cpp ran, which
    // the reference emulated); judging one against the other is only meaningful when they agree.
    let cpu = |m: &Manifest| crate::cpu_config::CpuConfig::from_record(&m.producer_detail);
    if let (Some(a), Some(b)) = (cpu(ma), cpu(mb)) {
        if a != b {
            warn.push(format!(
                "CPU backend configurations differ: {} (A) vs {} (B)",
                a.describe(),
                b.describe()
            ));
        }
    }
    // ggml mode emulates the kernels of an x86-64-v3 build; another ISA (LLORCH_MARCH) makes
    // llama.cpp take other kernels (AVX512 tinyBLAS, VNNI tiles, other repacked layouts).
    let ggml_mode = |m: &Manifest| m.producer_detail.get("mode").is_some_and(|v| v == "ggml");
    for (side, m, other) in [("A", ma, mb), ("B", mb, ma)] {
        if let Some(isa) = m.producer_detail.get("isa") {
            if isa != crate::reference::EMULATED_ISA && ggml_mode(other) {
                warn.push(format!(
                    "{side} is llama.cpp built for {isa}; ggml mode reproduces the kernels of a {} \
                     build, so differences in summation order are expected",
                    crate::reference::EMULATED_ISA
                ));
            }
        }
    }
    for (side, m) in [("A", ma), ("B", mb)] {
        if let Some(what) = m.producer_detail.get("not_emulated") {
            warn.push(format!(
                "{side} ran kernels it does not reproduce bit for bit: {what}; differences \
                 there may be summation order, not a bug"
            ));
        }
    }
    if let Some(m) = ma.producer_detail.get("mode") {
        if m != mode && !mode.starts_with("hf") {
            warn.push(format!("expected (A) was produced in mode {m:?}; tolerances are those of the candidate's mode {mode:?}"));
        }
    }
    (warn, fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(nmse: f64, cosine: f64) -> Metrics {
        let mut m = metrics::compute(&[1.0, 2.0], &[1.0, 2.0], &[2]);
        m.nmse = nmse;
        m.cosine = cosine;
        m
    }

    #[test]
    fn gates_hold_at_the_bound_and_nan_never_passes() {
        let g = Gate {
            nmse: Some(1e-6),
            cosine: Some(0.999),
            ..Gate::default()
        };
        assert!(gate_failures(&metrics(1e-6, 0.999), &g).is_empty());
        assert_eq!(
            gate_failures(&metrics(2e-6, 0.999), &g),
            ["nmse 2.000e-6 > 1e-6"]
        );
        assert_eq!(gate_failures(&metrics(f64::NAN, f64::NAN), &g).len(), 2);
        assert!(gate_failures(&metrics(f64::NAN, f64::NAN), &Gate::default()).is_empty());
    }
}
