"""Writes llorch-diff dump folders from a Python inference engine (numpy only).

A dump folder holds one file per checkpoint and step, ``step{N}/{name}.bin``, each
``[n_dims: i32][shape: i64 x n_dims, outermost first][data: f32 x prod(shape)]``, little-endian,
C order, and a ``manifest.json``. Names are llorch-diff's catalogue names (``blk.0.attn_norm``,
``result_output``, ...). The folder is staged beside its target and renamed into place by
``finish()``; a writer closed without finishing removes what it wrote.

    with Writer("out/my-engine", "my-engine") as w:
        w.prompt_tokens = [1, 15043]
        w.put(0, "blk.0.l_out", hidden_states)   # any array-like of floats
        w.finish()
"""

import json
import os
import re
import shutil

import numpy as np

FORMAT = "llorch-diff-dump/1"
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


class Writer:
    def __init__(self, target, producer):
        self.target = os.path.abspath(target)
        if os.path.exists(self.target) and not _replaceable(self.target):
            raise ValueError(
                f"{target}: exists and is not a dump folder (no manifest.json); refusing to overwrite it"
            )
        parent, name = os.path.split(self.target)
        os.makedirs(parent, exist_ok=True)
        self.staging = os.path.join(parent, f".{name}.partial-{os.getpid()}")
        shutil.rmtree(self.staging, ignore_errors=True)
        os.makedirs(self.staging)
        self.producer = producer
        self.detail = {}
        self.model = {"file": "", "sha256": "", "architecture": "", "n_layer": 0}
        self.prompt = ""
        self.prompt_tokens = []
        self.generated_tokens = []
        self.kv_type = ""
        self._entries = []
        self._done = False

    def put(self, step, name, array):
        """Writes checkpoint `name` of `step`; the array's shape is recorded outermost first."""
        if not _NAME.match(name):
            raise ValueError(f"checkpoint {name!r}: names are catalogue names (letters, digits, '.', '_', '-')")
        if any(e["step"] == step and e["name"] == name for e in self._entries):
            raise ValueError(f"checkpoint {name!r}: written twice at step {step}")
        a = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
        rel = f"step{int(step)}/{name}.bin"
        path = os.path.join(self.staging, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(np.int32(a.ndim).astype("<i4").tobytes())
            f.write(np.asarray(a.shape, dtype="<i8").tobytes())
            f.write(a.tobytes(order="C"))
        self._entries.append({"step": int(step), "name": name, "file": rel, "shape": list(a.shape)})

    def finish(self):
        manifest = {
            "format": FORMAT,
            "producer": self.producer,
            "producer_detail": {str(k): str(v) for k, v in self.detail.items()},
            "model": self.model,
            "prompt": self.prompt,
            "prompt_tokens": [int(t) for t in self.prompt_tokens],
            "generated_tokens": [int(t) for t in self.generated_tokens],
            "kv_type": self.kv_type,
            "threads": 0,
            "steps": max([e["step"] for e in self._entries], default=0),
            "checkpoints": self._entries,
        }
        with open(os.path.join(self.staging, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        if os.path.exists(self.target):
            shutil.rmtree(self.target)
        os.rename(self.staging, self.target)
        self._done = True
        return self.target

    def close(self):
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _replaceable(path):
    return os.path.isfile(os.path.join(path, "manifest.json")) or (
        os.path.isdir(path) and not os.listdir(path)
    )
