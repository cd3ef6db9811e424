#!/usr/bin/env sh
# Measures the distances behind the built-in `exact` tolerance set (src/compare/default_tolerances.toml):
# the reference in exact mode (f32 mathematics) against llama.cpp (Q8-rounded activations) over
# SmolLM2-135M in Q4_1 and re-quantized to Q4_K_M, Q8_0 and BF16, with prompts of 1, 18, 81 (chat),
# 106 (code), 130 (numbers) and 275 tokens (English), KV f32 and f16, 4 decode steps (8 on two
# runs); and the presets tiny-llama, tiny-gpt2, tiny-qwen2 and tiny-qwen3 in f32, f16, bf16, q8_0,
# q4_0, q4_k and iq4_xs with a 1-token prompt (KV f32) and a 44-token one (KV f16): 81 runs, about
# 25 minutes on two cores. Prints one verdict per run (with the built-in set of the binary used),
# the largest NMSE, 1-cosine and KL per kind over all runs (scripts/candidate_distances.py), the
# gates they imply (scripts/exact_gates.py) and the runs that the `exact` gates of a tolerance
# file fail (scripts/check_gates.py; default: the source tree's default_tolerances.toml).
#
#   scripts/calibrate-exact.sh                 # all runs, then the summary
#   SKIP_RUNS=1 scripts/calibrate-exact.sh     # only the summary of the JSON already in $OUT
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN=${BIN:-target/release/llorch-diff}
OUT=${OUT:-out/calib-exact}
SMOL=models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT/reports" "$OUT/models"

HELLO="Hello"
FOX="The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill"
CHAT="<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
My tomato plants have yellow leaves at the bottom and some brown spots. I water them every evening. What is going wrong, and what should I do this week?<|im_end|>
<|im_start|>assistant
"
CODE="def merge_sorted(a: list[int], b: list[int]) -> list[int]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out.append(a[i]); i += 1
        else:
            out.append(b[j]); j += 1
    return out + a[i:] + b[j:]
"
NUMS="Invoice 2024-0173: 12 x 3.75 = 45.00; 7 x 19.99 = 139.93; 250 x 0.08 = 20.00. Subtotal 204.93, tax 8.25% = 16.91, total 221.84. Due 2024-03-15, account 4471-0098-2210."
PARA="The history of the lighthouse is, in many ways, the history of coastal trade itself. Long before electric lamps and automated beacons, communities that depended on the sea lit fires on headlands to guide fishing boats home after dark. As merchant shipping grew, these informal signals gave way to purpose-built towers, first of timber and later of stone, whose keepers tended oil lamps through the night and kept logs of passing vessels and the weather. The invention of the Fresnel lens in the early nineteenth century changed everything: a carefully stacked series of glass prisms could gather the light of a single flame and throw it as a concentrated beam visible more than twenty miles out to sea. Each lighthouse was given its own pattern of flashes, so that a navigator who counted the seconds between them could tell exactly which stretch of coast lay ahead. Keeping a light was lonely, demanding work. Keepers and their families often lived on remote rocks for months at a time, trimming wicks, polishing brass and glass, winding the clockwork that turned the lens, and sounding fog signals when the mist rolled in. Storms could cut them off from supplies for weeks. Today almost every lighthouse in the world is automated, monitored from distant control rooms, and many towers have become museums, holiday cottages or simply landmarks, but their beams still sweep the water each night for anyone who needs them."

one() { # NAME RUN-ARGS... (skipped when its JSON exists: delete $OUT to measure afresh)
    name=$1; shift
    [ -f "$OUT/$name.json" ] && { echo "$name (done)"; return; }
    if nice -n 5 "$BIN" run "$@" --mode exact --out "$OUT/run" --report "$OUT/reports/$name.md" \
        --json "$OUT/$name.json" >"$OUT/reports/$name.log" 2>&1; then v=PASS; else v=FAIL; fi
    echo "$name $v"
}

smol() { # TAG MODEL KV-TYPE PROMPT-NAMES...
    tag=$1 m=$2 kv=$3; shift 3
    for p in "$@"; do
        eval "text=\$$p"
        one "smol-$tag-$p-$kv" "$m" "$text" --kv-type "$kv" --steps 4
    done
}

if [ "${SKIP_RUNS:-0}" != 1 ]; then
    for kv in f32 f16; do smol q4_1 "$SMOL" $kv HELLO FOX CHAT CODE NUMS; done
    one smol-q4_1-HELLO-f32-8steps "$SMOL" "Hello" --steps 8
    for t in Q4_K_M Q8_0 BF16; do
        [ -f "$OUT/models/smol-$t.gguf" ] || nice -n 5 "$BIN" quantize "$SMOL" "$OUT/models/smol-$t.gguf" $t >/dev/null
    done
    for kv in f32 f16; do smol Q4_K_M "$OUT/models/smol-Q4_K_M.gguf" $kv HELLO; done
    for t in Q8_0 BF16; do smol "$t" "$OUT/models/smol-$t.gguf" f32 HELLO; done
    for p in tiny-llama tiny-gpt2 tiny-qwen2 tiny-qwen3; do
        for q in f32 f16 bf16 q8_0 q4_0 q4_k iq4_xs; do
            one "$p-$q-HELLO-f32" "$p" "Hello" --quant $q --seed 3 --steps 4
            one "$p-$q-FOX-f16" "$p" "$FOX" --quant $q --seed 4 --kv-type f16 --steps 4
        done
    done
    smol q4_1 "$SMOL" f32 PARA
    smol Q4_K_M "$OUT/models/smol-Q4_K_M.gguf" f32 FOX CHAT CODE
    for t in Q8_0 BF16; do smol "$t" "$OUT/models/smol-$t.gguf" f16 HELLO FOX; done
    one smol-q4_1-CODE-f16-8steps "$SMOL" "$CODE" --kv-type f16 --steps 8
    smol q4_1 "$SMOL" f16 PARA
    rm -rf "$OUT/run"
fi
echo "$(ls "$OUT"/*.json | wc -l) runs"
python3 scripts/candidate_distances.py "$OUT"/*.json
python3 scripts/exact_gates.py "$OUT"/*.json
python3 scripts/check_gates.py "${TOLERANCES:-src/compare/default_tolerances.toml}" exact "$OUT"/*.json
