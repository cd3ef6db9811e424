#!/usr/bin/env sh
# The test command: fetch the real model (cached, sha256-verified), make sure numpy is there for
# the .npy interoperability test, then run every test in release mode (numerics are slow in debug).
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
./scripts/fetch-model.sh
python3 -c "import numpy" 2>/dev/null || python3 -m pip install --quiet numpy
cargo test --release "$@"
