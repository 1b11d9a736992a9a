#!/usr/bin/env bash
# onnxruntime-gpu and the GPU benchmark's peers for a lent GPU machine with no network
# (scripts/gpu_check.py; docs/benchmarks/gpu-h200-2026-12-04.md has a run).
#
#   scripts/gpu_parts.sh prepare   (here, ~4 min on 2 cores) the onnxruntime-gpu wheel unpacked,
#       its TensorRT provider dropped, xz -9e: ~200 MB in .ortx/p1..p4 (60 MiB each: one device
#       call carries at most 64 MiB with the working tree); nnAudio 0.3.4, openai-whisper and
#       more-itertools wheels go into the last part.
#   scripts/gpu_parts.sh install   (there, after every part arrived) unpacks into build/ortsite
#       and build/site; then run with PYTHONPATH=$PWD/build/ortsite:$PWD/build/site.
#
# A path carried in one call is gone in the next call that does not carry it (seen
# 2026-12-04), while build/ (ignored) stays as long as the machine is warm (~30 s after a call).
# So each call copies its part out of the carried path, e.g. in back-to-back calls:
#   carry [".ortx/p1"]: mkdir -p build/ortparts && cp .ortx/p1/* build/ortparts/ && <a long stage>
#   carry [".ortx/p2"]: cp .ortx/p2/* build/ortparts/
#   carry [".ortx/p3"]: cp .ortx/p3/* build/ortparts/
#   carry [".ortx/p4"]: cp .ortx/p4/* build/ortparts/ && bash scripts/gpu_parts.sh install && ...
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${ORT_GPU_VERSION:-1.31.1}"
case "${1:-}" in
prepare)
    grep -qx '/.ortx/' .git/info/exclude 2>/dev/null || echo '/.ortx/' >> .git/info/exclude
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$work/dl" "onnxruntime-gpu==${ver}"
    python3 -m pip download -q --no-deps -d "$work/wheels" "nnaudio==0.3.4" more-itertools
    python3 -m pip wheel -q --no-deps -w "$work/wheels" "openai-whisper==20250625"
    mkdir -p "$work/tree" && (cd "$work/tree" && unzip -q "$work"/dl/onnxruntime_gpu-*.whl)
    rm -f "$work"/tree/onnxruntime/capi/libonnxruntime_providers_tensorrt.so
    tar -cf - -C "$work/tree" . | xz -9e -T0 > "$work/ort.tar.xz"
    rm -rf .ortx && mkdir -p .ortx/split
    split -b 60M -d "$work/ort.tar.xz" .ortx/split/ort.
    i=1
    for f in .ortx/split/ort.*; do mkdir -p ".ortx/p$i"; mv "$f" ".ortx/p$i/"; i=$((i + 1)); done
    rmdir .ortx/split
    cp "$work"/wheels/*.whl ".ortx/p$((i - 1))/"
    du -sh .ortx/p*
    ;;
install)
    ls build/ortparts/ort.* >/dev/null
    rm -rf build/ortsite && mkdir -p build/ortsite build/site
    cat build/ortparts/ort.* | xz -d -T0 | tar -xf - -C build/ortsite
    python3 -m pip install -q --no-index --no-deps --no-compile --target build/site build/ortparts/*.whl
    PYTHONPATH="$PWD/build/ortsite:$PWD/build/site" python3 -c \
        "import onnxruntime as o; o.preload_dlls(); print('onnxruntime', o.__version__, o.get_available_providers())"
    ;;
*)
    echo "usage: scripts/gpu_parts.sh prepare|install" >&2
    exit 2
    ;;
esac
