#!/usr/bin/env sh
# The project's Python environment: a virtual environment at .venv (ignored by git).
#   scripts/python-env.sh      numpy (the .npy interoperability test, python/llorch_dump.py)
#   scripts/python-env.sh hf   also PyTorch, transformers and gguf for `llorch-diff hf`
#                              (scripts/requirements-hf.txt; LLORCH_TORCH_INDEX=URL installs torch
#                              from that wheel index first, e.g. a CPU-only one)
# Idempotent; prints nothing when everything is already there.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python3" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python3" -c "import numpy" 2>/dev/null; then
    "$VENV/bin/python3" -m pip install --quiet -r "$ROOT/scripts/requirements.txt"
fi
for group in "$@"; do
    case "$group" in
        hf)
            if ! "$VENV/bin/python3" -c "import torch, transformers, gguf, accelerate" 2>/dev/null; then
                if [ -n "${LLORCH_TORCH_INDEX:-}" ]; then
                    "$VENV/bin/python3" -m pip install --quiet --index-url "$LLORCH_TORCH_INDEX" torch
                fi
                "$VENV/bin/python3" -m pip install --quiet -r "$ROOT/scripts/requirements-hf.txt"
            fi
            ;;
        *)
            echo "python-env.sh: unknown group '$group' (known: hf)" >&2
            exit 2
            ;;
    esac
done
