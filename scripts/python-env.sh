#!/usr/bin/env sh
# The project's Python environment: a virtual environment at .venv (ignored by git) with what the
# tests need (numpy, for the .npy interoperability test). Idempotent; prints nothing when ready.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python3" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python3" -c "import numpy" 2>/dev/null; then
    "$VENV/bin/python3" -m pip install --quiet -r "$ROOT/scripts/requirements.txt"
fi
