"""HF transformers' forward pass of a GGUF model, dumped in llorch-diff's format.

    python3 hf_producer.py MODEL.gguf --out DIR --token-ids 1,2,3 [--steps N] [--decode-ids 4,5]
                           [--prompt TEXT]

transformers loads the GGUF itself (dequantizing every tensor to f32); the model runs in f32 with
eager attention, one prompt batch at step 0, then one token per decode step (greedy, or the
`--decode-ids` given, e.g. another producer's generated tokens), with a KV cache.

Dumped for every architecture: `tokens`, `inp_embd`, each layer's output `blk.N.l_out`, `result_norm` and
`result_output`. For families whose modules have llama's layout (llama, mistral, qwen2, qwen3),
also the catalogue's per-layer kinds that module hooks reach: attn_norm, Qcur/Kcur/Vcur (and
qwen3's Qcur_normed/Kcur_normed), Qcur_rope/Kcur_rope, cache_k/cache_v, kq_soft_max, kqv_out,
attn_out, ffn_inp, ffn_norm, ffn_gate, ffn_up, ffn_swiglu, ffn_out, and inp_embd.

transformers' GGUF loader undoes llama.cpp's permutation of llama's Q and K weight rows, so its
queries and keys hold each head's dimensions in rotate-half order (pairs (i, i + d/2)) where
llama.cpp's hold them interleaved (pairs (2i, 2i + 1)). Both RoPEs rotate the same pairs by the
same angles, so mapping every head back to the interleaved order is an exact re-indexing; the
llama family's Qcur, Qcur_rope, Kcur, Kcur_rope and cache_k are written in llama.cpp's order.

Exit status: 0 on success, 2 on a usage or load error, 3 when a package is missing.
"""

import argparse
import hashlib
import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    import gguf  # noqa: F401  (transformers' GGUF reader)
except ImportError as e:  # pragma: no cover - reported to the Rust side
    print(f"missing Python package: {e.name}", file=sys.stderr)
    sys.exit(3)

from llorch_dump import Writer

# Families whose decoder layers are llama's (input_layernorm, self_attn.{q,k,v,o}_proj,
# post_attention_layernorm, mlp.{gate,up,down}_proj), whose RoPE goes through the modeling
# module's `apply_rotary_pos_emb`.
LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3"}
# Families whose GGUF Q/K rows transformers un-permutes (see the module doc).
PERMUTED_QK = {"llama", "mistral"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ids(text):
    return [int(t) for t in text.split(",") if t.strip()] if text else []


def find(model, *paths):
    """The first of the dotted attribute paths that exists on the model."""
    for p in paths:
        m = model
        try:
            for part in p.split("."):
                m = getattr(m, part)
            return m
        except AttributeError:
            continue
    return None


class Capture:
    """Collects one step's checkpoints from module hooks."""

    def __init__(self, model, arch, detail):
        self.model = model
        self.arch = arch
        cfg = model.config
        self.n_head = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_head
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_head
        self.permuted = arch in PERMUTED_QK
        self.values = {}
        self.layer = None
        self.layers = find(model, "model.layers", "transformer.h", "model.decoder.layers", "backbone.layers")
        if self.layers is None:
            raise SystemExit(f"hf_producer: cannot find the decoder layers of {type(model).__name__}")
        self.final_norm = find(model, "model.norm", "transformer.ln_f", "model.final_layernorm", "backbone.norm_f", "model.decoder.final_layer_norm")
        self.detailed = arch in LLAMA_LIKE
        detail["checkpoints"] = "catalogue kinds" if self.detailed else "inp_embd, l_out, result_norm, result_output"
        for i, layer in enumerate(self.layers):
            layer.register_forward_pre_hook(self._enter(i))
            layer.register_forward_hook(self._out(f"blk.{i}.l_out"))
        emb = model.get_input_embeddings()
        if emb is not None:
            emb.register_forward_hook(self._out("inp_embd"))
        if self.final_norm is not None:
            self.final_norm.register_forward_hook(self._out("result_norm"))
        if self.detailed:
            self._hook_llama_like()

    # Hooks -----------------------------------------------------------------------------------

    def _enter(self, i):
        def hook(_module, _args):
            self.layer = i

        return hook

    def _put(self, name, t):
        self.values[name] = t.detach().to(torch.float32).cpu().numpy()

    def _out(self, name, fn=None):
        """A forward hook writing the module's output (its first element when a tuple), batch
        row 0, through `fn`."""

        def hook(_module, _args, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            self._put(name, fn(out) if fn else out[0])

        return hook

    def _in(self, name, fn=None):
        """A forward pre-hook writing the module's first input, batch row 0."""

        def hook(_module, args):
            self._put(name, fn(args[0]) if fn else args[0][0])

        return hook

    def _heads(self, n, permuted):
        """[B, T, n*d] or [B, T, n, d] -> [T, n, d], in llama.cpp's order within each head."""

        def fn(x):
            x = x[0].reshape(x.shape[1], n, self.head_dim)
            return self._interleave(x) if permuted else x

        return fn

    def _interleave(self, x):
        """Rotate-half order (i, i + d/2) back to interleaved (2i, 2i + 1) along the last axis."""
        d = x.shape[-1]
        return x.reshape(*x.shape[:-1], 2, d // 2).transpose(-1, -2).reshape(x.shape)

    def _hook_llama_like(self):
        for i, layer in enumerate(self.layers):
            p = f"blk.{i}."
            at = layer.self_attn
            mlp = layer.mlp
            layer.input_layernorm.register_forward_hook(self._out(p + "attn_norm"))
            at.q_proj.register_forward_hook(self._out(p + "Qcur", self._heads(self.n_head, self.permuted)))
            at.k_proj.register_forward_hook(self._out(p + "Kcur", self._heads(self.n_kv, self.permuted)))
            at.v_proj.register_forward_hook(self._out(p + "Vcur", self._heads(self.n_kv, False)))
            if hasattr(at, "q_norm"):
                at.q_norm.register_forward_hook(self._out(p + "Qcur_normed"))
                at.k_norm.register_forward_hook(self._out(p + "Kcur_normed"))
            # (attn_output, attn_weights): weights [B, n_head, T, F] are the softmax of eager
            # attention (dropout is off in eval).
            at.register_forward_hook(self._out(p + "attn_out"))
            at.register_forward_hook(self._attn_weights(p + "kq_soft_max"))
            at.o_proj.register_forward_pre_hook(self._in(p + "kqv_out"))
            layer.post_attention_layernorm.register_forward_pre_hook(self._in(p + "ffn_inp"))
            layer.post_attention_layernorm.register_forward_hook(self._out(p + "ffn_norm"))
            mlp.gate_proj.register_forward_hook(self._out(p + "ffn_gate"))
            mlp.up_proj.register_forward_hook(self._out(p + "ffn_up"))
            mlp.down_proj.register_forward_pre_hook(self._in(p + "ffn_swiglu"))
            mlp.down_proj.register_forward_hook(self._out(p + "ffn_out"))
        # RoPE is a function of the modeling module, looked up at call time: wrap it to see its
        # results ([B, heads, T, d]).
        module = sys.modules[type(self.layers[0].self_attn).__module__]
        rope = module.apply_rotary_pos_emb
        cap = self

        def traced(q, k, *args, **kwargs):
            qr, kr = rope(q, k, *args, **kwargs)
            p = f"blk.{cap.layer}."
            fix = cap._interleave if cap.permuted else (lambda x: x)
            cap._put(p + "Qcur_rope", fix(qr[0].transpose(0, 1)))
            cap._put(p + "Kcur_rope", fix(kr[0].transpose(0, 1)))
            return qr, kr

        module.apply_rotary_pos_emb = traced

    def _attn_weights(self, name):
        def hook(_module, _args, out):
            if isinstance(out, tuple) and len(out) > 1 and out[1] is not None:
                self._put(name, out[1][0])

        return hook

    def cache(self, past, n_layer):
        """cache_k / cache_v [F, n_kv, d] of every layer after a step."""
        for i in range(n_layer):
            try:
                k, v = past.layers[i].keys, past.layers[i].values
            except AttributeError:
                k, v = past[i][0], past[i][1]
            k = k[0].transpose(0, 1)
            v = v[0].transpose(0, 1)
            if self.permuted:
                k = self._interleave(k)
            self._put(f"blk.{i}.cache_k", k)
            self._put(f"blk.{i}.cache_v", v)


def order(name):
    """Catalogue graph order within a step."""
    kinds = [
        "attn_norm", "qkv", "Qcur", "Qcur_normed", "Qcur_rope", "Kcur", "Kcur_normed", "Kcur_rope",
        "Vcur", "cache_k", "cache_v", "kq_soft_max", "kqv_out", "attn_out", "ffn_inp", "ffn_norm",
        "ffn_gate", "ffn_up", "ffn_swiglu", "ffn_gelu", "ffn_out", "l_out",
    ]
    if name == "tokens":
        return (0, 0, 0)
    if name == "inp_embd":
        return (1, 0, 0)
    if name.startswith("blk."):
        _, layer, kind = name.split(".", 2)
        return (2, int(layer), kinds.index(kind))
    return (3 if name == "result_norm" else 4, 0, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--token-ids", required=True, help="prompt token ids, comma-separated")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--decode-ids", default="", help="decode inputs instead of greedy tokens")
    ap.add_argument("--prompt", default="")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    prompt = ids(a.token_ids)
    decode = ids(a.decode_ids)
    if not prompt:
        print("hf_producer: no prompt token ids", file=sys.stderr)
        return 2
    if decode and len(decode) < a.steps:
        print(f"hf_producer: {a.steps} steps need {a.steps} decode ids, got {len(decode)}", file=sys.stderr)
        return 2
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    path = os.path.abspath(a.model)
    config, fixes = gguf_config(path)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path),
        gguf_file=os.path.basename(path),
        config=config,
        dtype=torch.float32,
        attn_implementation="eager",
    )
    model.eval()
    cfg = model.config
    arch = cfg.model_type
    n_layer = cfg.num_hidden_layers
    vocab = cfg.vocab_size
    if max(prompt + decode) >= vocab or min(prompt + decode) < 0:
        print(f"hf_producer: a token id is outside the vocabulary (0..{vocab})", file=sys.stderr)
        return 2

    detail = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": getattr(gguf, "__version__", "") or _dist_version("gguf"),
        "dtype": "float32",
        "attn_implementation": "eager",
        "model_class": type(model).__name__,
    }
    if fixes:
        detail["config_from_gguf"] = "; ".join(fixes)
    cap = Capture(model, arch, detail)
    # The KV cache argument was renamed `cache` in transformers 5.x.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with Writer(a.out, "transformers") as w:
        w.detail = detail
        w.model = {"file": os.path.basename(path), "sha256": sha256(path), "architecture": _gguf_arch(path, arch), "n_layer": n_layer}
        w.prompt = a.prompt
        w.prompt_tokens = prompt
        w.kv_type = "f32"
        past = None
        generated = []
        inp = prompt
        pos = 0
        with torch.no_grad():
            for step in range(a.steps + 1):
                cap.values = {}
                x = torch.tensor([inp], dtype=torch.long)
                positions = torch.arange(pos, pos + len(inp), dtype=torch.long)[None, :]
                out = model(
                    input_ids=x,
                    position_ids=positions,
                    **{cache_arg: past},
                    use_cache=True,
                    output_attentions=cap.detailed,
                )
                past = out.past_key_values
                logits = out.logits[0]
                cap._put("result_output", logits)
                if cap.detailed and past is not None:
                    cap.cache(past, n_layer)
                cap.values["tokens"] = np.asarray(inp, dtype=np.float32)
                for name in sorted(cap.values, key=order):
                    w.put(step, name, cap.values[name])
                nxt = int(torch.argmax(logits[-1]).item())
                generated.append(nxt)
                pos += len(inp)
                if step < a.steps:
                    inp = [decode[step]] if decode else [nxt]
        w.generated_tokens = generated
        w.finish()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {arch}, {n_layer} layers, generated {generated}", file=sys.stderr)
    return 0


def gguf_field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types and f.types[0] == gguf.GGUFValueType.STRING else v.tolist()[0]


def gguf_config(path):
    """transformers' config of the GGUF, with what its GGUF mapping leaves at a default but the
    file says: the head size (`ARCH.attention.key_length`; qwen3's mapping does not read it and
    assumes 128), and no padding token where the class default lies outside a small vocabulary."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    fixes = []
    reader = gguf.GGUFReader(path)
    arch = gguf_field(reader, "general.architecture")
    key_length = gguf_field(reader, f"{arch}.attention.key_length")
    if key_length and hasattr(config, "head_dim") and config.head_dim != key_length:
        fixes.append(f"head_dim {key_length} from {arch}.attention.key_length (mapping gave {config.head_dim})")
        config.head_dim = int(key_length)
    if arch == "gemma3":
        # llama.cpp scales queries by 1/sqrt(head size) (by 1/sqrt(n_embd / n_head) on the
        # 62-layer model); transformers by query_pre_attn_scalar^-1/2, which its mapping leaves
        # at the class default 256.
        n_layer = gguf_field(reader, f"{arch}.block_count")
        scalar = config.hidden_size // config.num_attention_heads if n_layer == 62 else config.head_dim
        if getattr(config, "query_pre_attn_scalar", None) != scalar:
            fixes.append(f"query_pre_attn_scalar {scalar} as llama.cpp scales queries (mapping gave {config.query_pre_attn_scalar})")
            config.query_pre_attn_scalar = scalar
        # The file's RoPE scaling applies to the global layers; the mapping does not read it.
        kind = gguf_field(reader, f"{arch}.rope.scaling.type")
        factor = gguf_field(reader, f"{arch}.rope.scaling.factor")
        params = getattr(config, "rope_parameters", None)
        if kind == "linear" and factor and isinstance(params, dict) and "full_attention" in params:
            full = dict(params["full_attention"])
            if full.get("rope_type") != "linear":
                full.update({"rope_type": "linear", "factor": float(factor)})
                params["full_attention"] = full
                fixes.append(f"linear RoPE scaling x{factor} on the global layers from {arch}.rope.scaling.*")
    pad = getattr(config, "pad_token_id", None)
    if isinstance(pad, int) and pad >= config.vocab_size:
        fixes.append(f"pad_token_id {pad} (a default) is outside the vocabulary: none")
        config.pad_token_id = None
    return config, fixes


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return ""


def _gguf_arch(path, fallback):
    try:
        r = gguf.GGUFReader(path)
        f = r.fields["general.architecture"]
        return bytes(f.parts[f.data[0]]).decode()
    except Exception:
        return fallback


if __name__ == "__main__":
    sys.exit(main())
