#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/seeds/<target>/ (committed, small).

Usage: fuzz/make_seeds.py [GGUF ...]

Seeds come from the repository's own test inputs: dump files and manifests of the stored
baselines in checkpoints/, the built-in tolerance file and the baselines' gate files, the
tokenizer corpus of tests/tokenizer_corpus.rs; random bytes for the structured
`tokenizer_vocab`; `.npy` files and small GGUF files are written
here by hand from the format descriptions. Each GGUF given on the command line (e.g. models made
with `llorch-diff make-model --preset tiny-llama`) is cut down to its metadata and its
smallest tensors (at most 4 KiB of data) so that the seed stays small.
"""
import ast
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- dump files and manifests from the stored baselines ----------------------------------
def dump_and_manifest_seeds():
    for base in sorted(os.listdir(os.path.join(ROOT, "checkpoints"))):
        folder = os.path.join(ROOT, "checkpoints", base, "llama.cpp")
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        small = dict(manifest)
        small["checkpoints"] = manifest["checkpoints"][:3]
        put("manifest", f"{base}.json", json.dumps(small, indent=1).encode())
        entries = sorted(manifest["checkpoints"], key=lambda e: os.path.getsize(os.path.join(folder, e["file"])))
        for e in entries[:3]:
            with open(os.path.join(folder, e["file"]), "rb") as f:
                put("dump", f"{base}-{e['name']}.bin", f.read())
        gate = os.path.join(ROOT, "checkpoints", base, "gate.toml")
        with open(gate, "rb") as f:
            put("tolerance", f"{base}-gate.toml", f.read())
    put("dump", "scalar.bin", struct.pack("<i", 0) + struct.pack("<f", 1.5))
    put("dump", "empty.bin", struct.pack("<iq", 1, 0))
    put("dump", "3d.bin", struct.pack("<iqqq", 3, 1, 2, 2) + struct.pack("<4f", 0, -0.0, 1e-30, 3e38))


def tolerance_seeds():
    with open(os.path.join(ROOT, "src", "compare", "default_tolerances.toml"), "rb") as f:
        put("tolerance", "default_tolerances.toml", f.read())
    put("tolerance", "override.toml",
        b'[ggml.default]\nnmse = 1e-9\n\n[ggml.result_output]\nkl = 0.01\ntop1 = 1.0\n\n'
        b'[exact.attn_norm]\ncosine = 0.999\nmax_abs = 0.5\nmax_rel = 0.1\n')


# ---- .npy files --------------------------------------------------------------------------
def npy(descr, fortran, shape, payload, version=1):
    shape_text = "(" + "".join(f"{d}, " for d in shape).rstrip(" ")
    if len(shape) > 1:
        shape_text = shape_text.rstrip(",")
    shape_text += ")"
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}"
    pre = 10 if version == 1 else 12
    pad = 64 - (pre + len(header) + 1) % 64
    header = (header + " " * pad + "\n").encode()
    out = b"\x93NUMPY" + bytes([version, 0])
    out += struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return out + header + payload


def npy_seeds():
    put("npy", "f32_c.npy", npy("<f4", False, (2, 3), struct.pack("<6f", *range(6))))
    put("npy", "f64_c.npy", npy("<f8", False, (3,), struct.pack("<3d", 1, 2, 3)))
    put("npy", "f32_fortran.npy", npy("<f4", True, (2, 2), struct.pack("<4f", 1, 3, 2, 4)))
    put("npy", "f32_scalar.npy", npy("<f4", False, (), struct.pack("<f", 7)))
    put("npy", "f32_empty.npy", npy("<f4", False, (0, 4), b""))
    put("npy", "f32_be_v2.npy", npy(">f4", False, (2,), struct.pack(">2f", 1, 2), version=2))


# ---- tokenizer texts ---------------------------------------------------------------------
def tokenizer_seeds():
    src = open(os.path.join(ROOT, "tests", "tokenizer_corpus.rs"), encoding="utf-8").read()
    n = 0
    for m in re.finditer(r'^\s+("(?:[^"\\]|\\.)*"),\s*$', src, re.M):
        lit = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda g: "\\U%08x" % int(g.group(1), 16), m.group(1))
        try:
            text = ast.literal_eval(lit)
        except (ValueError, SyntaxError):
            continue
        put("tokenizer", f"text{n:03}", text.encode("utf-8"))
        n += 1


# ---- GGUF --------------------------------------------------------------------------------
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gvalue(ty, v):
    if ty == 8:
        return gstr(v)
    if ty == 9:
        ety, items = v
        return struct.pack("<IQ", ety, len(items)) + b"".join(gvalue(ety, x) for x in items)
    return struct.pack(SCALAR[ty], v)


def gguf(kvs, tensors, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, ty, v in kvs:
        out += gstr(k) + struct.pack("<I", ty) + gvalue(ty, v)
    offset = 0
    offsets = []
    for name, dims, ty, data in tensors:
        offsets.append(offset)
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, offset)
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for (_, _, _, data), off in zip(tensors, offsets):
        out += data + b"\0" * (-len(data) % alignment)
    return out


def read_gguf(path):
    b = open(path, "rb").read()
    pos = 4

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def rstr():
        n = rd("<Q")
        nonlocal pos
        s = b[pos:pos + n]
        pos += n
        return s

    def rval(ty):
        if ty == 8:
            return rstr()
        if ty == 9:
            ety, n = rd("<IQ")
            return (ety, [rval(ety) for _ in range(n)])
        return rd(SCALAR[ty])

    version, n_t, n_kv = rd("<IQQ")
    kvs = []
    for _ in range(n_kv):
        k = rstr().decode()
        ty = rd("<I")
        kvs.append((k, ty, rval(ty)))
    infos = []
    for _ in range(n_t):
        name = rstr().decode()
        nd = rd("<I")
        dims = [rd("<Q") for _ in range(nd)]
        ty, off = rd("<IQ")
        infos.append((name, dims, ty, off))
    align = next((v for k, _, v in kvs if k == "general.alignment"), 32)
    data_start = (pos + align - 1) // align * align
    ends = sorted(o for *_, o in infos) + [len(b) - data_start]
    tensors = []
    for name, dims, ty, off in infos:
        end = min(e for e in ends if e > off)
        tensors.append((name, dims, ty, b[data_start + off:data_start + end]))
    return kvs, tensors, align


def gguf_seeds(models):
    every_type = [
        ("general.architecture", 8, "llama"), ("t.u8", 0, 200), ("t.i8", 1, -5), ("t.u16", 2, 60000),
        ("t.i16", 3, -30000), ("t.u32", 4, 1 << 31), ("t.i32", 5, -7), ("t.f32", 6, 0.5),
        ("t.bool", 7, True), ("t.str", 8, "héllo"), ("t.arr", 9, (4, [1, 2, 3])),
        ("t.nested", 9, (9, [(8, ["a", "b"]), (0, [1])])), ("t.u64", 10, 1 << 40),
        ("t.i64", 11, -(1 << 40)), ("t.f64", 12, 2.5), ("general.alignment", 4, 64),
    ]
    q8 = struct.pack("<e", 0.25) + bytes(range(32))
    put("gguf", "every_type.gguf", gguf(every_type, [
        ("a.weight", [4, 2], 0, struct.pack("<8f", *range(8))),
        ("b.weight", [32, 2], 8, q8 * 2),
        ("c.weight", [8], 1, struct.pack("<8e", *range(8))),
    ], alignment=64))
    spm_tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "\u2581h", "el", "lo", "\u2581hello"]
    put("gguf", "spm_vocab.gguf", gguf([
        ("tokenizer.ggml.model", 8, "llama"),
        ("tokenizer.ggml.tokens", 9, (8, spm_tokens)),
        ("tokenizer.ggml.scores", 9, (6, [float(-i) for i in range(len(spm_tokens))])),
        ("tokenizer.ggml.token_type", 9, (5, [2, 3, 3] + [6] * 256 + [1] * 5)),
        ("tokenizer.ggml.add_space_prefix", 7, True),
    ], []))
    bpe_tokens = ["!", "H", "e", "l", "o", "\u0120", "\u0120w", "He", "ll", "llo", "Hello", "<|im_start|>"]
    put("gguf", "bpe_vocab.gguf", gguf([
        ("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.pre", 8, "smollm"),
        ("tokenizer.ggml.tokens", 9, (8, bpe_tokens)),
        ("tokenizer.ggml.token_type", 9, (5, [1] * 11 + [4])),
        ("tokenizer.ggml.merges", 9, (8, ["H e", "l l", "ll o", "He llo", "\u0120 w"])),
        ("tokenizer.ggml.bos_token_id", 4, 11), ("tokenizer.ggml.add_bos_token", 7, True),
    ], []))
    for path in models:
        kvs, tensors, align = read_gguf(path)
        kept, size = [], 0
        for t in sorted(tensors, key=lambda t: len(t[3])):
            if size + len(t[3]) > 4096:
                break
            kept.append(t)
            size += len(t[3])
        put("gguf", os.path.basename(path), gguf(kvs, kept, alignment=align))


def tokenizer_vocab_seeds():
    # Structured input (arbitrary): any bytes decode to some vocabulary; a few to start from.
    import random
    rng = random.Random(1)
    for i in range(4):
        put("tokenizer_vocab", f"random{i}", bytes(rng.getrandbits(8) for _ in range(256 << i)))


if __name__ == "__main__":
    dump_and_manifest_seeds()
    tolerance_seeds()
    npy_seeds()
    tokenizer_seeds()
    tokenizer_vocab_seeds()
    gguf_seeds(sys.argv[1:])
