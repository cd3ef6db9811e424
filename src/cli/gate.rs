//! `llorch-diff gate --baseline checkpoints/NAME [--update]` (or `gate checkpoints/*`): the
//! regression gate, over one baseline or several. A baseline
//! folder holds `gate.toml` (what to run) and `llama.cpp/` (llama.cpp's stored dumps of that
//! run). The gate runs both producers fresh and judges each against the stored dumps: llama.cpp
//! must reproduce them exactly (its build is pinned: same pin, flags and ISA give the same
//! bits), the reference within the tolerances of its mode. Only `--update` rewrites the stored
//! dumps.

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::compare::{step_summary, tolerances};
use super::make_model::parse_quant;
use super::pipeline::{
    produce, ModelSource, Staged, DEFAULT_QUANT, DEFAULT_SEED, LLAMA_CPP, REFERENCE,
};
use super::reference::Config;
use super::Outcome;
use crate::checkpoint::format::write_atomic;
use crate::checkpoint::manifest::FILE_NAME;
use crate::checkpoint::{DumpFolder, KvType, Manifest};
use crate::compare::{compare_folders, Comparison, Tolerances};
use crate::gguf::presets::Preset;
use crate::llamacpp::set_verbose;
use crate::reference::{Fault, Mode};
use crate::report;

/// The file in a baseline folder that says what to run.
pub const SPEC_FILE: &str = "gate.toml";

const AFTER_HELP: &str = "\
A baseline folder holds gate.toml (what to run) and llama.cpp/ (llama.cpp's stored dumps of that
run, with their manifest). The gate runs llama.cpp and the reference fresh on the model and
prompt gate.toml describes (the reference evaluates the stored prompt token ids) and judges:
  (a) fresh llama.cpp against the stored dumps: must be identical (max|d| = 0);
  (b) the fresh reference against the stored dumps: the tolerances of its mode.
Exit 0 when both pass, 1 when either fails (the summary names the side that moved), 2 when the
baseline is missing or incomplete. The fresh dumps stay in --out for inspection.

Several baselines (`gate checkpoints/*`, or --baseline repeated) are judged one after another;
a summary line per baseline and a total follow, and the exit code is the worst one (2 if any
baseline could not be judged, else 1 if any failed). With --out DIR, each baseline's fresh
dumps go to DIR/NAME. When $GITHUB_STEP_SUMMARY names a file, the Markdown verdict of each
baseline is appended to it.

gate.toml:
  preset = \"tiny-llama\"   # or: model = \"path/to.gguf\" (relative to the baseline folder)
  quant = \"q8_0\"          # preset only
  seed = 1                # preset only
  prompt = \"Hi there\"
  steps = 2
  kv_type = \"f32\"
  mode = \"ggml\"           # the reference's numeric mode

Only --update rewrites the stored dumps (from a fresh llama.cpp run). To create a baseline, name
a folder without gate.toml and describe the run:
  llorch-diff gate --baseline checkpoints/NAME --update --preset tiny-gpt2 --quant q8_0 \\
      --seed 1 --prompt \"Hello world\" --steps 2
which writes gate.toml and llama.cpp/ (unset flags: quant q8_0, seed 1, prompt \"Hello\", 2 steps,
kv_type f32, mode ggml). To change a baseline, edit its gate.toml, then run --update.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Baseline folders (gate.toml and the stored llama.cpp/ dumps), e.g. checkpoints/*.
    #[arg(value_name = "BASELINE")]
    pub baselines: Vec<PathBuf>,
    /// A baseline folder; may be repeated (the same as naming it without the flag).
    #[arg(long, value_name = "DIR")]
    pub baseline: Vec<PathBuf>,
    /// Rewrite the stored dumps from a fresh llama.cpp run (creating the baseline when DIR has
    /// no gate.toml and the run is described with the flags below).
    #[arg(long)]
    pub update: bool,
    /// Work folder for the fresh dumps (and a preset's model); replaced as a whole
    /// [default: out/gate/NAME; with several baselines, DIR/NAME for each].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Show every checkpoint instead of one row per layer.
    #[arg(long)]
    pub verbose: bool,
    /// A TOML file laid over the built-in tolerances for the reference side, key by key.
    #[arg(long, value_name = "FILE.toml")]
    pub tolerances: Option<PathBuf>,
    /// CPU threads (default: 1 for llama.cpp, one per core for the reference).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Inject a deliberate fault into the reference (validation of the validator).
    #[arg(long, value_enum, hide = true, value_name = "FAULT")]
    pub inject_fault: Option<Fault>,
    #[command(flatten)]
    pub new: NewBaseline,
}

/// Describes the run of a new baseline (with --update, when DIR has no gate.toml).
#[derive(Debug, Default, clap::Args)]
#[command(next_help_heading = "New baseline (with --update, when DIR has no gate.toml yet)")]
pub struct NewBaseline {
    /// A preset model (tiny-llama, tiny-gpt2, tiny-qwen2, tiny-qwen3, tiny-gemma3,
    /// llama2-7b-shape).
    #[arg(long, conflicts_with = "model")]
    pub preset: Option<String>,
    /// A GGUF model file (recorded relative to the baseline folder).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Weight type of the preset [default: q8_0].
    #[arg(long, value_name = "TYPE")]
    pub quant: Option<String>,
    /// Seed of the preset [default: 1].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Prompt text [default: Hello].
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Greedy decode steps after the prompt [default: 2].
    #[arg(long, value_name = "N")]
    pub steps: Option<u32>,
    /// KV cache type [default: f32].
    #[arg(long, value_enum)]
    pub kv_type: Option<KvType>,
    /// The reference's numeric mode [default: ggml].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
}

impl NewBaseline {
    fn given(&self) -> bool {
        self.preset.is_some()
            || self.model.is_some()
            || self.quant.is_some()
            || self.seed.is_some()
            || self.prompt.is_some()
            || self.steps.is_some()
            || self.kv_type.is_some()
            || self.mode.is_some()
    }
}

/// gate.toml: read and written as is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<String>,
    /// Relative to the baseline folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    prompt: String,
    steps: u32,
    kv_type: Option<KvType>,
    mode: Option<String>,
}

/// What a baseline runs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub source: ModelSource,
    pub prompt: String,
    pub steps: u32,
    pub kv_type: KvType,
    pub mode: Mode,
    /// As gate.toml records it.
    file: SpecFile,
}

impl Spec {
    fn read(dir: &Path) -> anyhow::Result<Spec> {
        let path = dir.join(SPEC_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let f: SpecFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: {}", path.display(), e.message().replace('\n', " "))
        })?;
        Spec::new(f, dir).with_context(|| path.display().to_string())
    }

    /// A new baseline's spec from the flags, with every default written out.
    fn from_flags(n: &NewBaseline, dir: &Path) -> anyhow::Result<Spec> {
        anyhow::ensure!(
            n.preset.is_some() || n.model.is_some(),
            "{} has no {SPEC_FILE}: describe the new baseline with --preset NAME or --model FILE",
            dir.display()
        );
        let preset = n.preset.is_some();
        let f = SpecFile {
            preset: n.preset.clone(),
            model: n
                .model
                .as_deref()
                .map(|m| relative_path(m, dir))
                .transpose()?,
            quant: n
                .quant
                .clone()
                .or_else(|| preset.then(|| DEFAULT_QUANT.name().to_ascii_lowercase())),
            seed: n.seed.or(preset.then_some(DEFAULT_SEED)),
            prompt: n.prompt.clone().unwrap_or_else(|| "Hello".into()),
            steps: n.steps.unwrap_or(2),
            kv_type: Some(n.kv_type.unwrap_or(KvType::F32)),
            mode: Some(n.mode.unwrap_or(Mode::Ggml).as_str().to_string()),
        };
        Spec::new(f, dir)
    }

    fn new(f: SpecFile, dir: &Path) -> anyhow::Result<Spec> {
        let mode = match &f.mode {
            None => Mode::Ggml,
            Some(m) => clap::ValueEnum::from_str(m, true)
                .map_err(|_| anyhow::anyhow!("mode {m:?} is not a reference mode (exact, ggml)"))?,
        };
        let source = match (&f.preset, &f.model) {
            (Some(p), None) => ModelSource::Preset {
                preset: Preset::parse(p)?,
                quant: f
                    .quant
                    .as_deref()
                    .map(parse_quant)
                    .transpose()?
                    .unwrap_or(DEFAULT_QUANT),
                seed: f.seed.unwrap_or(DEFAULT_SEED),
            },
            (None, Some(m)) => {
                anyhow::ensure!(
                    f.quant.is_none() && f.seed.is_none(),
                    "quant and seed describe a preset, not the model file {}",
                    m.display()
                );
                ModelSource::File(dir.join(m))
            }
            _ => anyhow::bail!("name exactly one of preset or model"),
        };
        Ok(Spec {
            source,
            prompt: f.prompt.clone(),
            steps: f.steps,
            kv_type: f.kv_type.unwrap_or(KvType::F32),
            mode,
            file: f,
        })
    }

    fn to_toml(&self) -> anyhow::Result<String> {
        Ok(format!(
            "# A llorch-diff gate baseline: the run `llorch-diff gate --baseline <this folder>`\n\
             # repeats and judges against the stored dumps in llama.cpp/ (see `gate --help`).\n\
             # After editing, `gate --update` stores the new run.\n{}",
            toml::to_string(&self.file).context("writing gate.toml")?
        ))
    }

    /// Where the stored dumps' manifest records another run than this spec describes.
    fn disagreements(&self, m: &Manifest) -> Vec<String> {
        let mut d = Vec::new();
        if m.producer != "llama.cpp" {
            d.push(format!(
                "the stored producer is {:?}, not llama.cpp",
                m.producer
            ));
        }
        let mut differ = |what: &str, spec: String, stored: String| {
            if spec != stored {
                d.push(format!("{what}: {SPEC_FILE} {spec}, stored {stored}"));
            }
        };
        differ(
            "model",
            format!("{:?}", self.source.file_name()),
            format!("{:?}", m.model.file),
        );
        differ(
            "prompt",
            format!("{:?}", self.prompt),
            format!("{:?}", m.prompt),
        );
        differ("steps", self.steps.to_string(), m.steps.to_string());
        differ(
            "kv_type",
            self.kv_type.as_str().to_string(),
            m.kv_type.clone(),
        );
        d
    }
}

/// `path` as seen from the folder `base` (which need not exist yet), symbolic links resolved.
fn relative_path(path: &Path, base: &Path) -> anyhow::Result<PathBuf> {
    /// Components of `p` made absolute: its longest existing ancestor canonicalized, the rest
    /// resolved lexically.
    fn resolved(p: &Path) -> anyhow::Result<Vec<String>> {
        let abs = std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
        let existing = abs
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"));
        let rest = abs.strip_prefix(existing).unwrap_or(Path::new(""));
        let root = fs::canonicalize(existing)
            .with_context(|| format!("resolving {}", existing.display()))?;
        let mut v: Vec<String> = Vec::new();
        for c in root.components().chain(rest.components()) {
            match c {
                Component::ParentDir => {
                    v.pop();
                }
                Component::Normal(s) => v.push(s.to_string_lossy().into_owned()),
                _ => {}
            }
        }
        Ok(v)
    }
    let (p, b) = (resolved(path)?, resolved(base)?);
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut r = PathBuf::new();
    for _ in common..b.len() {
        r.push("..");
    }
    for c in &p[common..] {
        r.push(c);
    }
    Ok(r)
}

/// Tolerances under which llama.cpp must reproduce its stored dumps: identical values.
fn identical() -> Tolerances {
    let mut t = Tolerances::builtin();
    t.merge_str(
        "[identical.default]\nmax_abs = 0.0\n",
        "gate: llama.cpp against its stored dumps, max|d| = 0",
    )
    .expect("a valid tolerance table");
    t.sources = vec!["gate: llama.cpp against its stored dumps, max|d| = 0".into()];
    t.force_mode = Some("identical".into());
    t
}

/// Replaces `dir/llama.cpp` with a copy of `fresh`, staged beside it and renamed into place.
fn store(fresh: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let target = dir.join(LLAMA_CPP);
    if target.exists()
        && !target.join(FILE_NAME).is_file()
        && fs::read_dir(&target).map(|mut d| d.next().is_some())?
    {
        anyhow::bail!(
            "{} is not a dump folder (no {FILE_NAME}); remove it by hand to store a new one",
            target.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = crate::staging::staging_path(dir, LLAMA_CPP);
    crate::staging::register(&staging);
    let result = (|| -> anyhow::Result<()> {
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        copy_tree(fresh, &staging)?;
        if target.exists() {
            fs::remove_dir_all(&target)?;
        }
        fs::rename(&staging, &target)?;
        Ok(())
    })();
    crate::staging::unregister(&staging);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e.context(format!("storing {}", target.display())));
    }
    Ok(target)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

/// One comparison's section of the output.
fn section(title: &str, c: &Comparison, verbose: bool) {
    println!("== {title} ==");
    print!("{}", report::terminal::render(c, verbose));
    println!();
}

/// "at step 0, blk.1.ffn_out" for a failed comparison.
fn first_at(c: &Comparison) -> String {
    match &c.first_divergence {
        Some(d) => format!("first at step {}, {}", d.step, d.checkpoint),
        None => c.run_failures.first().cloned().unwrap_or_default(),
    }
}

/// The name of a baseline folder (its last component, symbolic links resolved).
fn baseline_name(dir: &Path) -> String {
    fs::canonicalize(dir)
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "baseline".into())
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    set_verbose(false);
    let mut dirs = args.baseline.clone();
    dirs.extend(args.baselines.iter().cloned());
    match dirs.len() {
        0 => anyhow::bail!("name a baseline folder: gate --baseline DIR, or gate DIR..."),
        1 => return run_one(&args, &dirs[0], args.out.clone()).map(|(o, _)| o),
        _ => {}
    }
    anyhow::ensure!(
        !args.new.given(),
        "the flags describing a new baseline apply to one baseline at a time, not to {}",
        dirs.len()
    );
    let names: Vec<String> = dirs.iter().map(|d| baseline_name(d)).collect();
    for (i, n) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|m| m == n) {
            anyhow::bail!(
                "{} and {} have the same name {n:?}: their fresh dumps would share a work folder",
                dirs[j].display(),
                dirs[i].display()
            );
        }
    }
    let mut results = Vec::new();
    for (dir, name) in dirs.iter().zip(&names) {
        let out = args.out.as_ref().map(|o| o.join(name));
        let r = run_one(&args, dir, out);
        if let Err(e) = &r {
            println!("gate {}: ERROR: {}", dir.display(), one_line(e));
        }
        println!();
        results.push(r);
    }
    let (mut passed, mut failed, mut errors) = (0, 0, 0);
    let mut md =
        String::from("## llorch-diff gate: summary\n\n| baseline | verdict |\n|---|---|\n");
    println!("== summary ==");
    for (dir, r) in dirs.iter().zip(&results) {
        let line = match r {
            Ok((Outcome::Pass, v)) => {
                passed += 1;
                v.clone()
            }
            Ok((Outcome::Fail, v)) => {
                failed += 1;
                v.clone()
            }
            Err(e) => {
                errors += 1;
                format!("ERROR: {}", one_line(e))
            }
        };
        println!("gate {}: {line}", dir.display());
        md.push_str(&format!(
            "| {} | {} |\n",
            dir.display().to_string().replace('|', "\\|"),
            line.replace('|', "\\|").replace('\n', " ")
        ));
    }
    let total = format!(
        "gate: {} baselines: {passed} passed, {failed} failed, {errors} could not be judged",
        dirs.len()
    );
    println!("{total}");
    md.push_str(&format!("\n**{total}**\n\n"));
    step_summary(&md)?;
    if errors > 0 {
        anyhow::bail!(
            "{errors} of {} baselines could not be judged (see above)",
            dirs.len()
        );
    }
    Ok(if failed > 0 {
        Outcome::Fail
    } else {
        Outcome::Pass
    })
}

/// The error and its causes on one line, outermost first.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Gates one baseline; returns the outcome and the verdict line.
fn run_one(args: &Args, dir: &Path, out: Option<PathBuf>) -> anyhow::Result<(Outcome, String)> {
    let started = std::time::Instant::now();
    let dir = dir.to_path_buf();
    let spec_path = dir.join(SPEC_FILE);
    let spec = if spec_path.is_file() {
        anyhow::ensure!(
            !args.new.given(),
            "{} already exists: edit it (the flags describe new baselines only), then run gate --update",
            spec_path.display()
        );
        Spec::read(&dir)?
    } else if args.new.given() {
        anyhow::ensure!(
            args.update,
            "{} has no {SPEC_FILE}: add --update to create the baseline the flags describe",
            dir.display()
        );
        Spec::from_flags(&args.new, &dir)?
    } else if !dir.is_dir() {
        anyhow::bail!(
            "no baseline folder {} (create one with gate --baseline {} --update --preset NAME ...)",
            dir.display(),
            dir.display()
        )
    } else if args.update {
        anyhow::bail!(
            "{} has no {SPEC_FILE}: describe the new baseline with --preset NAME or --model FILE (see gate --help)",
            dir.display()
        )
    } else {
        anyhow::bail!(
            "{} is missing: {} is not a gate baseline",
            spec_path.display(),
            dir.display()
        )
    };
    let stored_dir = dir.join(LLAMA_CPP);
    let stored = if stored_dir.exists() {
        match DumpFolder::open(&stored_dir) {
            Ok(f) => Some(f),
            // An update replaces unreadable stored dumps (if they are a dump folder at all).
            Err(e) if args.update => {
                eprintln!("warning: the stored dumps are unreadable ({e}); replacing them");
                None
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("opening the stored dumps {}", stored_dir.display())))
            }
        }
    } else if args.update {
        None
    } else {
        anyhow::bail!(
            "no stored dumps in {} (store them with gate --update)",
            stored_dir.display()
        )
    };
    let stored_manifest = match &stored {
        Some(s) => Some(s.manifest.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "the stored dumps {} have no {FILE_NAME}",
                stored_dir.display()
            )
        })?),
        None => None,
    };
    if let (Some(m), false) = (&stored_manifest, args.update) {
        let d = spec.disagreements(m);
        anyhow::ensure!(
            d.is_empty(),
            "{} describes another run than the stored dumps ({}): run gate --update to store the run it describes",
            spec_path.display(),
            d.join("; ")
        );
    }
    // The stored dumps were made under one CPU backend configuration; a switch set otherwise in
    // this environment would make llama.cpp compute another thing, so it is named, not judged.
    if let (Some(m), false) = (&stored_manifest, args.update) {
        let now = crate::cpu_config::CpuConfig::from_env(true);
        if let Some(then) = crate::cpu_config::CpuConfig::from_record(&m.producer_detail) {
            anyhow::ensure!(
                then == now,
                "the stored dumps were made with the CPU backend set to '{}', this run has '{}'                  (see {}): unset the switch or store a new baseline with gate --update",
                then.describe(),
                now.describe(),
                crate::cpu_config::ENV_SWITCHES.join(", ")
            );
        }
    }
    spec.source.check()?;
    let tol = tolerances(args.tolerances.as_deref(), None, None, None)?;

    // The fresh run, in the work folder.
    let out = out.unwrap_or_else(|| Path::new("out/gate").join(baseline_name(&dir)));
    let staged = Staged::create(&out)?;
    let model = spec.source.materialize(staged.path())?;
    let config = Config {
        mode: spec.mode,
        steps: spec.steps,
        kv_type: spec.kv_type,
        threads: args.threads,
        no_repack: false,
        inject_fault: args.inject_fault,
    };
    // The reference evaluates the stored prompt tokens: if llama.cpp's tokenizer moved, only
    // llama.cpp's side fails.
    let token_ids = match (&stored_manifest, args.update) {
        (Some(m), false) => Some(m.prompt_tokens.clone()),
        _ => None,
    };
    let produced = produce(
        &model,
        &spec.prompt,
        staged.path(),
        &config,
        None,
        token_ids,
    )?;
    let out = staged.commit()?;
    let fresh_llama = DumpFolder::open(&out.join(LLAMA_CPP))?;
    let fresh_ref = DumpFolder::open(&out.join(REFERENCE))?;
    let model_sha = fresh_llama
        .manifest
        .as_ref()
        .map(|m| m.model.sha256.clone())
        .unwrap_or_default();
    eprintln!(
        "gate {}: {} prompt {:?} ({} token(s)), {} steps, kv {}, mode {}; fresh dumps in {}",
        dir.display(),
        spec.source.file_name(),
        spec.prompt,
        produced.llama.prompt_tokens.len(),
        spec.steps,
        spec.kv_type.as_str(),
        spec.mode.as_str(),
        out.display()
    );

    let outcome = if args.update {
        update(
            args,
            &dir,
            &spec,
            stored.as_ref(),
            &fresh_llama,
            &fresh_ref,
            &tol,
        )?
    } else {
        let stored = stored.expect("checked above");
        let m = stored_manifest.expect("checked above");
        gate(
            args,
            &dir,
            &m,
            &model_sha,
            &stored,
            &fresh_llama,
            &fresh_ref,
            &tol,
        )?
    };
    eprintln!(
        "timing: extract {:.2} s, reference {:.2} s, total {:.2} s",
        produced.extract_secs,
        produced.reference_secs,
        started.elapsed().as_secs_f64()
    );
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
fn gate(
    args: &Args,
    dir: &Path,
    m: &Manifest,
    model_sha: &str,
    stored: &DumpFolder,
    fresh_llama: &DumpFolder,
    fresh_ref: &DumpFolder,
    tol: &Tolerances,
) -> anyhow::Result<(Outcome, String)> {
    let bar = super::progress::spinner("comparing");
    let a = compare_folders(stored, fresh_llama, &identical())?;
    let b = compare_folders(stored, fresh_ref, tol)?;
    super::progress::done(bar);
    section(
        "(a) llama.cpp, fresh vs stored: must be identical",
        &a,
        args.verbose,
    );
    section(
        &format!(
            "(b) reference, fresh vs stored: tolerances of mode {}",
            b.mode
        ),
        &b,
        args.verbose,
    );
    let model_moved = !m.model.sha256.is_empty()
        && !model_sha.is_empty()
        && !m.model.sha256.eq_ignore_ascii_case(model_sha);
    if model_moved {
        println!(
            "MODEL MOVED: {} now has sha256 {model_sha}, the stored dumps were made from {} \
             (the model file or the preset generator changed)",
            m.model.file, m.model.sha256
        );
    }
    if !a.passed {
        let build = |d: &std::collections::BTreeMap<String, String>| {
            ["llama_cpp", "flags", "compiler"]
                .iter()
                .filter_map(|k| d.get(*k).cloned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fresh = fresh_llama
            .manifest
            .as_ref()
            .map(|f| build(&f.producer_detail))
            .unwrap_or_default();
        let was = build(&m.producer_detail);
        if fresh != was {
            println!("llama.cpp build: stored {was}; fresh {fresh}");
        }
    }
    let verdict = match (a.passed, b.passed) {
        (true, true) => {
            "PASS: llama.cpp reproduces the stored dumps exactly and the reference matches them"
                .to_string()
        }
        (false, true) => format!(
            "FAIL: llama.cpp moved: its fresh dumps differ from the stored ones ({}); the reference still matches the stored dumps",
            first_at(&a)
        ),
        (true, false) => format!(
            "FAIL: the reference moved ({}); llama.cpp reproduces the stored dumps exactly",
            first_at(&b)
        ),
        (false, false) => {
            let same = a
                .first_divergence
                .as_ref()
                .zip(b.first_divergence.as_ref())
                .is_some_and(|(x, y)| (x.step, &x.checkpoint) == (y.step, &y.checkpoint));
            if same && compare_folders(fresh_llama, fresh_ref, tol)?.passed {
                format!(
                    "FAIL: the stored dumps differ from both fresh runs, which agree with each other ({}): \
                     the baseline was changed, or llama.cpp and the reference moved together",
                    first_at(&a)
                )
            } else {
                format!(
                    "FAIL: both moved (llama.cpp {}; reference {})",
                    first_at(&a),
                    first_at(&b)
                )
            }
        }
    };
    let passed = a.passed && b.passed && !model_moved;
    let verdict = if model_moved && a.passed && b.passed {
        "FAIL: the model moved (see above), though both sides match the stored dumps".into()
    } else {
        verdict
    };
    println!("gate {}: {verdict}", dir.display());
    let mut md = format!(
        "## llorch-diff gate {}\n\n**{}**\n\n",
        dir.display(),
        verdict.replace('\n', " ")
    );
    md.push_str(&report::markdown::summary(
        &a,
        "(a) llama.cpp, fresh vs stored: must be identical",
    ));
    md.push_str(&report::markdown::summary(
        &b,
        &format!(
            "(b) reference, fresh vs stored: tolerances of mode {}",
            b.mode
        ),
    ));
    step_summary(&md)?;
    let outcome = if passed { Outcome::Pass } else { Outcome::Fail };
    Ok((outcome, verdict))
}

fn update(
    args: &Args,
    dir: &Path,
    spec: &Spec,
    old: Option<&DumpFolder>,
    fresh_llama: &DumpFolder,
    fresh_ref: &DumpFolder,
    tol: &Tolerances,
) -> anyhow::Result<(Outcome, String)> {
    let before = match old {
        Some(old) => {
            let c = compare_folders(old, fresh_llama, &identical())?;
            if c.passed {
                "the stored dumps were already identical".to_string()
            } else {
                format!("they differed from the fresh ones, {}", first_at(&c))
            }
        }
        None => "there were none".to_string(),
    };
    let target = store(&fresh_llama.dir, dir)?;
    let spec_path = dir.join(SPEC_FILE);
    if !spec_path.is_file() {
        write_atomic(&spec_path, spec.to_toml()?.as_bytes())
            .with_context(|| format!("writing {}", spec_path.display()))?;
        eprintln!("wrote {}", spec_path.display());
    }
    let stored = DumpFolder::open(&target)?;
    let b = compare_folders(&stored, fresh_ref, tol)?;
    section(
        &format!(
            "(b) reference, fresh vs the new stored dumps: tolerances of mode {}",
            b.mode
        ),
        &b,
        args.verbose,
    );
    let verdict = format!(
        "UPDATED {} ({} checkpoints; {before}); the reference {}",
        target.display(),
        stored.entries.len(),
        if b.passed {
            "matches them".to_string()
        } else {
            format!("does not match them ({})", first_at(&b))
        }
    );
    println!("gate {}: {verdict}", dir.display());
    let mut md = format!(
        "## llorch-diff gate --update {}\n\n**{verdict}**\n\n",
        dir.display()
    );
    md.push_str(&report::markdown::summary(
        &b,
        &format!(
            "(b) reference, fresh vs the new stored dumps: tolerances of mode {}",
            b.mode
        ),
    ));
    step_summary(&md)?;
    let outcome = if b.passed {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Ok((outcome, verdict))
}
