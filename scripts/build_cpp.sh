#!/usr/bin/env bash
# Configure and build examples/cpp (frontend_cli) against the torch wheel in .venv.
#   scripts/build_cpp.sh [BUILD_DIR]     (default: examples/cpp/build; reused between runs)
# PYTHON=/path/to/python overrides the interpreter whose torch is linked.
# Prints the path of the built executable on the last line of stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/examples/cpp/build}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
  echo "build_cpp.sh: $PY not found (create .venv, or set PYTHON=)" >&2
  exit 2
fi
command -v cmake >/dev/null || { echo "build_cpp.sh: cmake not found" >&2; exit 2; }
PREFIX="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
JOBS="$(nproc 2>/dev/null || echo 2)"
# Re-configure only when there is no cache yet or it points at another torch.
CACHED="$(sed -n 's/^CMAKE_PREFIX_PATH:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)"
if [[ "$CACHED" != "$PREFIX" ]]; then
  cmake -S "$ROOT/examples/cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" >&2
fi
cmake --build "$BUILD" -j "$JOBS" >&2
echo "$BUILD/frontend_cli"
