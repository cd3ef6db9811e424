"""Rewrites a llorch-diff dump folder (.bin files + manifest.json) as .npy files saved by numpy,
the way another engine would dump its checkpoints: step{N}/{name}.npy, no manifest.

Usage: write_npy.py SRC_DIR DST_DIR

To exercise every layout the reader accepts, checkpoints are saved in turn as float32 C order,
float64 C order and float32 Fortran order.
"""
import json
import os
import sys

import numpy as np


def read_bin(path):
    with open(path, "rb") as f:
        raw = f.read()
    n_dims = int(np.frombuffer(raw, dtype="<i4", count=1)[0])
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype="<i8", count=n_dims, offset=4))
    data = np.frombuffer(raw, dtype="<f4", offset=4 + 8 * n_dims)
    return data.reshape(shape)


def main(src, dst):
    with open(os.path.join(src, "manifest.json")) as f:
        manifest = json.load(f)
    for i, entry in enumerate(manifest["checkpoints"]):
        array = read_bin(os.path.join(src, entry["file"]))
        assert list(array.shape) == entry["shape"], (entry, array.shape)
        if i % 3 == 1:
            array = array.astype(np.float64)
        elif i % 3 == 2:
            array = np.asfortranarray(array)
        out = os.path.join(dst, "step%d" % entry["step"], entry["name"] + ".npy")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        np.save(out, array)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
