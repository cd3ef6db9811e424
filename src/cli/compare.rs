//! `llorch-diff compare A B`: judge dump folder B (candidate) against A (expected).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Outcome;
use crate::checkpoint::format::write_atomic;
use crate::checkpoint::DumpFolder;
use crate::compare::{self, Comparison, Gate, Tolerances};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The expected dump folder (normally llama.cpp's).
    pub expected: PathBuf,
    /// The candidate dump folder (the reference or another engine).
    pub candidate: PathBuf,
    /// Show every checkpoint instead of one row per layer.
    #[arg(long)]
    pub verbose: bool,
    /// A TOML file laid over the built-in tolerances, key by key, or the name of a built-in
    /// set (ggml, exact, independent, independent-exact, independent-ggml) to judge with.
    #[arg(long, value_name = "FILE.toml|SET")]
    pub tolerances: Option<PathBuf>,
    /// Maximum NMSE for every checkpoint (overrides the tolerance files).
    #[arg(long, value_name = "X")]
    pub nmse: Option<f64>,
    /// Maximum absolute difference for every checkpoint.
    #[arg(long, value_name = "X")]
    pub max_abs: Option<f64>,
    /// Judge with this mode's tolerances instead of the candidate manifest's mode.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Write a Markdown report here, and its heatmap beside it (same name, .svg).
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
    /// Write the comparison as JSON (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report (one testcase per checkpoint).
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// Judge only the checkpoints the candidate dumped (an engine that taps some layers' outputs
    /// and the logits); the expected folder's others are left out, and counted on stderr.
    #[arg(long)]
    pub only_dumped: bool,
}

/// Built-in tolerances, then the file, then the flags.
pub fn tolerances(
    file: Option<&Path>,
    nmse: Option<f64>,
    max_abs: Option<f64>,
    mode: Option<String>,
) -> anyhow::Result<Tolerances> {
    let mut tol = Tolerances::builtin();
    match file {
        // A built-in set's name, unless a file of that name exists.
        Some(f) if !f.exists() && f.to_str().is_some_and(|n| tol.has_mode(n)) => {
            tol.force_mode = f.to_str().map(String::from);
        }
        Some(f) => tol.merge_file(f)?,
        None => {}
    }
    tol.set_overrides(Gate {
        nmse,
        max_abs,
        ..Gate::default()
    })?;
    if mode.is_some() {
        tol.force_mode = mode;
    }
    Ok(tol)
}

/// Writes the requested report files; the terminal table goes to stdout unless JSON does.
pub fn emit(
    c: &Comparison,
    title: &str,
    verbose: bool,
    report_md: Option<&Path>,
    json: Option<&Path>,
    junit: Option<&Path>,
) -> anyhow::Result<()> {
    let json_to_stdout = json == Some(Path::new("-"));
    let table = report::terminal::render(c, verbose);
    if json_to_stdout {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(md) = report_md {
        let written = report::markdown::write(c, md)
            .with_context(|| format!("writing the report {}", md.display()))?;
        for p in written {
            eprintln!("wrote {}", p.display());
        }
    }
    if let Some(j) = json {
        let text = report::json::render(c);
        if json_to_stdout {
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("writing JSON to stdout")?;
        } else {
            write_atomic(j, text.as_bytes()).with_context(|| format!("writing {}", j.display()))?;
            eprintln!("wrote {}", j.display());
        }
    }
    step_summary(&report::markdown::summary(c, title))?;
    if let Some(x) = junit {
        let xml = report::junit::render(c).context("rendering the JUnit report")?;
        write_atomic(x, xml.as_bytes()).with_context(|| format!("writing {}", x.display()))?;
        eprintln!("wrote {}", x.display());
    }
    Ok(())
}

/// Appends `markdown` to the GitHub Actions job summary when `$GITHUB_STEP_SUMMARY` is set.
pub fn step_summary(markdown: &str) -> anyhow::Result<()> {
    if let Some(p) = report::append_step_summary(markdown)
        .with_context(|| format!("appending to the job summary ${}", report::STEP_SUMMARY_ENV))?
    {
        eprintln!("appended the verdict to {}", p.display());
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let tol = tolerances(
        args.tolerances.as_deref(),
        args.nmse,
        args.max_abs,
        args.mode.clone(),
    )?;
    let a = DumpFolder::open(&args.expected)
        .with_context(|| format!("opening the expected folder {}", args.expected.display()))?;
    let b = DumpFolder::open(&args.candidate)
        .with_context(|| format!("opening the candidate folder {}", args.candidate.display()))?;
    let mut a = a;
    if args.only_dumped {
        let dumped: std::collections::HashSet<_> = b.entries.iter().map(|e| &e.id).collect();
        let before = a.entries.len();
        a.entries.retain(|e| dumped.contains(&e.id));
        anyhow::ensure!(
            !a.entries.is_empty(),
            "--only-dumped: the candidate {} dumps none of the expected folder's checkpoints",
            args.candidate.display()
        );
        eprintln!(
            "judging the {} checkpoints the candidate dumps; {} of the expected folder's are left out",
            a.entries.len(),
            before - a.entries.len()
        );
    }
    let bar = super::progress::spinner("comparing");
    let c = compare::compare_folders(&a, &b, &tol)?;
    super::progress::done(bar);
    let title = format!(
        "llorch-diff compare {} {}",
        args.expected.display(),
        args.candidate.display()
    );
    emit(
        &c,
        &title,
        args.verbose,
        args.report.as_deref(),
        args.json.as_deref(),
        args.junit.as_deref(),
    )?;
    Ok(if c.passed {
        Outcome::Pass
    } else {
        Outcome::Fail
    })
}
