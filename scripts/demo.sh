#!/usr/bin/env bash
# On a fresh machine: create .venv, install, export the default frontend (whisper_80) in
# every format into build/whisper_80 (verified at export: the parity table is printed once,
# with the manifest's sha256 to pin the bundle), then show the bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
PRESET=${1:-whisper_80}
.venv/bin/nnaudio-export build "$PRESET" --out "build/$PRESET" --formats torchscript,onnx,pt2 --force
.venv/bin/nnaudio-export inspect "build/$PRESET"
