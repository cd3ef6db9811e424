#!/usr/bin/env python3
"""Largest NMSE and 1-cosine per checkpoint kind in `llorch-diff compare --json` files (the
figures the tolerances are calibrated from).  usage: nmse-by-kind.py FILE.json..."""
import json
import sys

worst = {}
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        m = r.get("metrics") or {}
        if m.get("nmse") is None:
            continue
        k = r["kind"]
        n, c = worst.get(k, (0.0, 0.0))
        worst[k] = (max(n, m["nmse"]), max(c, 1.0 - m["cosine"]))
for k, (n, c) in worst.items():
    print(f"{k:15} nmse {n:9.2e}  1-cos {c:9.2e}")
