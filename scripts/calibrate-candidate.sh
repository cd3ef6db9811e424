#!/usr/bin/env sh
# Measures the distances behind the `independent*` tolerance sets (src/compare/default_tolerances.toml):
# the candle example engine through `run --candidate` on SmolLM2-135M Q4_1 and the tiny-llama preset
# in several weight types, two prompts, 4 decode steps, KV f32; once with quantized matmuls (judged
# against the reference in ggml mode) and once dequantized to f32 (against the reference in exact
# mode), plus the reference in exact mode against llama.cpp, also on tiny-gpt2, tiny-qwen2 and
# tiny-qwen3. Prints the largest NMSE, 1-cosine and
# KL per kind and pair. Needs `cargo build --release -p candle-engine` and the main binary.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN=target/release/llorch-diff
ENGINE="$ROOT/target/release/candle-engine {model} {out} --prompt-tokens {prompt_tokens} --tokens {tokens} --steps {steps}"
OUT=out/calib
mkdir -p "$OUT"
LONG="The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill"
one() { # NAME MODEL-ARGS... -- PROMPT
    name=$1; shift
    for mode in ggml exact; do
        flag=""; [ "$mode" = exact ] && flag="--dequantize"
        "$BIN" run "$@" --steps 4 --out "$OUT/$name-$mode" --report "$OUT/$name-$mode.md" \
            --json "$OUT/$name-$mode.json" --candidate "$ENGINE $flag" --candidate-mode "$mode" \
            --tolerances independent >/dev/null 2>"$OUT/$name-$mode.log" || true
        if [ "$mode" = exact ]; then
            "$BIN" compare "$OUT/$name-$mode/llama.cpp" "$OUT/$name-$mode/reference" \
                --json "$OUT/$name-refexact.cmp.json" >/dev/null 2>&1 || true
        fi
    done
}
one smol-hello models/SmolLM2-135M-Instruct.Q4_1.gguf "Hello"
one smol-long models/SmolLM2-135M-Instruct.Q4_1.gguf "$LONG"
for q in f32 f16 q8_0 q4_0 q4_1 q5_0 q4_k q6_k; do
    one "tiny-$q-hello" tiny-llama --quant "$q" "Hello"
    one "tiny-$q-long" tiny-llama --quant "$q" --seed 2 "$LONG"
done
# The other families, which the candle engine does not run: the reference in exact mode against
# llama.cpp (what an f32 engine of theirs would measure).
for p in tiny-gpt2 tiny-qwen2 tiny-qwen3; do
    for q in f16 q8_0 q4_0 q4_k; do
        for prompt in "Hello" "$LONG"; do
            n=$(printf %s "$prompt" | wc -c)
            "$BIN" run "$p" "$prompt" --quant "$q" --mode exact --steps 4 --out "$OUT/$p-$q-$n-refexact" \
                --report "$OUT/$p-$q-$n-refexact.md" --json "$OUT/$p-$q-$n-refexact.cmp.json" \
                >/dev/null 2>&1 || true
        done
    done
done
python3 scripts/candidate_distances.py "$OUT"/*.json
