"""Rewrites a llama-architecture GGUF with f32 weights as a phi3 one (numpy and gguf only).

    python3 make_phi3.py SRC.gguf OUT.gguf

phi3 is an architecture that both llama.cpp and transformers load from GGUF and that the Rust
reference does not implement: fused QKV projection (`attn_qkv` = Q, K, V rows), fused
gate/up projection (`ffn_up` = gate rows then up rows), NeoX RoPE, RMSNorm. The tokenizer and
every hyperparameter are the source's (keys renamed `llama.*` -> `phi3.*`). Used by the tests on
a `make-model --preset tiny-llama --quant f32` model; Q and K keep the source's row order, which
is only a different set of weights for phi3's RoPE.
"""

import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter


def field_value(f):
    t = f.types[0]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8"), t, None
    if t == GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data], t, sub
        return [f.parts[i].tolist()[0] for i in f.data], t, sub
    return f.parts[f.data[0]].tolist()[0], t, None


def main(src, out):
    r = GGUFReader(src)
    arch = field_value(r.fields["general.architecture"])[0]
    if arch != "llama":
        raise SystemExit(f"{src}: architecture {arch}, expected llama")
    w = GGUFWriter(out, "phi3")
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value, t, sub = field_value(f)
        key = "phi3." + name[len("llama."):] if name.startswith("llama.") else name
        if t == GGUFValueType.ARRAY:
            if sub == GGUFValueType.STRING:
                w.add_array(key, value)
            else:
                w.add_key_value(key, list(value), GGUFValueType.ARRAY, sub)
        else:
            w.add_key_value(key, value, t)
    tensors = {t.name: t for t in r.tensors}

    def data(name):
        t = tensors[name]
        if t.tensor_type.name != "F32":
            raise SystemExit(f"{src}: {name} is {t.tensor_type.name}; make the source with --quant f32")
        return np.asarray(t.data, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])

    n_layer = 1 + max(int(n.split(".")[1]) for n in tensors if n.startswith("blk."))
    for name in ("token_embd.weight", "output_norm.weight", "output.weight"):
        if name in tensors:
            w.add_tensor(name, data(name))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", data(p + "attn_norm.weight"))
        qkv = np.concatenate([data(p + k + ".weight") for k in ("attn_q", "attn_k", "attn_v")], axis=0)
        w.add_tensor(p + "attn_qkv.weight", qkv)
        w.add_tensor(p + "attn_output.weight", data(p + "attn_output.weight"))
        w.add_tensor(p + "ffn_norm.weight", data(p + "ffn_norm.weight"))
        up = np.concatenate([data(p + "ffn_gate.weight"), data(p + "ffn_up.weight")], axis=0)
        w.add_tensor(p + "ffn_up.weight", up)
        w.add_tensor(p + "ffn_down.weight", data(p + "ffn_down.weight"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _np_type(t):
    return {
        GGUFValueType.UINT8: np.uint8, GGUFValueType.INT8: np.int8, GGUFValueType.UINT16: np.uint16,
        GGUFValueType.INT16: np.int16, GGUFValueType.UINT32: np.uint32, GGUFValueType.INT32: np.int32,
        GGUFValueType.FLOAT32: np.float32, GGUFValueType.UINT64: np.uint64, GGUFValueType.INT64: np.int64,
        GGUFValueType.FLOAT64: np.float64, GGUFValueType.BOOL: np.bool_,
    }[t]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2])
