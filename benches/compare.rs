//! Compare and report two SmolLM2-sized dump folders (30 layers × 18 checkpoints × 5 steps,
//! n_embd 576, n_ff 1536, vocab 49152) and print how long each part takes.
//! `cargo bench --bench compare`.

#[path = "../tests/compare_common/mod.rs"]
mod compare_common;

use std::time::Instant;

use compare_common::{manifest, perturb, scratch, write_folder, Edit, Spec};
use llorch_diff::checkpoint::{DumpFolder, Kind};
use llorch_diff::compare::{compare_folders, Tolerances};
use llorch_diff::report;

fn main() {
    let root = scratch("bench");
    let spec = Spec::smollm2();
    let t = Instant::now();
    let a = write_folder(
        &root.join("a"),
        &spec,
        manifest(&spec, "llama.cpp", None),
        |_, _, _| Edit::Keep,
    );
    // A divergence from layer 12 of step 2 on, so the reports carry failures and growth.
    let b = write_folder(
        &root.join("b"),
        &spec,
        manifest(&spec, "reference", Some("ggml")),
        |step, name, t| {
            if step == 2 && name.kind() == Some(Kind::LOut) && name.layer_index() >= Some(12) {
                perturb(
                    t,
                    1e-4 * 1.3f64.powi(name.layer_index().unwrap() as i32 - 12),
                    "bench",
                );
            }
            Edit::Keep
        },
    );
    let entries = DumpFolder::open(&a).unwrap().entries.len();
    let bytes: u64 = DumpFolder::open(&a)
        .unwrap()
        .entries
        .iter()
        .map(|e| std::fs::metadata(&e.path).unwrap().len())
        .sum();
    println!(
        "built 2 folders of {entries} checkpoints ({:.1} MB each) in {:.2} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let tol = Tolerances::builtin();
    let out = root.join("out");
    for run in 1..=3 {
        let t0 = Instant::now();
        let (fa, fb) = (DumpFolder::open(&a).unwrap(), DumpFolder::open(&b).unwrap());
        let c = compare_folders(&fa, &fb, &tol).unwrap();
        let t1 = Instant::now();
        let compact = report::terminal::render(&c, false);
        let verbose = report::terminal::render(&c, true);
        report::markdown::write(&c, &out.join("bench.md")).unwrap();
        let json = report::json::render(&c);
        let junit = report::junit::render(&c).expect("JUnit serialises");
        let t2 = Instant::now();
        let total = (t2 - t0).as_secs_f64() * 1e3;
        println!(
            "run {run}: compare {:.0} ms + reports {:.0} ms = {total:.0} ms  ({} checkpoints, {}; terminal {} + {} B, json {} B, junit {} B)",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            c.counts.total,
            c.headline(),
            compact.len(),
            verbose.len(),
            json.len(),
            junit.len()
        );
        if run == 3 {
            println!("{}", compact.lines().take(6).collect::<Vec<_>>().join("\n"));
        }
    }
}
