#!/usr/bin/env python3
"""Gates from measured distances, by the rule of src/compare/default_tolerances.toml: per kind the
largest NMSE over every JSON given times 4, rounded up to 1, 2 or 5 (times a power of ten); the
cosine gate 1 - (4 x the largest 1-cosine, rounded up likewise); on the logits also 4 x the largest
KL. Kinds measured at exactly zero (the embedding lookup) are left to their hand-set gates. Prints
TOML tables to paste into the `exact` set.

    scripts/exact_gates.py out/calib-exact/*.json
"""

import json
import math
import sys


def up(x):
    """x rounded up to 1, 2 or 5 times a power of ten."""
    e = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10.0**e >= x * (1 - 1e-12):
            return m * 10.0**e


def main():
    worst = {}
    for path in sys.argv[1:]:
        for r in json.load(open(path))["results"]:
            m = r.get("metrics")
            if not m or r["kind"] == "tokens":
                continue
            w = worst.setdefault(r["kind"], [0.0, 0.0, 0.0])
            w[0] = max(w[0], m["nmse"])
            w[1] = max(w[1], 1 - m["cosine"])
            if r.get("logits"):
                w[2] = max(w[2], r["logits"]["max_kl"])
    for kind, (n, c, kl) in worst.items():
        if n == 0:
            print(f"# [exact.{kind}] measured 0: keep its hand-set gates")
            continue
        print(f"[exact.{kind}]  # largest NMSE {n:.2e}, 1-cosine {c:.2e}" + (f", KL {kl:.2e}" if kl else ""))
        print(f"nmse = {up(4 * n):.0e}")
        print(f"cosine = {round(1 - up(4 * c), 12)}")
        if kl:
            print(f"kl = {up(4 * kl):.0e}")
        print()


if __name__ == "__main__":
    main()
