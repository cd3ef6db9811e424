#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS_PER_TARGET seconds (default 60), one target at a
# time, and prints the executions of each target and their total.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target keeps
# its corpus in fuzz/corpus/<target> (grown from the committed seeds in fuzz/seeds/<target>)
# and writes what it finds (crash-*, leak-*, timeout-*, oom-*) to fuzz/artifacts/<target>/.
# The `tokenizer` target reads models/SmolLM2-135M-Instruct.Q4_1.gguf, or LLORCH_FUZZ_MODEL.
# Extra libFuzzer flags can be passed in FUZZ_FLAGS (e.g. FUZZ_FLAGS="-jobs=2 -workers=2").
# A finding is replayed with `fuzz/target/<host>/release/<target> <file>` or
# `cargo +nightly fuzz run <target> <file>`.
#
# Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail

secs=${1:-60}
shift || true
cd "$(dirname "$0")/../fuzz"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Release code with debug assertions (so an integer overflow is a finding, not a wrap), built
# once; FUZZ_NO_BUILD=1 runs the binaries already in fuzz/target.
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    build=()
    [ "${#targets[@]}" -eq 1 ] && build=("${targets[0]}")
    nice -n 10 cargo +nightly fuzz build --debug-assertions "${build[@]}" >&2
fi
bin=target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

total=0
found=0
printf '%-16s %14s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    status=ok
    # -malloc_limit_mb: no single allocation may exceed 512 MiB (a length field trusted before
    # it is checked against the input shows up as an "out-of-memory (malloc(...))" finding).
    dirs=("corpus/$t")
    [ -d "seeds/$t" ] && dirs+=("seeds/$t")
    if ! nice -n 10 "$bin/$t" "${dirs[@]}" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 ${FUZZ_FLAGS:-} >"$log" 2>&1; then
        status="FOUND SOMETHING: see $log and fuzz/artifacts/$t/"
        found=1
    fi
    execs=$(awk '/stat::number_of_executed_units/ {n += $2} END {print n + 0}' "$log")
    rate=$(awk -v n="$execs" -v s="$secs" 'BEGIN {printf "%d", n / (s > 0 ? s : 1)}')
    total=$((total + execs))
    printf '%-16s %14d %10d  %s\n' "$t" "$execs" "$rate" "$status"
done
printf '%-16s %14d\n' total "$total"
exit "$found"
