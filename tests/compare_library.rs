//! `compare::compare_folders` and the renderers, through the library API.

mod compare_common;

use compare_common::{manifest, pair, perturb, scratch, write_folder, Edit, Spec};
use llorch_diff::checkpoint::catalogue::CheckpointName;
use llorch_diff::checkpoint::{write_dump, DumpFolder, Kind};
use llorch_diff::compare::{compare_folders, Gate, Tolerances, Verdict};
use llorch_diff::report;

fn open(p: &std::path::Path) -> DumpFolder {
    DumpFolder::open(p).unwrap()
}

#[test]
fn identical_pass_with_zero_error_and_one_verdict_per_checkpoint() {
    let root = scratch("lib-identical");
    let spec = Spec::tiny();
    let (a, b) = pair(&root, &spec, "ggml");
    let c = compare_folders(&open(&a), &open(&b), &Tolerances::builtin()).unwrap();
    assert!(c.passed);
    assert_eq!(c.counts.total, open(&a).entries.len());
    assert_eq!(c.counts.pass, c.counts.total);
    assert!(c.first_divergence.is_none() && c.warnings.is_empty() && c.run_failures.is_empty());
    assert!(c.results.iter().all(|r| r.nmse() == Some(0.0)));
    let logits = c
        .results
        .iter()
        .find(|r| r.name == "result_output")
        .unwrap()
        .logits
        .as_ref()
        .unwrap();
    assert_eq!(
        (logits.rows.len(), logits.top1_agree, logits.max_kl),
        (spec.prompt_len, spec.prompt_len, 0.0)
    );
    assert_eq!(c.mode, "ggml");
}

#[test]
fn logit_gates_judge_on_their_own() {
    let root = scratch("lib-logits");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 0 && *name == CheckpointName::ResultOutput {
                // Row 1: lift the 7th token above the row's maximum, so the arg-max changes.
                let row = &mut t.data[spec.n_vocab..2 * spec.n_vocab];
                let max = row.iter().cloned().fold(f32::MIN, f32::max);
                row[7] = max + 1.0;
            }
            Edit::Keep
        },
    );
    let mut tol = Tolerances::builtin();
    // Open the element-wise gates so only KL and top-1 can fail.
    tol.set_overrides(Gate {
        nmse: Some(1e9),
        cosine: Some(-1.0),
        ..Gate::default()
    })
    .unwrap();
    let c = compare_folders(&open(&a), &open(&b), &tol).unwrap();
    assert!(!c.passed);
    let r = c
        .results
        .iter()
        .find(|r| r.verdict != Verdict::Pass)
        .unwrap();
    assert_eq!((r.step, r.name.as_str()), (0, "result_output"));
    let why = r.reason.as_deref().unwrap();
    assert!(why.contains("KL ") && why.contains("(token 1)"), "{why}");
    assert!(
        why.contains("top-1 agrees on 2/3 tokens < 100%, first at token 1:")
            && why.contains(" vs 7 (B)"),
        "{why}"
    );
    let l = r.logits.as_ref().unwrap();
    assert_eq!(l.rows[1].top1_candidate, 7);
    assert!(l.rows[0].kl == 0.0 && l.rows[1].kl > 0.0);
    assert_eq!(c.counts.fail, 1);
}

#[test]
fn token_mismatch_and_mode_from_manifest() {
    let root = scratch("lib-tokens-mode");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let edit = |step: u32, name: &CheckpointName, t: &mut llorch_diff::checkpoint::Tensor| {
        if step == 0 && *name == CheckpointName::layer(1, Kind::AttnOut) {
            perturb(t, 1e-2, "m"); // NMSE ~1e-4: over ggml's gate, under exact's.
        }
        Edit::Keep
    };
    let ggml = write_folder(
        &root.join("ggml"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        edit,
    );
    let exact = write_folder(
        &root.join("exact"),
        &spec,
        manifest(&spec, "reference", Some("exact")),
        edit,
    );
    let c = compare_folders(&open(&a), &open(&ggml), &Tolerances::builtin()).unwrap();
    assert_eq!(
        c.first_divergence.as_ref().unwrap().checkpoint,
        "blk.1.attn_out"
    );
    let c = compare_folders(&open(&a), &open(&exact), &Tolerances::builtin()).unwrap();
    assert_eq!(c.mode, "exact");
    assert!(c.passed, "{:?}", c.first_divergence);
    let r = c
        .results
        .iter()
        .find(|r| r.name == "blk.1.attn_out")
        .unwrap();
    let exact_gate = Tolerances::builtin().gate("exact", "attn_out").unwrap();
    assert!(r.nmse().unwrap() > 1e-6 && r.gate.nmse == exact_gate.nmse);

    let b = write_folder(
        &root.join("tok"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 1 && *name == CheckpointName::Tokens {
                t.data[0] = 999.0;
            }
            Edit::Keep
        },
    );
    let c = compare_folders(&open(&a), &open(&b), &Tolerances::builtin()).unwrap();
    let d = c.first_divergence.unwrap();
    assert_eq!((d.step, d.checkpoint.as_str()), (1, "tokens"));
    assert_eq!(
        d.reason,
        "1 token id(s) differ, first at 0: 500 (A) vs 999 (B)"
    );
    assert_eq!(d.growth.unwrap().points.len(), spec.n_layer as usize);
}

#[test]
fn folder_without_manifest_and_other_names() {
    let root = scratch("lib-no-manifest");
    let spec = Spec::tiny();
    let (a, _) = pair(&root, &spec, "ggml");
    // Another engine's folder: only step folders of .bin files, one extra name on each side.
    let b = root.join("engine");
    for step in 0..=spec.steps {
        for e in open(&a).entries.iter().filter(|e| e.id.step == step) {
            let t = open(&a).load(e).unwrap();
            write_dump(&b.join(format!("step{step}/{}.bin", e.id.name)), &t).unwrap();
        }
    }
    let extra = llorch_diff::checkpoint::Tensor::new(vec![2], vec![1.0, 2.0]);
    write_dump(&b.join("step0/engine_extra.bin"), &extra).unwrap();
    let c = compare_folders(&open(&a), &open(&b), &Tolerances::builtin()).unwrap();
    assert!(!c.passed);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("candidate (B) has no manifest.json")),
        "{:?}",
        c.warnings
    );
    let last = c.results.iter().rfind(|r| r.step == 0).unwrap();
    assert_eq!(
        (last.name.as_str(), last.verdict),
        ("engine_extra", Verdict::Missing)
    );
    assert_eq!(c.counts.missing, 1);
    assert_eq!(c.counts.pass, c.counts.total - 1);
}

#[test]
fn renderers_put_the_first_divergence_first() {
    let root = scratch("lib-render");
    let spec = Spec::tiny();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 0 && *name == CheckpointName::layer(2, Kind::Kcur) {
                perturb(t, 0.1, "r");
            }
            Edit::Keep
        },
    );
    let c = compare_folders(&open(&a), &open(&b), &Tolerances::builtin()).unwrap();
    let term = report::terminal::render(&c, false);
    let fd = term
        .find("FIRST DIVERGENCE: step 0, layer 2, blk.2.Kcur: FAIL")
        .unwrap();
    assert!(fd < term.find("┌").unwrap());
    let row = term
        .lines()
        .find(|l| l.contains(" blk.2 ") && l.contains("FAIL"))
        .unwrap();
    assert!(row.contains("17/18") && row.contains(" Kcur "), "{row}");
    let md = report::markdown::render(&c, Some("x.svg"));
    assert!(md.find("## First divergence").unwrap() < md.find("## Environment").unwrap());
    let json = report::json::render(&c);
    assert!(json.find("\"first_divergence\"").unwrap() < json.find("\"results\"").unwrap());
    let junit = report::junit::render(&c).unwrap();
    assert!(junit.find("first_divergence").unwrap() < junit.find("name=\"step0\"").unwrap());
    let svg = report::heatmap::render(&c);
    assert_eq!(
        svg.matches("<rect x=").count(),
        c.counts.total - (spec.steps as usize + 1) + 1,
        "one cell per checkpoint but tokens, plus the legend bar"
    );
}

/// llama.cpp built for another ISA than the one ggml mode reproduces, or run under other CPU
/// backend settings than the reference emulated, is named in a warning.
#[test]
fn another_isa_or_cpu_configuration_is_named() {
    let root = scratch("lib-isa");
    let spec = Spec::tiny();
    let mut ma = manifest(&spec, "llama.cpp", None);
    ma.producer_detail.insert("isa".into(), "x86-64-v4".into());
    llorch_diff::cpu_config::CpuConfig::default().record(&mut ma.producer_detail);
    let a = write_folder(&root.join("a"), &spec, ma, |_, _, _| Edit::Keep);
    let mut mb = manifest(&spec, "reference", Some("ggml"));
    llorch_diff::cpu_config::CpuConfig {
        repack: false,
        ..Default::default()
    }
    .record(&mut mb.producer_detail);
    let b = write_folder(&root.join("b"), &spec, mb, |_, _, _| Edit::Keep);
    let c = compare_folders(&open(&a), &open(&b), &Tolerances::builtin()).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("x86-64-v4")),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings.iter().any(|w| w.contains("no repack")),
        "{:?}",
        c.warnings
    );
}
