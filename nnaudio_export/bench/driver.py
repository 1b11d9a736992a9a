"""Speed benchmark: our bundles (eager, TorchScript, ONNX Runtime, AOTInductor .pt2) against
the usual peers (librosa, torch.stft, nnAudio, openai-whisper, transformers, kaldi-native-fbank,
the ONNX ``STFT`` op) on the same data in one process, with this machine's fp32 GEMM rate as
the ceiling and each artifact's FLOP count.
This module holds the orchestration (our bundles' candidates, the per-preset driver
``run_preset``, ``run``) and the command (``cmd_bench``, ``main``; its arguments are
:mod:`.options`'s); the bundles and inputs a run uses come from :mod:`.bundles`, the
measurement primitives (timing, FLOPs, memory, machine and GEMM ceiling) live in
:mod:`.measure`, the peers in :mod:`.peers` and the markdown / JSON / PNG writing in
:mod:`.report`.
"""
import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..allocator import allocator_state, retain_freed_memory
from ..layers.common import filterbank_stages
from ..manifest import model_format, read_manifest, tensor_names
from ..parity import disable_tf32
from ..ort_cpu import chunk_items
from ..presets import get_spec, load as load_preset, names as preset_names
from ..devices import cpu_threads
from ..runtime import load
from ..spec import normalize_spec
from .bundles import bench_input, bench_length, declared_precisions, ensure_bundle
from .dft import direct_conv_candidate, fourier_stages
from .measure import (SETTLE_S, Candidate, _err, _say, contention, count_flops, cpu_snapshot,
                      gemm_gflops, machine_info, measure, note_items_per_call, probe_memory)
from .options import (FULL_BATCH, MALLOC_MODES, OURS, PRESETS, QUICK_BATCH, STREAM_PRESETS,
                      add_arguments)
from .peers import prepare_peers
from .placement import APART_NS, fastest_by_placement, placement_reader
from .report import FLOP_METHOD, MEMORY_METHOD, markdown, write_reports

# ---------------------------------------------------------------- our bundles


def prepare_ours(bundle: Path, fe: torch.nn.Module, x: torch.Tensor, xn: np.ndarray, device: str,
                 backends=OURS, label: str = "", threads: Optional[int] = None,
                 workers: int = 1) -> List[Candidate]:
    """Load the bundle with each backend; the FLOPs are counted once on the eager module.
    ONNX Runtime on the CPU is also timed on the whole batch in one call and, with ``workers``
    >= 2, on that many single-threaded sessions side by side (``item_workers``) and with
    ``item_workers='auto'`` (:func:`auto_candidate`)."""
    cands: List[Candidate] = []
    flops = None
    sync = torch.cuda.synchronize if device == "cuda" else None
    pt2_device = read_manifest(bundle)["files"].get(model_format("pt2").file, {}).get("device", "cpu")
    for backend in backends:
        row: Dict[str, Any] = {"impl": f"ours: {backend}{label}", "group": "ours", "backend": backend,
                               "device": device, "bundle": str(bundle), "identical_settings": True,
                               "flop_model": "conv/matmul counted (flop_counter)"}
        if backend == "pt2" and device != pt2_device:
            cands.append(({**row, "status": "skipped", "error": f"the .pt2 is compiled for {pt2_device}"},
                          None, None))
            continue
        try:
            rt = load(bundle, backend=backend, device=device,
                      intra_op_num_threads=threads if backend == "onnxruntime" else None)
            if flops is None:
                flops = count_flops(fe.to(x.device), x)
            providers = None
            if backend == "onnxruntime":
                providers = "providers " + ",".join(p.replace("ExecutionProvider", "")
                                                    for p in rt.session.get_providers())
                row["note"] = providers
            note_items_per_call(row, rt.max_batch, len(xn))
            inp = xn if (backend == "onnxruntime" and device == "cpu") else x
            cands.append((row, (lambda rt=rt, inp=inp: rt(inp)), sync))
            if row["items_per_call"] < len(xn) and backend == "onnxruntime":
                # the same session options, the whole batch in one call: what the chunks buy
                whole = load(bundle, backend=backend, device=device, intra_op_num_threads=threads,
                             max_batch=len(xn))
                cands.append(({**row, "impl": f"{row['impl']}, whole batch a call", "items_per_call": len(xn),
                               "note": providers, "probe_memory": False},
                              (lambda rt=whole, inp=inp: rt(inp)), sync))
            if workers > 1 and backend == "onnxruntime" and device == "cpu" and len(xn) > 1:
                side = load(bundle, backend=backend, device=device, intra_op_num_threads=threads,
                            item_workers=workers)
                cands.append(({**row, "impl": f"{row['impl']}, {workers} item workers",
                               "items_per_call": chunk_items(len(xn), workers, side.max_batch),
                               "note": f"{providers}; {workers} single-threaded sessions side by side",
                               "probe_memory": False}, (lambda rt=side, inp=inp: rt(inp)), sync))
                cands.append(auto_candidate(bundle, row, inp, threads, workers, providers))
        except Exception as exc:
            cands.append(({**row, "status": "error", "error": _err(exc)}, None, None))
    for row, _, _ in cands:
        row["gflop"] = flops / 1e9 if flops else None
    return cands


def auto_candidate(bundle: Path, row: Dict[str, Any], inp: np.ndarray, threads: Optional[int],
                   workers: int, providers: Optional[str]) -> Candidate:
    """Ours in ORT on the CPU with ``item_workers='auto'``: each batch on the intra-op session
    or on ``workers`` single-threaded ones, whichever was faster lately; the row keeps the
    runtime's ``batch_timings`` (calls and ms per item of each way) after every call."""
    rt = load(bundle, intra_op_num_threads=threads, item_workers="auto")
    auto = {**row, "impl": f"{row['impl']}, auto", "items_per_call": rt.max_batch,
            "note": f"{providers}; each batch the faster lately of the intra-op session and "
                    f"{workers} item workers (item_workers='auto')", "probe_memory": False}

    def call() -> np.ndarray:
        y = rt(inp)
        auto["ways"] = rt.batch_timings()
        return y
    return auto, call, None


def ort_variants(bundle: Path, xn: np.ndarray, cfg: "Config") -> List[Dict[str, Any]]:
    """The same model.onnx under different ORT SessionOptions (CPU), timed round-robin."""
    import onnxruntime as ort
    lv = ort.GraphOptimizationLevel
    in_name, out_name = tensor_names(model_format("onnx"), read_manifest(bundle))
    variants = [("default (runtime.load's options; the whole batch in one call)", {}, {}),
                ("intra_op_num_threads=1", {"intra_op_num_threads": 1}, {}),
                (f"intra_op_num_threads={os.cpu_count()}", {"intra_op_num_threads": os.cpu_count()}, {}),
                ("graph_optimization_level=ORT_ENABLE_BASIC", {"graph_optimization_level": lv.ORT_ENABLE_BASIC}, {}),
                ("graph_optimization_level=ORT_DISABLE_ALL", {"graph_optimization_level": lv.ORT_DISABLE_ALL}, {}),
                ("intra_op.allow_spinning=0", {}, {"session.intra_op.allow_spinning": "0"}),
                ("set_denormal_as_zero=1", {}, {"session.set_denormal_as_zero": "1"}),
                ("enable_cpu_mem_arena=False", {"enable_cpu_mem_arena": False}, {})]
    cands: List[Candidate] = []
    for name, attrs, entries in variants:
        try:
            opts = ort.SessionOptions()
            for k, v in attrs.items():
                setattr(opts, k, v)
            for k, v in entries.items():
                opts.add_session_config_entry(k, v)
            s = ort.InferenceSession(str(bundle / model_format("onnx").file), sess_options=opts,
                                     providers=["CPUExecutionProvider"])
            cands.append(({"variant": name}, (lambda s=s: s.run([out_name], {in_name: xn})), None))
        except Exception as exc:
            cands.append(({"variant": name, "error": _err(exc)}, None, None))
    measure(cands, cfg.warmup, cfg.repeats, cfg.settle)  # round-robin, like the main table
    return [row for row, _, _ in cands]


# ---------------------------------------------------------------- driver

class Config:
    def __init__(self, presets=PRESETS, out="build/bench", quick=False, batch=None, repeats=None,
                 warmup=None, device="cpu", memory=True, ort_variants=None, settle=None, threads=None,
                 malloc="default", probe=None, calls_per_turn=1):
        self.presets = tuple(presets)
        self.out = Path(out)
        self.quick = bool(quick)
        self.batch = batch
        self.repeats = int(repeats if repeats is not None else (2 if quick else 5))
        self.warmup = int(warmup if warmup is not None else (1 if quick else 3))
        self.device = device
        self.memory = bool(memory)
        self.ort_variants = (not quick) if ort_variants is None else bool(ort_variants)
        self.settle = float(settle if settle is not None else (0.0 if quick else SETTLE_S))
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        self.threads = None if threads is None else int(threads)
        if self.threads is not None and not 1 <= self.threads <= 4096:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if not 0.0 <= self.settle <= 10.0:
            raise ValueError(f"--settle must be between 0 and 10 seconds, got {self.settle}")
        if malloc not in MALLOC_MODES:
            raise ValueError(f"--malloc must be one of {', '.join(MALLOC_MODES)}, got {malloc!r}")
        self.malloc = malloc
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch.cuda.is_available() is False")
        if isinstance(calls_per_turn, bool) or not isinstance(calls_per_turn, int) or not 1 <= calls_per_turn <= 100:
            raise ValueError(f"--calls-per-turn must be an integer from 1 to 100, got {calls_per_turn!r}")
        self.calls_per_turn = calls_per_turn
        # the vCPUs' placement read before each timed call (bench.placement), or None
        self.probe = probe
        self.placement = placement_reader(probe) if probe else None


def run_preset(preset: str, cfg: Config, peak_gflops: float) -> Dict[str, Any]:
    raw = get_spec(preset)
    sr = float(raw["sample_rate"])
    length = bench_length(raw, cfg.quick)
    b = cfg.batch or (QUICK_BATCH if cfg.quick else FULL_BATCH)
    n, xn = bench_input(preset, raw, length, b)
    x = torch.from_numpy(xn).to(cfg.device)
    res: Dict[str, Any] = {"preset": preset, "batch": b, "num_samples": n, "sample_rate": sr,
                           "seconds": n / sr, "rows": [], "ort_variants": []}
    spec, bundle, cands = None, None, []
    try:
        # On a GPU our bundles are laid out for it (the factorised DFT's stage 1 as a MatMul);
        # the CPU layout is timed beside them in ONNX Runtime (what the layout buys).
        target = cfg.device
        fe = load_preset(preset, target=target, **length)
        spec = fe.spec
        res["output_shape"] = [b, *fe.output_shape]
        bundle = ensure_bundle(preset, length, cfg.out / "bundles", pt2_device=cfg.device, target=target)
        res["bundle"] = str(bundle)
        own, other = declared_precisions(preset, spec)
        cands += prepare_ours(bundle, fe, x, xn, cfg.device, label=f", precision {own}" if own else "",
                              threads=cfg.threads, workers=side_by_side(cfg))
        res["fourier_stages"] = fourier_stages(fe)
        res["filterbank_stages"] = filterbank_stages(fe)
        fe1 = fe
        if other:
            # A production preset declares its precision; time the other one too (TorchScript
            # and ORT): the speed / accuracy trade, and 'extended' vs the default's time.
            fe_other = load_preset(preset, precision=other, target=target, **length)
            bundle_other = ensure_bundle(preset, length, cfg.out / "bundles", precision=other,
                                         formats=("torchscript", "onnx"), target=target)
            cands += prepare_ours(bundle_other, fe_other, x, xn, cfg.device, ("torchscript", "onnxruntime"),
                                  f", precision {other}", cfg.threads)
            res[f"fourier_stages_{other}"] = fourier_stages(fe_other)
            fe1 = fe_other if other == "single" else fe
        cands += direct_conv_candidate(fe1, x, xn, cfg.device, cfg.out / "bundles" / f"{preset}-direct-conv",
                                       cfg.threads)
        if target != "cpu" and any(s["method"] == "factorised" for s in res["fourier_stages"]):
            fe_cpu = load_preset(preset, **length)
            bundle_cpu = ensure_bundle(preset, length, cfg.out / "bundles", formats=("onnx",))
            cands += prepare_ours(bundle_cpu, fe_cpu, x, xn, cfg.device, ("onnxruntime",),
                                  ", cpu layout", cfg.threads)
    except Exception as exc:
        _say(f"{preset}: ours failed: {_err(exc)}")
        cands += [({"impl": f"ours: {be}", "group": "ours", "backend": be, "device": cfg.device,
                    "identical_settings": True, "status": "error", "error": _err(exc)}, None, None) for be in OURS]
    if spec is None:  # our layer could not be built: the peers only need the preset's numbers
        try:
            spec = normalize_spec(get_spec(preset, **length))
        except Exception:
            spec = get_spec(preset, **length)
    work = cfg.out / "peers"
    work.mkdir(parents=True, exist_ok=True)
    ort_items = next((c[0]["items_per_call"] for c in cands if c[0].get("backend") == "onnxruntime"
                      and "items_per_call" in c[0]), None)
    cands += prepare_peers(preset, spec, x, xn, cfg.device, work, cfg.quick, ort_items, side_by_side(cfg))
    _say(f"{preset}: timing {sum(1 for c in cands if c[1])} implementations round-robin, "
         f"batch {b} x {n / sr:g} s, {cfg.warmup} warm-up + {cfg.repeats} timed calls each")
    snap = cpu_snapshot()
    measure(cands, cfg.warmup, cfg.repeats, cfg.settle, cfg.placement, cfg.calls_per_turn)
    res["contention"] = contention(snap, cpu_snapshot())
    res["rows"] = [row for row, _, _ in cands]
    del cands
    for row in res["rows"]:
        _say(f"{preset}: {row['impl']}: " + (f"{row['median_ms']:.1f} ms" if row.get("status") == "ok"
                                             else str(row.get("error"))))
    if bundle is not None:
        for row in res["rows"]:
            if row["group"] == "ours" and row.get("status") == "ok" and cfg.memory and row.get("probe_memory", True):
                try:
                    row.update(probe_memory(Path(row.get("bundle", bundle)), row["backend"], cfg.device, b))
                except Exception as exc:
                    row["note"] = ((row.get("note") or "") + f" memory probe: {_err(exc)}").strip()
        if cfg.ort_variants and cfg.device == "cpu":
            res["ort_variants"] = ort_variants(bundle, xn, cfg)
    _finish_rows(res, peak_gflops)
    return res


def side_by_side(cfg: "Config") -> int:
    """How many items run side by side in the benchmark's side-by-side rows (ours with
    ``item_workers``, the peers cut into items): one per thread of the run on the CPU, 1
    (no such rows) on one thread or a GPU."""
    return cpu_threads(cfg.threads) if cfg.device == "cpu" else 1


def _finish_rows(res: Dict[str, Any], peak_gflops: float) -> None:
    # the peers a ratio is taken against: timed, with settings identical to ours
    peers = [r for r in res["rows"] if r["group"] == "peer" and r["status"] == "ok" and r.get("identical_settings")]
    fastest = min((r["median_ms"] for r in peers), default=None)
    res["fastest_peer"] = next((r["impl"] for r in peers if r["median_ms"] == fastest), None)
    res["fastest_peer_ms"] = fastest
    placed = any(r.get("by_placement") for r in res["rows"])
    if placed:
        res["fastest_peer_ms_by_placement"] = fastest_by_placement(peers)
    for r in res["rows"]:
        r.setdefault("status", "error")
        for k in ("median_ms", "min_ms", "max_ms", "runs", "faults_per_call", "gflop", "note", "error", "mem_mb",
                  "peak_rss_mb"):
            r.setdefault(k, None)
        ok = r["status"] == "ok"
        r["rel_to_fastest_peer"] = fastest / r["median_ms"] if ok and fastest else None
        r["gflops_per_s"] = r["gflop"] / (r["median_ms"] * 1e-3) if ok and r["gflop"] else None
        r["pct_of_gemm_peak"] = 100.0 * r["gflops_per_s"] / peak_gflops if r["gflops_per_s"] else None
        r["realtime_factor"] = res["batch"] * res["seconds"] / (r["median_ms"] * 1e-3) if ok else None
        if placed and ok and r.get("by_placement"):
            for name, cell in r["by_placement"].items():
                best = res["fastest_peer_ms_by_placement"][name]
                cell["rel_to_fastest_peer"] = best / cell["median_ms"] if best and cell["median_ms"] else None


def run(cfg: Config) -> Dict[str, Any]:
    """The whole benchmark (``cfg.threads``: torch's thread count for the run, restored after)."""
    threads = torch.get_num_threads()
    if cfg.threads:   # torch (peers, our torch backends, .pt2's OpenMP) and ORT's intra-op pool alike
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config) -> Dict[str, Any]:
    if cfg.malloc == "retain" and not retain_freed_memory():
        raise ValueError(f"--malloc retain: the C library is not glibc ({allocator_state()['libc']}); "
                         "run with --malloc default")
    cfg.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    snap = cpu_snapshot()
    info = machine_info()
    info["loadavg_start"] = os.getloadavg()[0]
    _say(f"machine: {info['cores']} cores, {info['cpu']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}")
    if cfg.device == "cuda":
        disable_tf32()   # float32 as exported: TF32 off in torch, cuDNN and (env) ORT's CUDA kernels
        info["cuda_tf32"] = "off"
    gemm = gemm_gflops(cfg.quick, cfg.device)
    _say(f"fp32 GEMM ceiling on {cfg.device}: {gemm['gflops']:.1f} GFLOP/s (torch.matmul {gemm['n']}x{gemm['n']})")
    results = [run_preset(p, cfg, gemm["gflops"]) for p in cfg.presets]
    after = gemm_gflops(cfg.quick, cfg.device)
    _say(f"fp32 GEMM after the run: {after['gflops']:.1f} GFLOP/s")
    gemm = {**gemm, "gflops_before": gemm["gflops"], "gflops_after": after["gflops"]}
    if after["gflops"] > gemm["gflops"]:  # the ceiling is the best this machine did in this run
        gemm["gflops"] = after["gflops"]
        for res in results:
            _finish_rows(res, gemm["gflops"])
    info["contention"] = contention(snap, cpu_snapshot())
    report = {"machine": info, "gemm": gemm, "device": cfg.device, "quick": cfg.quick,
              "repeats": cfg.repeats, "warmup": cfg.warmup, "settle_s": cfg.settle,
              "calls_per_turn": cfg.calls_per_turn,
              "placement_probe": ({"path": cfg.probe, "apart_above_ns": APART_NS} if cfg.probe else None),
              "ort_threads": cfg.threads or "ORT default (one per core)", "allocator": allocator_state(),
              "memory_method": MEMORY_METHOD,
              "flop_method": FLOP_METHOD, "presets": results, "wall_s": time.time() - t0}
    write_reports(report, cfg.out)
    return report


# ---------------------------------------------------------------- CLI

def check_presets(presets: List[str]) -> List[str]:
    """``--presets`` as given, or a ValueError naming the unknown ones."""
    bad = [p for p in presets if p not in preset_names()]
    if bad:
        raise ValueError(f"--presets: unknown {bad}; available: {', '.join(preset_names())}")
    return presets


def cmd_bench(args: argparse.Namespace) -> int:
    if args.streaming:
        return cmd_bench_streaming(args)
    args.presets = check_presets(args.presets or list(PRESETS))
    if args.batch is not None and args.batch < 1:
        raise ValueError("--batch must be >= 1")
    cfg = Config(args.presets, args.out, args.quick, args.batch, args.repeats, args.warmup, args.device,
                 not args.no_memory, args.ort_variants, args.settle, args.threads, args.malloc, args.probe,
                 args.calls_per_turn)
    report = run(cfg)
    print(markdown(report))
    print(f"wrote {cfg.out / 'bench.md'}, {cfg.out / 'bench.json'}, {cfg.out / 'bench.png'}")
    return 0


def cmd_bench_streaming(args: argparse.Namespace) -> int:
    """``bench --streaming``: :func:`.streaming.run_streaming` (per-chunk latency, batch 1)."""
    from .streaming import markdown as stream_markdown, run_streaming
    presets = check_presets(args.presets or list(STREAM_PRESETS))
    chunks = [float(c) for c in str(args.chunks_ms).split(",") if c.strip()]
    args.threads = 1 if args.threads is None else args.threads
    if not chunks or min(chunks) <= 0 or args.threads < 1 or args.stream_seconds <= 0:
        raise ValueError("--chunks-ms must be positive numbers, --threads >= 1, --stream-seconds > 0")
    report = run_streaming(presets, chunks, args.stream_seconds, args.threads, Path(args.out))
    print(stream_markdown(report["rows"], report["load_average"]))
    print(f"wrote {Path(args.out) / 'bench_streaming.md'}, {Path(args.out) / 'bench_streaming.json'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return cmd_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
