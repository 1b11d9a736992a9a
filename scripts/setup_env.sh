#!/usr/bin/env bash
# Create .venv (if missing) and install the project. Usage: scripts/setup_env.sh [test]
# CPU machines get the pinned CPU torch wheel first so pip never pulls a CUDA build.
# GPU users: install your CUDA torch and `pip install -e .[gpu]` instead (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.nnaudio_export_${1:-base}
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
    exit 0
fi
$VPY -m pip install -q --upgrade pip
$VPY -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
if [ "${1:-}" = "test" ]; then
    $VPY -m pip install -q -e ".[cpu,test]"
    # References whose declared dependencies would pull old or CUDA builds (vocos: torchaudio,
    # which has no wheel for this torch; only its spectral_ops / heads files are loaded).
    $VPY -m pip install -q --no-deps "nnaudio==0.3.4" "nnaudio2==2.0.3" "openai-whisper==20250625" \
        "speechbrain==1.1.2" "torchlibrosa==0.1.0" "nemo_toolkit==3.0.0" "vocos==0.1.0"
else
    $VPY -m pip install -q -e ".[cpu]"
fi
touch "$stamp"
