#!/usr/bin/env python3
"""Does the transpose-free split stage 2 pay on a GPU? One short probe for a GPU lease.

The 'cuda' layout keeps stage 2 of the factorised DFT dense
(``nnaudio_export.layers.factorised_dft.SPLIT_STAGE2_TARGETS``): on an H200 the 8 x 8 split
took 3.83 ms against 2.84 dense (n_fft 2048, batch 64), when the split still had two
transposes. The split has none since (phases reordered by a block swap; on the CPU it took
mel_128 23.3 -> 18.5 ms in ONNX Runtime). This times, per preset at batch 64 with TF32 off,
the whole frontend in torch eager for three layouts — 'cuda' (dense stage 2, the default),
'cuda' with the split, 'cpu' (grouped conv, split) — and, where onnxruntime has the CUDA
provider, the ONNX bundles of the first two (IO binding). If 'cuda + split' wins on both,
add 'cuda' to SPLIT_STAGE2_TARGETS (and re-run scripts/gpu_check.py).

Usage: python scripts/gpu_probe_split.py --out DIR [--presets mel_128 stft_2048] [--device cuda]
(``--device cpu`` rehearses the plumbing without a GPU). Writes DIR/split_probe.{md,json}.
Torch-only needs no onnxruntime-gpu: run it in the lease's first call, beside the build.
"""
import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))   # gpu_check's ORT timing
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
os.environ.setdefault("NNAUDIO_DISABLE_CITATION_REMINDER", "1")

LAYOUTS = (("cuda", False), ("cuda", True), ("cpu", True))


def _layout_name(target: str, split: bool) -> str:
    return f"{target}{' + split' if split and target == 'cuda' else ''}"


@contextlib.contextmanager
def split_allowed(split: bool):
    """SPLIT_STAGE2_TARGETS with 'cuda' added (``split``) or as shipped, restored after."""
    from nnaudio_export.layers import factorised_dft as layer_module
    saved = layer_module.SPLIT_STAGE2_TARGETS
    if split:
        layer_module.SPLIT_STAGE2_TARGETS = tuple(sorted(set(saved) | {"cuda"}))
    try:
        yield
    finally:
        layer_module.SPLIT_STAGE2_TARGETS = saved


def _ort_ms(bundle: Path, xt, device: str):
    """Median ms of the bundle's ONNX model in ORT on ``device`` (IO binding on CUDA, as
    gpu_check.py times it), or a reason it was not timed."""
    import onnxruntime as ort
    from gpu_check import _ort_time
    from nnaudio_export.bench.measure import time_call
    from nnaudio_export.manifest import model_format, read_manifest, tensor_names
    in_name, out_name = tensor_names(model_format("onnx"), read_manifest(bundle))
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return None, "onnxruntime has no CUDA provider here"
        s = ort.InferenceSession(str(bundle / "model.onnx"), providers=[
            ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0}), "CPUExecutionProvider"])
        return _ort_time(s, xt, in_name, out_name)[0], ""
    s = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    xn = xt.cpu().numpy()
    return time_call(lambda: s.run(None, {in_name: xn}), warmup=2, repeats=5)["median_ms"], ""


def probe(preset: str, device: str, batch: int, work: Path) -> dict:
    import torch
    import nnaudio_export as nx
    from nnaudio_export.bench.bundles import bench_input, bench_length
    from nnaudio_export.bench.measure import time_call
    from nnaudio_export.layers.frame_conv import fourier_stages
    raw = nx.presets.get_spec(preset)
    length = bench_length(raw, False)
    _, xn = bench_input(preset, raw, length, batch)
    xt = torch.from_numpy(xn).to(device).contiguous()
    sync = torch.cuda.synchronize if device == "cuda" else None
    rows, ref = [], None
    for target, split in LAYOUTS:
        name = _layout_name(target, split)
        with split_allowed(split):
            fe = nx.presets.load(preset, target=target, **length).to(device).eval()
            stages = fourier_stages(fe)
            bundle = None
            if target == "cuda":
                bundle = work / f"{preset}-{name.replace(' + ', '-')}"
                nx.export(preset, str(bundle), target=target, formats=("onnx",), overwrite=True,
                          verify=False, **length)
        with torch.no_grad():
            y = fe(xt)
            ref = y if ref is None else ref
            diff = float((y - ref).abs().max() / ref.abs().max())
            t = time_call(lambda: fe(xt), warmup=3, repeats=10, sync=sync)
        row = {"layout": name, "stage2_split": [s.get("stage2_split") for s in stages],
               "torch_eager_ms": t["median_ms"], "max_rel_diff_vs_first": diff}
        if bundle is not None:
            try:
                row["ort_ms"], row["ort_note"] = _ort_ms(bundle, xt, device)
            except Exception as exc:   # a probe reports, it does not stop the lease
                row["ort_ms"], row["ort_note"] = None, f"{type(exc).__name__}: {str(exc)[:150]}"
        rows.append(row)
        print(preset, row, flush=True)
    return {"preset": preset, "batch": batch, "device": device, "rows": rows}


def markdown(results) -> str:
    lines = ["# Split stage 2 on the GPU: probe", "",
             "| preset | layout | stage 2 split | torch eager ms | ORT ms | max rel diff |",
             "|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            ort_ms = row.get("ort_ms")
            ort_cell = f"{ort_ms:.2f}" if ort_ms is not None else row.get("ort_note", "-") or "-"
            lines.append(f"| {r['preset']} (batch {r['batch']}, {r['device']}) | {row['layout']} | "
                         f"{row['stage2_split']} | {row['torch_eager_ms']:.2f} | {ort_cell} | "
                         f"{row['max_rel_diff_vs_first']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--presets", nargs="+", default=["mel_128", "stft_2048"])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--work", default="build/gpu/split_probe")
    args = ap.parse_args()
    from nnaudio_export.parity import disable_tf32
    disable_tf32()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = [probe(p, args.device, args.batch, work) for p in args.presets]
    (out / "split_probe.json").write_text(json.dumps(results, indent=1))
    (out / "split_probe.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
