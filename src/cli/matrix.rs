//! `llorch-diff matrix`: the zero-false-alarm matrix. For every model × weight type × prompt
//! length × KV type × thread count, llama.cpp and the reference in ggml mode run on the same
//! tokens and every checkpoint of every step must be byte-identical. One line per cell, then a
//! summary; exit 1 when any cell differs. With `--mode exact` the reference computes the
//! mathematics instead, every checkpoint must pass the `exact` gates, and the summary gives the
//! largest NMSE of each checkpoint kind per model family.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::Outcome;
use crate::checkpoint::{DumpFolder, KvType};
use crate::compare::{compare_folders, Tolerances};
use crate::cpu_config::CpuConfig;
use crate::gguf::presets::{self, Preset};
use crate::llamacpp::extract::{extract, learned_positions, ExtractOptions};
use crate::llamacpp::quantize::{quantize_model, FileType};
use crate::llamacpp::{set_verbose, Session};
use crate::reference::{reference, Mode, ReferenceOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Presets to run in every type of `--types` (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "tiny-llama,tiny-gpt2")]
    pub presets: Vec<String>,
    /// Weight types for the presets (comma-separated, make-model names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,q2_k,q3_k,q4_k,q5_k,q6_k,iq4_nl,iq4_xs,iq3_s,iq3_xxs,iq2_s,iq2_xs,iq2_xxs,iq1_m,iq1_s,tq2_0,tq1_0,mxfp4"
    )]
    pub types: Vec<String>,
    /// A real GGUF model to re-quantize into every file type of `--quantize-to`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// llama.cpp file types for `--model` (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Q4_K_M,Q5_K_M,Q6_K,Q3_K_M,Q2_K,IQ4_XS,IQ4_NL,BF16,Q8_0"
    )]
    pub quantize_to: Vec<String>,
    /// Prompt lengths in tokens.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,7,8,9,16,31,32,33,64,300"
    )]
    pub lengths: Vec<usize>,
    /// KV cache types.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "f32,f16")]
    pub kv: Vec<KvType>,
    /// Thread counts (llama.cpp and the reference).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Decode steps after the prompt.
    #[arg(long, default_value_t = 2)]
    pub steps: u32,
    /// llama.cpp without repacked weights (and the reference emulating that).
    #[arg(long)]
    pub no_repack: bool,
    /// `ggml`: every checkpoint byte-identical; `exact`: every checkpoint within the `exact`
    /// gates, with the largest NMSE per kind reported.
    #[arg(long, value_enum, default_value_t = Mode::Ggml)]
    pub mode: Mode,
    /// Working folder for the models and dumps.
    #[arg(long, default_value = "out/matrix")]
    pub out: PathBuf,
}

/// One model file of the matrix.
struct Subject {
    /// The preset, or the real model's file stem: the rows of the exact-mode summary.
    family: String,
    label: String,
    file: PathBuf,
}

/// The outcome of one cell.
struct Cell {
    checkpoints: usize,
    /// Byte-identical checkpoints (ggml mode), or those within the gates (exact mode).
    good: usize,
    /// The first checkpoint that is not good, with its NMSE.
    first: Option<(String, f64)>,
    /// Exact mode: the largest NMSE of each kind in this cell.
    worst: BTreeMap<String, f64>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    set_verbose(false);
    anyhow::ensure!(
        args.threads.iter().all(|&t| t >= 1),
        "--threads values must be at least 1"
    );
    anyhow::ensure!(
        args.lengths.iter().all(|&n| n >= 1),
        "--lengths values must be at least 1"
    );
    let models = args.out.join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("creating {}", models.display()))?;
    let subjects = subjects(&args, &models)?;
    let cpu = CpuConfig::from_env(!args.no_repack);
    let good_label = match args.mode {
        Mode::Ggml => "identical",
        Mode::Exact => "within",
    };
    println!(
        "matrix ({} mode): {} models, lengths {:?}, KV {:?}, threads {:?}, {} steps, CPU backend: {}",
        args.mode.as_str(),
        subjects.len(),
        args.lengths,
        args.kv.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        args.threads,
        args.steps,
        cpu.describe()
    );
    println!(
        "{:<28} {:>5} {:>4} {:>3} {:>12}  first difference",
        "model", "len", "kv", "thr", good_label
    );
    let (mut cells, mut bad, mut skipped) = (0usize, 0usize, 0usize);
    let mut worst: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let started = Instant::now();
    for s in &subjects {
        let n_pos = learned_positions(&s.file);
        for &n in &args.lengths {
            let prompt = prompt_of_length(&s.file, n)
                .with_context(|| format!("{}: a prompt of {n} tokens", s.label))?;
            for &kv in &args.kv {
                for &threads in &args.threads {
                    let dir = args.out.join("runs").join(format!(
                        "{}-{n}-{}-{threads}",
                        s.label,
                        kv.as_str()
                    ));
                    // A length beyond a learned position table is no cell: llama.cpp cannot run it.
                    if let Some(n_pos) = n_pos {
                        if n + args.steps as usize > n_pos {
                            skipped += 1;
                            println!(
                                "{:<28} {n:>5} {:>4} {threads:>3} {:>12}  not run: {} positions \
                                 exceed the model's {n_pos} learned positions",
                                s.label,
                                kv.as_str(),
                                "SKIPPED",
                                n + args.steps as usize
                            );
                            continue;
                        }
                    }
                    let cell = run_cell(
                        &s.file, &prompt, &dir, kv, threads, args.steps, cpu, args.mode,
                    )
                    .with_context(|| format!("{} at {n} tokens", s.label))?;
                    cells += 1;
                    let family = worst.entry(s.family.clone()).or_default();
                    for (kind, &nmse) in &cell.worst {
                        raise(family, kind, nmse);
                    }
                    let first = match &cell.first {
                        None => String::new(),
                        Some((name, nmse)) => {
                            bad += 1;
                            format!("{name} (NMSE {nmse:.1e})")
                        }
                    };
                    println!(
                        "{:<28} {n:>5} {:>4} {threads:>3} {:>5}/{:<6}  {first}",
                        s.label,
                        kv.as_str(),
                        cell.good,
                        cell.checkpoints
                    );
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
    if args.mode == Mode::Exact {
        print_worst(&worst);
    }
    let meaning = match args.mode {
        Mode::Ggml => "byte-identical",
        Mode::Exact => "within the exact gates",
    };
    println!(
        "matrix: {} passed, {} failed, {skipped} skipped ({cells} cells run, every checkpoint \
         {meaning} in the passed ones) in {:.0} s",
        cells - bad,
        bad,
        started.elapsed().as_secs_f64()
    );
    Ok(if bad == 0 {
        Outcome::Pass
    } else {
        Outcome::Fail
    })
}

/// The model files: each preset in each type, and the real model in each file type.
fn subjects(args: &Args, models: &Path) -> anyhow::Result<Vec<Subject>> {
    let mut out = Vec::new();
    for p in args.presets.iter().filter(|p| !p.is_empty()) {
        let preset = Preset::parse(p)?;
        for t in &args.types {
            let ty = super::make_model::parse_quant(t)?;
            let label = format!("{}-{}", preset.name(), ty.name().to_ascii_lowercase());
            let file = models.join(format!("{label}.gguf"));
            presets::write_preset(preset, ty, 1, &file)
                .with_context(|| format!("writing {}", file.display()))?;
            out.push(Subject {
                family: preset.name().to_string(),
                label,
                file,
            });
        }
    }
    if let Some(model) = &args.model {
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let short: String = stem.chars().take(16).collect();
        for t in &args.quantize_to {
            let ftype = FileType::parse(t)
                .with_context(|| format!("unknown file type '{t}' ({})", FileType::names()))?;
            let file = models.join(format!("{stem}.{}.gguf", ftype.name));
            if !file.is_file() {
                let staging = models.join(format!(".{}.partial", ftype.name));
                quantize_model(model, &staging, ftype, 2)
                    .with_context(|| format!("quantizing {} to {}", model.display(), ftype.name))?;
                std::fs::rename(&staging, &file)?;
            }
            out.push(Subject {
                family: stem.clone(),
                label: format!("{short}-{}", ftype.name),
                file,
            });
        }
    }
    Ok(out)
}

/// A prompt that llama.cpp tokenizes to exactly `n` tokens (special tokens such as BOS
/// included): words are added until the count is reached, the last one chosen to land on it.
fn prompt_of_length(model: &Path, n: usize) -> anyhow::Result<String> {
    const WORDS: &[&str] = &[
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "cat",
        "sleeps", "on", "warm", "mat", "by", "door", "and", "bird", "sings", "in", "tree",
    ];
    let session = Session::open(model, 64, KvType::F32, 1, false)?;
    let count = |s: &str| -> anyhow::Result<usize> { Ok(session.tokenize(s, true, false)?.len()) };
    let mut text = String::new();
    let mut i = 0usize;
    if count("")? >= n {
        // Only BOS fits: a one-token prompt is its first word where there is no BOS.
        return Ok(if count("the")? == n {
            "the".into()
        } else {
            String::new()
        });
    }
    loop {
        let mut landed = None;
        for w in WORDS.iter().cycle().skip(i % WORDS.len()).take(WORDS.len()) {
            let candidate = if text.is_empty() {
                (*w).to_string()
            } else {
                format!("{text} {w}")
            };
            let c = count(&candidate)?;
            if c == n {
                return Ok(candidate);
            }
            if c < n {
                landed = Some(candidate);
                break;
            }
        }
        text = landed.with_context(|| format!("no word sequence tokenizes to {n} tokens"))?;
        i += 1;
    }
}

/// Keeps the larger of a kind's NMSE so far and `nmse`.
fn raise(worst: &mut BTreeMap<String, f64>, kind: &str, nmse: f64) {
    let w = worst.entry(kind.to_string()).or_insert(0.0);
    *w = w.max(nmse);
}

/// The exact-mode summary: per family, each kind's largest NMSE over every cell, in the
/// order of the largest first.
fn print_worst(worst: &BTreeMap<String, BTreeMap<String, f64>>) {
    for (family, kinds) in worst {
        let mut kinds: Vec<_> = kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.total_cmp(a.1));
        println!("largest NMSE per kind, {family}:");
        for (kind, nmse) in kinds {
            println!("  {kind:<20} {nmse:.2e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_cell(
    model: &Path,
    prompt: &str,
    dir: &Path,
    kv: KvType,
    threads: usize,
    steps: u32,
    cpu: CpuConfig,
    mode: Mode,
) -> anyhow::Result<Cell> {
    let llama_dir = dir.join("llama.cpp");
    let ref_dir = dir.join("reference");
    let ex = extract(
        model,
        prompt,
        &llama_dir,
        &ExtractOptions {
            steps,
            kv_type: kv,
            threads,
            repack: cpu.repack,
            filter: None,
        },
    )?;
    reference(
        model,
        prompt,
        &ref_dir,
        &ReferenceOptions {
            mode,
            steps,
            kv_type: kv,
            cpu,
            threads,
            filter: None,
            fault: None,
            token_ids: Some(ex.prompt_tokens.clone()),
            decode_tokens: Some(ex.generated_tokens.clone()),
        },
    )?;
    let a = DumpFolder::open(&llama_dir)?;
    let b = DumpFolder::open(&ref_dir)?;
    if mode == Mode::Exact {
        return judge_exact(&a, &b);
    }
    let mut identical = 0;
    let mut first_name = None;
    for e in &a.entries {
        let other = b.entries.iter().find(|f| f.id == e.id);
        let same = match other {
            Some(f) => std::fs::read(&e.path)? == std::fs::read(&f.path)?,
            None => false,
        };
        if same {
            identical += 1;
        } else if first_name.is_none() {
            first_name = Some(format!("step{} {}", e.id.step, e.id.name));
        }
    }
    let first = match first_name {
        None if a.entries.len() == b.entries.len() => None,
        None => Some(("checkpoint sets differ".to_string(), f64::NAN)),
        Some(name) => {
            let cmp = compare_folders(&a, &b, &Tolerances::builtin())?;
            let nmse = cmp
                .results
                .iter()
                .find(|r| format!("step{} {}", r.step, r.name) == name)
                .and_then(|r| r.nmse())
                .unwrap_or(f64::NAN);
            Some((name, nmse))
        }
    };
    Ok(Cell {
        checkpoints: a.entries.len(),
        good: identical,
        first,
        worst: BTreeMap::new(),
    })
}

/// An exact-mode cell: every checkpoint judged by the built-in `exact` gates.
fn judge_exact(llama: &DumpFolder, reference: &DumpFolder) -> anyhow::Result<Cell> {
    let cmp = compare_folders(llama, reference, &Tolerances::builtin())?;
    anyhow::ensure!(
        cmp.mode == "exact",
        "judged in mode {}, not exact",
        cmp.mode
    );
    let mut worst = BTreeMap::new();
    for r in cmp.results.iter().filter(|r| r.kind != "tokens") {
        if let Some(nmse) = r.nmse() {
            raise(&mut worst, &r.kind, nmse);
        }
    }
    let first = match (&cmp.first_divergence, cmp.run_failures.first()) {
        (Some(d), _) => Some((
            format!("step{} {}", d.step, d.checkpoint),
            d.nmse.unwrap_or(f64::NAN),
        )),
        (None, Some(why)) => Some((why.clone(), f64::NAN)),
        (None, None) => None,
    };
    Ok(Cell {
        checkpoints: cmp.counts.total,
        good: cmp.counts.pass,
        first,
        worst,
    })
}
