#!/usr/bin/env python3
"""The CUDA half of the product, checked on a machine with a GPU, in as few calls as a short
GPU lease allows (see README "GPU"):

  build   every preset exported at its own length (TorchScript + ONNX; the benchmarked presets
          also a .pt2 compiled for this GPU and their other precision), in parallel processes;
  parity  ``nx.verify`` of every bundle on cpu and cuda, pinned (so every backend runs: eager,
          TorchScript, ONNX Runtime, .pt2), TF32 off, plus where ORT placed each node (profiling):
          a row passes only if every node ran on the CUDA execution provider;
  bench   ``nnaudio-export bench --device cuda --batch 64`` on the benchmarked presets (peers on the
          same GPU: torch.stft / torch.istft, nnAudio, openai-whisper).

Usage: python scripts/gpu_check.py --out DIR [--stages build,parity,bench] [--work build/gpu]
Writes DIR/gpu_env.json, DIR/gpu_parity.{md,json}, DIR/bench.{md,json} and prints short tables.
Every stage runs even when an earlier one failed; the exit status is 1 if any check failed.
"""
import argparse
import json
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")       # before CUDA starts (ORT's cuDNN frontend)
os.environ.setdefault("NNAUDIO_DISABLE_CITATION_REMINDER", "1")

BENCH_PRESETS = ("whisper_80", "mel_128", "stft_2048", "istft_1024")
BENCH_BATCH = 64
# --dry-run-cpu: the same plumbing with "cpu" in place of "cuda" (a rehearsal on a machine
# without a GPU, so that a short lease is not spent on a typo).
DEV = os.environ.get("GPU_CHECK_DEVICE", "cuda")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- environment

def environment() -> dict:
    import numpy as np
    import torch
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "numpy": np.__version__, "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1),
                    capability=f"sm_{p.major}{p.minor}", sms=p.multi_processor_count)
    try:
        import onnxruntime as ort
        try:
            ort.preload_dlls()
        except Exception as exc:  # older ORT, or CUDA libraries found otherwise
            info["ort_preload_dlls"] = str(exc)[:200]
        info.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
    except Exception as exc:
        info["onnxruntime"] = f"import failed: {exc}"
    for mod in ("onnx", "onnxscript", "nnAudio", "whisper", "scipy"):
        try:
            info[mod] = getattr(__import__(mod), "__version__", "installed")
        except Exception as exc:
            info[mod] = f"missing ({type(exc).__name__})"
    return info


# ---------------------------------------------------------------- build

def _build_one(job: dict) -> dict:
    """One export in a worker process (2 torch threads each)."""
    import torch
    torch.set_num_threads(2)
    t0 = time.time()
    try:
        import nnaudio_export as nx
        from nnaudio_export.bench.bundles import bench_length, ensure_bundle
        if job["kind"] == "bench":
            raw = nx.presets.get_spec(job["preset"])
            path = ensure_bundle(job["preset"], bench_length(raw, False), Path(job["root"]),
                                 precision=job.get("precision"), pt2_device=job.get("pt2_device", "cpu"),
                                 formats=tuple(job["formats"]), target=job["target"])
        else:
            path = nx.export(job["preset"], job["out"], formats=tuple(job["formats"]), verify=False,
                             overwrite=True, target=job["target"])
        return {**job, "path": str(path), "ok": True, "seconds": time.time() - t0}
    except Exception as exc:
        return {**job, "ok": False, "seconds": time.time() - t0,
                "error": f"{type(exc).__name__}: {str(exc)[:300]}", "trace": traceback.format_exc()[-2000:]}


def build_jobs(work: Path, presets, bench_presets) -> list:
    import nnaudio_export as nx
    from nnaudio_export.bench.bundles import declared_precisions
    from nnaudio_export.spec import normalize_spec
    jobs = []
    bench_root = work / "bench" / "bundles"
    for p in presets:
        if p in bench_presets:
            jobs.append({"kind": "bench", "preset": p, "root": str(bench_root), "pt2_device": DEV,
                         "formats": ["torchscript", "onnx", "pt2"], "target": DEV})
            _, other = declared_precisions(p, normalize_spec(nx.presets.get_spec(p)))
            if other:
                jobs.append({"kind": "bench", "preset": p, "root": str(bench_root), "precision": other,
                             "formats": ["torchscript", "onnx"], "parity": False, "target": DEV})
            if DEV != "cpu":   # the CPU layout, timed beside the GPU one (bench), verified on CUDA too
                jobs.append({"kind": "bench", "preset": p, "root": str(bench_root), "formats": ["onnx"],
                             "target": "cpu"})
        else:
            jobs.append({"kind": "export", "preset": p, "out": str(work / "parity" / p),
                         "formats": ["torchscript", "onnx"], "target": DEV})
    # the .pt2 compiles are the long ones: start them first
    return sorted(jobs, key=lambda j: "pt2" not in j["formats"])


def in_processes(fn, items, jobs_n: int):
    """``fn`` over ``items`` in ``jobs_n`` fresh (spawned: CUDA does not survive a fork)
    processes; the results as they complete."""
    with ProcessPoolExecutor(jobs_n, mp_context=get_context("spawn")) as pool:
        for fut in as_completed([pool.submit(fn, item) for item in items]):
            yield fut.result()


def stage_build(work: Path, presets, bench_presets, jobs_n: int) -> list:
    jobs = build_jobs(work, presets, bench_presets)
    log(f"build: {len(jobs)} exports in {jobs_n} processes")
    done = []
    for r in in_processes(_build_one, jobs, jobs_n):
        done.append(r)
        log(f"  {r['preset']}{' ' + r['precision'] if r.get('precision') else ''} "
            f"[{','.join(r['formats'])}]: {'ok' if r['ok'] else 'FAILED ' + r['error']} ({r['seconds']:.0f} s)")
    (work / "built.json").write_text(json.dumps(done, indent=1))
    return done


# ---------------------------------------------------------------- parity

def ort_placement(bundle: str) -> dict:
    """Run the bundle's ONNX model once on CUDA with profiling: nodes per execution provider."""
    import numpy as np
    import onnxruntime as ort
    from nnaudio_export.manifest import read_manifest
    from nnaudio_export.devices import ort_providers
    m = read_manifest(bundle)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(bundle) / "ort_profile")
    s = ort.InferenceSession(str(Path(bundle) / "model.onnx"), sess_options=opts, providers=ort_providers(DEV))
    shape = [1] + [int(d) for d in m["input"]["shape"][1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(m["input"]["dtype"])
    s.run(None, {s.get_inputs()[0].name: x})
    prof = s.end_profiling()
    events = json.loads(Path(prof).read_text())
    Path(prof).unlink()
    by_ep: dict = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            ep = e.get("args", {}).get("provider", "?")
            by_ep.setdefault(ep, set()).add(e["args"].get("op_name", "?") + ":" + e["name"][:-len("_kernel_time")])
    return {"session_providers": s.get_providers(),
            "nodes_by_provider": {k: len(v) for k, v in by_ep.items()},
            "cpu_nodes": sorted(v for k, vs in by_ep.items() if k != "CUDAExecutionProvider" for v in vs)[:20]}


def _parity_one(bundle: str) -> dict:
    import torch
    torch.set_num_threads(2)
    import nnaudio_export as nx
    from nnaudio_export.manifest import manifest_sha256
    t0 = time.time()
    out = {"bundle": bundle, "name": Path(bundle).name}
    try:
        rep = nx.verify(bundle, devices=tuple(dict.fromkeys(("cpu", DEV))), expected_sha256=manifest_sha256(bundle))
        out.update(ok=rep.ok, report=rep.to_dict(), table=rep.table())
    except Exception as exc:
        out.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:300]}", trace=traceback.format_exc()[-2000:])
    try:
        pl = ort_placement(bundle)
        want = "CUDAExecutionProvider" if DEV == "cuda" else "CPUExecutionProvider"
        pl["all_on_device"] = set(pl["nodes_by_provider"]) == {want}
        out["ort_placement"] = pl
        out["ok"] = bool(out["ok"]) and pl["all_on_device"]
    except Exception as exc:
        out["ort_placement"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        out["ok"] = False
    out["seconds"] = time.time() - t0
    return out


def stage_parity(work: Path, out_dir: Path, jobs_n: int) -> bool:
    built = json.loads((work / "built.json").read_text())
    bundles = [b["path"] for b in built if b["ok"] and b.get("parity", True)]
    missing = [b["preset"] for b in built if not b["ok"]]
    log(f"parity: {len(bundles)} bundles, cpu + cuda, in {jobs_n} processes")
    results = []
    for r in in_processes(_parity_one, bundles, jobs_n):
        results.append(r)
        pl = r.get("ort_placement", {})
        log(f"  {r['name']}: {'ok' if r['ok'] else 'FAILED'} ({r['seconds']:.0f} s) "
            f"ORT nodes {pl.get('nodes_by_provider', pl.get('error'))} {r.get('error', '')}")
    results.sort(key=lambda r: r["name"])
    (out_dir / "gpu_parity.json").write_text(json.dumps({"results": results, "build_failed": missing}, indent=1))
    (out_dir / "gpu_parity.md").write_text(parity_markdown(results, missing))
    return all(r["ok"] for r in results) and not missing


def parity_markdown(results, missing) -> str:
    lines = ["| bundle | backend | device | reference | max_rel | max_abs | threshold | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for row in r.get("report", {}).get("rows", []):
            f = (lambda v: "-" if v is None else f"{v:.2e}")
            lines.append(f"| {r['name']} | {row['backend']} | {row['device']} | {row['reference']} | "
                         f"{f(row.get('max_rel'))} | {f(row.get('max_abs'))} | {f(row.get('threshold'))} | "
                         f"{row['status']}{' ' + row['note'][:60] if row.get('note') else ''} |")
        if "error" in r:
            lines.append(f"| {r['name']} | - | - | - | - | - | - | error: {r['error'][:120]} |")
    lines += ["", "ONNX Runtime node placement (CUDA EP, profiled):", ""]
    for r in results:
        pl = r.get("ort_placement", {})
        lines.append(f"- {r['name']}: {pl.get('nodes_by_provider', pl.get('error'))}"
                     + (f" not on CUDA: {pl['cpu_nodes']}" if pl.get("cpu_nodes") else ""))
    if missing:
        lines.append(f"\nBUILD FAILED (not verified): {missing}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- bench

def stage_bench(work: Path, out_dir: Path, presets) -> bool:
    from nnaudio_export.bench.driver import Config, run
    from nnaudio_export.bench.report import markdown
    rehearsal = DEV == "cpu"
    cfg = Config(presets, work / "bench", batch=2 if rehearsal else BENCH_BATCH, device=DEV, memory=False,
                 ort_variants=False, repeats=1 if rehearsal else None, warmup=0 if rehearsal else None)
    report = run(cfg)
    for name in ("bench.md", "bench.json"):
        shutil.copy(work / "bench" / name, out_dir / name)
    print(markdown(report))
    return True


# ---------------------------------------------------------------- ORT on CUDA: where the time goes

ORT_CUDA_VARIANTS = (("as runtime.load", {}), ("cudnn_conv1d_pad_to_nc1d=1", {"cudnn_conv1d_pad_to_nc1d": "1"}),
                     ("cudnn_conv_algo_search=EXHAUSTIVE", {"cudnn_conv_algo_search": "EXHAUSTIVE"}),
                     ("prefer_nhwc=1", {"prefer_nhwc": "1"}))


def _ort_time(session, xt, in_name, out_name, reps=10):
    """Median ms of ``session`` on CUDA tensor ``xt`` through IO binding, and the binding."""
    import numpy as np
    import torch
    from nnaudio_export.bench.measure import time_call
    b = session.io_binding()
    b.bind_input(in_name, "cuda", 0, np.float32, list(xt.shape), xt.data_ptr())
    b.bind_output(out_name, "cuda")
    t = time_call(lambda: session.run_with_iobinding(b), warmup=3, repeats=reps, sync=torch.cuda.synchronize)
    return t["median_ms"], b


def stage_ortprofile(work: Path, out_dir: Path, presets) -> bool:
    """Per preset (batch 64): ORT CUDA time under provider-option variants, and the CUDA kernels
    behind the default session (torch.profiler sees ORT's kernels too: CUPTI is per process)."""
    import onnxruntime as ort
    import torch
    from torch.profiler import ProfilerActivity, profile
    import nnaudio_export as nx
    from nnaudio_export.bench.bundles import bench_input, bench_length, ensure_bundle
    from nnaudio_export.manifest import model_format, read_manifest, tensor_names
    from nnaudio_export.parity import disable_tf32
    disable_tf32()
    lines = []
    for p in presets:
        raw = nx.presets.get_spec(p)
        length = bench_length(raw, False)
        _, xn = bench_input(p, raw, length, BENCH_BATCH)
        bundle = ensure_bundle(p, length, work / "bench" / "bundles", pt2_device=DEV, target=DEV)
        in_name, out_name = tensor_names(model_format("onnx"), read_manifest(bundle))
        xt = torch.from_numpy(xn).to(DEV).contiguous()
        lines.append(f"## {p} (batch {BENCH_BATCH}, {DEV} layout)")
        base = {"device_id": 0, "use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}   # as runtime.load
        try:
            cpu_layout = ensure_bundle(p, length, work / "bench" / "bundles", formats=("onnx",))
            s = ort.InferenceSession(str(cpu_layout / "model.onnx"),
                                     providers=[("CUDAExecutionProvider", base), "CPUExecutionProvider"])
            lines.append(f"- ORT CUDA, the cpu layout's model.onnx: {_ort_time(s, xt, in_name, out_name)[0]:.2f} ms")
        except Exception as exc:
            lines.append(f"- ORT CUDA, the cpu layout: error {type(exc).__name__}: {str(exc)[:150]}")
        for name, extra in ORT_CUDA_VARIANTS:
            try:
                s = ort.InferenceSession(str(bundle / "model.onnx"),
                                         providers=[("CUDAExecutionProvider", {**base, **extra}), "CPUExecutionProvider"])
                ms, _ = _ort_time(s, xt, in_name, out_name)
                lines.append(f"- ORT CUDA, {name}: {ms:.2f} ms")
            except Exception as exc:
                lines.append(f"- ORT CUDA, {name}: error {type(exc).__name__}: {str(exc)[:150]}")
        try:
            s = ort.InferenceSession(str(bundle / "model.onnx"),
                                     providers=[("CUDAExecutionProvider", base), "CPUExecutionProvider"])
            _, b = _ort_time(s, xt, in_name, out_name, reps=1)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    s.run_with_iobinding(b)
                torch.cuda.synchronize()
            kernels = {}
            for e in prof.events():
                if e.device_type == torch.autograd.DeviceType.CUDA:
                    k = kernels.setdefault(e.name[:110], [0.0, 0])
                    k[0] += e.device_time_total / 3e3
                    k[1] += 1
            total = sum(v[0] for v in kernels.values())
            lines.append(f"- CUDA kernel time per call: {total:.2f} ms in {sum(v[1] for v in kernels.values()) // 3} "
                         "kernels; the largest:")
            for name, (ms, n) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:12]:
                lines.append(f"  - {ms:7.3f} ms  x{n // 3:<3d} {name}")
        except Exception as exc:
            lines.append(f"- kernel profile: error {type(exc).__name__}: {str(exc)[:200]}")
        log("\n".join(lines[-20:]))
    (out_dir / "ort_cuda_profile.md").write_text("\n".join(lines) + "\n")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=str(ROOT / "build" / "gpu"))
    ap.add_argument("--stages", default="build,parity,bench")
    ap.add_argument("--presets", nargs="+", default=None, help="default: every preset")
    ap.add_argument("--bench-presets", nargs="+", default=list(BENCH_PRESETS))
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="rehearse on a machine without a GPU: 'cpu' wherever 'cuda' would be")
    args = ap.parse_args()
    if args.dry_run_cpu:
        global DEV
        DEV = os.environ["GPU_CHECK_DEVICE"] = "cpu"   # the spawned workers read it too
    out_dir, work = Path(args.out), Path(args.work)
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = environment()
    (out_dir / "gpu_env.json").write_text(json.dumps(env, indent=1))
    log("environment: " + json.dumps(env))
    import nnaudio_export as nx
    presets = args.presets or nx.presets.names()
    ok = True
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for stage in stages:
        t0 = time.time()
        try:
            if stage == "build":
                ok &= all(r["ok"] for r in stage_build(work, presets, args.bench_presets, args.jobs))
            elif stage == "parity":
                ok &= stage_parity(work, out_dir, args.jobs)
            elif stage == "ortprofile":
                ok &= stage_ortprofile(work, out_dir, [p for p in args.bench_presets if p in presets])
            elif stage == "bench":
                ok &= stage_bench(work, out_dir, [p for p in args.bench_presets if p in presets])
            else:
                raise ValueError(f"--stages: unknown stage {stage!r} (build, parity, ortprofile, bench)")
        except Exception:
            ok = False
            log(f"stage {stage} FAILED:\n{traceback.format_exc()}")
        log(f"stage {stage}: {time.time() - t0:.0f} s")
    if "parity" in stages and (out_dir / "gpu_parity.md").exists():
        print((out_dir / "gpu_parity.md").read_text())
    log("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
