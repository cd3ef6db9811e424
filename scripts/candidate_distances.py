#!/usr/bin/env python3
"""Per-kind distances of `run --candidate ... --json FILE` reports: the largest NMSE, 1-cosine
and (logits) KL over every JSON given, per pair (candidate vs llama.cpp, vs the reference).

    scripts/candidate_distances.py out/calib/*.json
"""

import json
import sys
from collections import defaultdict


def main():
    worst = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0.0, ""]))
    for path in sys.argv[1:]:
        doc = json.load(open(path))
        # `run --candidate` reports hold pairs; a `compare` report is one comparison.
        pairs = doc.get("pairs") or [
            {"against": "llama.cpp", "tolerances": "reference " + doc["mode"], "comparison": doc}
        ]
        for p in pairs:
            key = f"vs {p['against']} [{p['tolerances']}]"
            if "candidate" in p["comparison"] and p["comparison"]["candidate"].get("environment"):
                key += " " + p["comparison"]["candidate"]["environment"]["producer"]
            key += "" if "pairs" in doc else " (compare)"
            for r in p["comparison"]["results"]:
                m = r.get("metrics")
                if not m or r["kind"] == "tokens":
                    continue
                w = worst[key][r["kind"]]
                nmse = m["nmse"] if m["nmse"] is not None else float("inf")
                cos = 1 - m["cosine"] if m["cosine"] is not None else float("inf")
                if nmse > w[0]:
                    w[0], w[3] = nmse, f"{path.split('/')[-1]} step {r['step']} {r['name']}"
                w[1] = max(w[1], cos)
                lg = r.get("logits")
                if lg and lg.get("max_kl") is not None:
                    w[2] = max(w[2], lg["max_kl"])
    for key, kinds in worst.items():
        print(f"\n{key}")
        print(f"  {'kind':<14} {'max NMSE':>10} {'max 1-cos':>10} {'max KL':>10}  where")
        for kind, (n, c, kl, where) in kinds.items():
            print(f"  {kind:<14} {n:10.2e} {c:10.2e} {kl:10.2e}  {where}")


if __name__ == "__main__":
    main()
