"""A stand-in engine for `run --candidate` tests: it "computes" some checkpoints by reading
llama.cpp's dumps of the same run (the folder beside its {out}) and writes them, scaled by
(1 + noise * sin(i)), through python/llorch_dump.py.

    candidate_copy.py OUT PROMPT_TOKENS NOISE [broken|claims]

`broken` truncates one checkpoint file after the folder is finished; `claims` records in the
manifest that the engine produces every l_out and the logits while it dumps only layer 0's.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import llorch_dump  # noqa: E402


def read_bin(path):
    with open(path, "rb") as f:
        n = int(np.frombuffer(f.read(4), "<i4")[0])
        shape = tuple(int(d) for d in np.frombuffer(f.read(8 * n), "<i8"))
        return np.frombuffer(f.read(), "<f4").reshape(shape)


def main():
    out, prompt_tokens, noise = sys.argv[1], sys.argv[2], float(sys.argv[3])
    variant = sys.argv[4] if len(sys.argv) > 4 else ""
    llama = os.path.join(os.path.dirname(os.path.abspath(out)), "llama.cpp")
    with open(os.path.join(llama, "manifest.json")) as f:
        manifest = json.load(f)
    wanted = lambda n: n.endswith(".l_out") or n == "result_output"
    if variant == "claims":
        wanted = lambda n: n == "blk.0.l_out"
    with llorch_dump.Writer(out, "candidate-copy") as w:
        w.prompt_tokens = [int(t) for t in prompt_tokens.split(",") if t]
        w.generated_tokens = manifest["generated_tokens"]
        if variant == "claims":
            w.detail["checkpoints"] = "blk.*.l_out,result_output"
        for e in manifest["checkpoints"]:
            if not wanted(e["name"]):
                continue
            a = read_bin(os.path.join(llama, e["file"]))
            scale = 1.0 + noise * np.sin(np.arange(a.size, dtype=np.float64)).reshape(a.shape)
            w.put(e["step"], e["name"], (a * scale).astype(np.float32))
        w.finish()
    if variant == "broken":
        victim = os.path.join(out, "step0", "blk.0.l_out.bin")
        size = os.path.getsize(victim)
        with open(victim, "r+b") as f:
            f.truncate(size // 2)
    print("candidate-copy: done", file=sys.stderr)


if __name__ == "__main__":
    main()
