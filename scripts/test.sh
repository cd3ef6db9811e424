#!/usr/bin/env sh
# The test command: fetch the real model (cached, sha256-verified), set up the project's Python
# environment (.venv: numpy for the .npy interoperability test; PyTorch, transformers and gguf for
# the hf producer's tests), build the candle example engine, then run every test in release
# mode (numerics are slow in debug) and print the totals.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
./scripts/fetch-model.sh
./scripts/python-env.sh hf
# The worked example of `run --candidate` is its own workspace package (candle-core; about 250
# CPU-seconds to build the first time): tests/candle_engine.rs runs its binary.
cargo build --release -p candle-engine
# llama.cpp and the shim first: the library's own unit tests link their archives, which the
# `llorch-diff` package's build script compiles.
cargo build --release
# Run the suite, keeping cargo's exit status, then close with the totals over every test binary
# (cargo's own last line is the doc-tests', which says little about the run).
LOG="$(mktemp)"; STATUS="$(mktemp)"
trap 'rm -f "$LOG" "$STATUS"' EXIT
{ cargo test --release --no-fail-fast "$@" 2>&1 && echo 0 > "$STATUS" || echo $? > "$STATUS"; } | tee "$LOG"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "all tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
exit "$(cat "$STATUS")"
