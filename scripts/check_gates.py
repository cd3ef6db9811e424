#!/usr/bin/env python3
"""Re-judges comparison JSON (`run --json` / `compare --json`) with the gates of one mode of a
tolerance file (the mode's `default` table overlaid by the kind's own, as src/compare/tolerance.rs
does): prints every checkpoint that would fail and the number of runs that pass.

    scripts/check_gates.py src/compare/default_tolerances.toml exact out/calib-exact/*.json
"""

import json
import sys
import tomllib


def main():
    path, mode, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    table = tomllib.load(open(path, "rb"))[mode]
    base = table.get("default", {})
    failed_runs = 0
    for f in files:
        doc = json.load(open(f))
        fails = []
        for r in doc["results"]:
            m = r.get("metrics")
            if r["kind"] == "tokens" or not m:
                if r["verdict"] != "PASS":
                    fails.append(f"{r['name']} {r['verdict']}")
                continue
            g = {**base, **table.get(r["kind"], {})}
            bad = []
            for key in ("nmse", "max_abs", "max_rel"):
                v = m[key] if m[key] is not None else float("nan")
                if key in g and not v <= g[key]:
                    bad.append(f"{key} {v:.3e} > {g[key]:.0e}")
            cos = m["cosine"] if m["cosine"] is not None else float("nan")
            if "cosine" in g and not cos >= g["cosine"]:
                bad.append(f"cosine {cos:.8f} < {g['cosine']}")
            lg = r.get("logits")
            if lg:
                if "kl" in g and not lg["max_kl"] <= g["kl"]:
                    bad.append(f"KL {lg['max_kl']:.3e} > {g['kl']:.0e}")
                n = len(lg["rows"])
                if "top1" in g and n and not lg["top1_agree"] / n >= g["top1"]:
                    bad.append(f"top-1 {lg['top1_agree']}/{n} < {g['top1']}")
            if bad:
                fails.append(f"step {r['step']} {r['name']}: " + "; ".join(bad))
        if fails:
            failed_runs += 1
            print(f"FAIL {f.split('/')[-1]}: {len(fails)} checkpoints, e.g. " + " | ".join(fails[:3]))
    print(f"{len(files) - failed_runs}/{len(files)} runs pass the [{mode}.*] gates of {path}")
    sys.exit(1 if failed_runs else 0)


if __name__ == "__main__":
    main()
