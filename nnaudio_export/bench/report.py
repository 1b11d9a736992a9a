"""Report writing for the speed benchmark: the method notes stored in every report
(``MEMORY_METHOD``, ``FLOP_METHOD``), the markdown table (``bench.md``), the bar chart of
throughput relative to the fastest peer (``bench.png``, matplotlib, best effort) and
``write_reports``, which also writes the raw ``bench.json``. Works on the finished report dict
only; depends only on ``measure`` (for logging).
"""
import json
from pathlib import Path
from typing import Any, Dict, List

from ..allocator import describe_allocator
from .measure import _say
from .placement import APART_NS, PLACEMENTS


MEMORY_METHOD = ("ours only, a fresh subprocess per backend: mem MB = peak anonymous RSS (resident minus "
                 "file-backed pages, /proc/self/statm sampled every 0.5 ms) while loading the bundle and running "
                 "2 batches, minus the value after imports and input creation: weights, arenas, workspaces, output; "
                 "not library code pages. peak_rss_mb in bench.json = getrusage ru_maxrss of the whole process")
FLOP_METHOD = ("ours and nnAudio: conv/matmul FLOPs counted by torch.utils.flop_counter on the eager module "
               "(2 per MAC, elementwise not counted); FFT peers: 5 N log2 N per frame + 2 n_mels (N/2+1) per "
               "frame for the mel matmul (a real FFT needs about half of 5 N log2 N)")


def describe_filterbanks(stages: List[Dict[str, Any]]) -> str:
    """One line for the report, e.g. 'stages.2: 3 bands, 4,815 MACs/frame; dense 16,080
    (3.3x fewer)'."""
    parts = []
    for s in stages:
        if s["dense"]:
            parts.append(f"{s['layer']}: dense, {s['dense_macs_per_frame']:,} MACs/frame")
        else:
            parts.append(f"{s['layer']}: {len(s['bands'])} bands, {s['macs_per_frame']:,} MACs/frame; dense "
                         f"{s['dense_macs_per_frame']:,} ({s['dense_macs_per_frame'] / s['macs_per_frame']:.1f}x fewer)")
    return "; ".join(parts) if parts else "-"


def describe(stages: List[Dict[str, Any]]) -> str:
    """One line for the report, e.g. 'stages.0.layer: factorised 20 x 20 (n_fft 400, hop 160),
    27,280 MACs/frame; direct conv 160,800 (5.9x fewer)'."""
    parts = []
    for s in stages:
        if s["method"] == "factorised":
            split = s.get("stage2_split")
            radix = f", stage 2 as {split[0]} x {split[1]}" if split else ""
            if s.get("stage1") == "matmul":
                radix += ", float64, stage 1 as a MatMul" if s.get("precision") == "extended" else \
                    ", stage 1 as a MatMul (cuda layout)"
            parts.append(f"{s['layer']}: factorised {s['n1']} x {s['n2']}{radix} (n_fft {s['n_fft']}, hop {s['hop']}), "
                         f"{s['macs_per_frame']:,} MACs/frame; direct conv {s['direct_macs_per_frame']:,} "
                         f"({s['direct_macs_per_frame'] / s['macs_per_frame']:.1f}x fewer)")
        elif s["method"].startswith("inverse"):
            how = "x".join(str(f) for f in s["factors"]) if s.get("factors") else "one matrix"
            parts.append(f"{s['layer']}: {s['method']} {how} (n_fft {s['n_fft']}, hop {s['hop']}), "
                         f"{s['macs_per_frame']:,} MACs/frame; matrix {s['direct_macs_per_frame']:,} "
                         f"({s['direct_macs_per_frame'] / s['macs_per_frame']:.1f}x fewer)")
        else:
            parts.append(f"{s['layer']}: direct conv ({s['precision']}), {s['macs_per_frame']:,} MACs/frame")
    return "; ".join(parts) if parts else "-"


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(report: Dict[str, Any]) -> str:
    m, g = report["machine"], report["gemm"]
    c = m["contention"]
    lines = [f"# nnaudio_export benchmark{' (quick)' if report['quick'] else ''}", "",
             f"- machine: {m['cores']} cores, {m['cpu']}; torch threads {m['torch_threads']}; "
             f"ORT intra-op threads {report.get('ort_threads', 'ORT default (one per core)')}; "
             f"device {report['device']}{' (' + m['cuda'] + ')' if m.get('cuda') else ''}",
             f"- date {m['date']}; torch {m['torch']}, onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, "
             f"numpy {m['numpy']}, librosa {m['librosa']}, nnAudio {m['nnAudio']}",
             f"- fp32 GEMM ceiling (torch.matmul {g['n']}x{g['n']}, same run; best of before "
             f"{g['gflops_before']:.0f} / after {g['gflops_after']:.0f}): **{g['gflops']:.1f} GFLOP/s**",
             f"- other load during the run: {c['other_cores']:.2f} cores busy in other processes, "
             f"{c['steal_cores']:.2f} cores stolen by the hypervisor (average); load average "
             f"{m['loadavg_start']:.2f} at start" + (" **(machine was not idle: timings are noisy)**"
                                                      if c["other_cores"] > 0.2 or c["steal_cores"] > 0.2 else ""),
             f"- timing: {report['warmup']} warm-up calls, then median / min of {describe_turns(report)} "
             "of one whole batch, round-robin, each turn after a pause of "
             f"{report.get('settle_s', 0.0):g} s (so no implementation runs beside the previous one's "
             "spinning threads); same input batch for every implementation; ours through `nx.load`, "
             "which runs a CPU batch in ONNX Runtime a few items a call (its default; notes column)",
             f"- C allocator: {describe_allocator(report.get('allocator', {}))}; page faults / call: median minor "
             "page faults of a timed call (all threads), one per 4 KiB page the call got fresh from the kernel",
             f"- FLOPs: {report['flop_method']}", f"- memory: {report['memory_method']}"]
    lines += placement_summary(report) + [""]
    head = ("implementation", "median ms", "min ms", "x fastest peer", "GFLOP", "GFLOP/s", "% GEMM peak",
            "page faults / call", "mem MB", "notes")
    for p in report["presets"]:
        lines += [f"## {p['preset']}: batch {p['batch']} x {p['seconds']:g} s at {p['sample_rate']:g} Hz", "",
                  f"fastest peer (identical settings): {p['fastest_peer'] or '-'} "
                  f"({_f(p['fastest_peer_ms'])} ms)", "",
                  f"Fourier stages: {describe(p.get('fourier_stages', []))}"
                  + "".join(f"; at precision {other}: {describe(p[f'fourier_stages_{other}'])}"
                            for other in ("single", "extended") if p.get(f"fourier_stages_{other}")), "",
                  f"Filterbanks: {describe_filterbanks(p.get('filterbank_stages', []))}", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in p["rows"]:
            note = r["error"] if r["status"] != "ok" else (r["note"] or "")
            if r["status"] != "ok":
                note = f"**{r['status'].upper()}**: {note}"
            elif r.get("first_of_turn_ms") is not None:
                note = "; ".join(filter(None, [f"first call of a turn {r['first_of_turn_ms']:.1f} ms", note]))
            lines.append("| " + " | ".join([
                ("**" + r["impl"] + "**") if r["group"] == "ours" else r["impl"], _f(r["median_ms"]), _f(r["min_ms"]),
                _f(r["rel_to_fastest_peer"], "{:.2f}x"), _f(r["gflop"], "{:.2f}"), _f(r["gflops_per_s"]),
                _f(r["pct_of_gemm_peak"], "{:.0f} %"), _f(r.get("faults_per_call"), "{:,}"),
                _f(r["mem_mb"], "{:.0f}"),
                note.replace("|", "/").replace("\n", " ")]) + " |")
        lines += placement_table(p)
        ratio = precision_ratio(p["rows"])
        if ratio:
            lines += ["", ratio]
        if p["ort_variants"]:
            lines += ["", f"ONNX Runtime session options ({p['preset']}, CPU, same model.onnx):", "",
                      "| SessionOptions | median ms | min ms |", "|---|---|---|"]
            lines += [f"| {v['variant']} | {_f(v.get('median_ms'))} | {_f(v.get('min_ms'))} |"
                      + (f" {v['error']}" if "error" in v else "") for v in p["ort_variants"]]
        lines.append("")
    lines.append(f"Total benchmark wall time: {report['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def describe_turns(report: Dict[str, Any]) -> str:
    """How many timed calls, and how they were grouped into turns (``--calls-per-turn``)."""
    k = int(report.get("calls_per_turn", 1))
    if k == 1:
        return f"{report['repeats']} timed calls"
    return (f"{report['repeats'] * k} timed calls in {report['repeats']} turns of {k} back to back "
            "(a turn's first call finds the caches as the other implementations left them; its "
            "median is in the notes)")


def placement_summary(report: Dict[str, Any]) -> List[str]:
    """The header line of a run with ``--probe``: the probe, and how many timed calls of the
    run found the two vCPUs apart (empty without a probe)."""
    probe = report.get("placement_probe")
    if not probe:
        return []
    readings = [ns for p in report["presets"] for r in p["rows"] for ns in (r.get("placement_ns") or [])]
    apart = sum(1 for ns in readings if ns > probe["apart_above_ns"])
    return [f"- placement: `{probe['path']}` read before each timed call; {apart} of {len(readings)} "
            f"calls found the two vCPUs apart (round trip above {probe['apart_above_ns']:g} ns; "
            f"readings {min(readings, default=0):.0f}-{max(readings, default=0):.0f} ns); per-row medians "
            "by placement below each table"]


def placement_table(p: Dict[str, Any]) -> List[str]:
    """With ``--probe``: each row's timed calls and median per placement of the two vCPUs,
    and its ratio to the fastest peer in the same placement (empty without a probe)."""
    rows = [r for r in p["rows"] if r.get("by_placement")]
    if not rows:
        return []
    lines = ["", f"By placement of the two vCPUs, read before each timed call (`--probe`; apart: a "
                 f"cache-line round trip above {APART_NS:g} ns):", "",
             "| implementation | one L3: calls | median ms | x fastest peer | apart: calls | median ms "
             "| x fastest peer |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["impl"]]
        for name in PLACEMENTS:
            c = r["by_placement"][name]
            cells += [str(c["calls"]), _f(c["median_ms"]), _f(c.get("rel_to_fastest_peer"), "{:.2f}x")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def precision_ratio(rows: List[Dict[str, Any]]) -> str:
    """'extended' vs 'single' in ONNX Runtime (the issue's budget: extended <= 1.5x the
    default), when both were timed."""
    ms = {r["impl"].rsplit("precision ", 1)[-1]: r["median_ms"] for r in rows
          if r["status"] == "ok" and r["impl"] in ("ours: onnxruntime, precision single",
                                                   "ours: onnxruntime, precision extended")}
    if not (ms.get("single") and ms.get("extended")):
        return ""
    return (f"ONNX Runtime, precision extended / single: {ms['extended'] / ms['single']:.2f}x "
            f"({_f(ms['extended'])} / {_f(ms['single'])} ms median)")


def chart(report: Dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ps = report["presets"]
    fig, axes = plt.subplots(len(ps), 1, figsize=(9, 1.2 + 2.6 * len(ps)), squeeze=False)
    for ax, p in zip(axes[:, 0], ps):
        rows = [r for r in p["rows"] if r["rel_to_fastest_peer"]]
        if not rows:
            ax.text(0.5, 0.5, f"{p['preset']}: no peer or no result", ha="center", va="center")
            ax.axis("off")
            continue
        names = [r["impl"] + ("" if r.get("identical_settings", True) else " *") for r in rows]
        vals = [r["rel_to_fastest_peer"] for r in rows]
        colors = ["tab:blue" if r["group"] == "ours" else "tab:gray" for r in rows]
        ax.barh(range(len(rows)), vals, color=colors)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
        ax.set_title(f"{p['preset']} (batch {p['batch']} x {p['seconds']:g} s): throughput vs fastest peer "
                     f"({p['fastest_peer']}, {p['fastest_peer_ms']:.1f} ms)", fontsize=9)
    m = report["machine"]
    fig.suptitle(f"{m['cores']} cores, {m['cpu']}, torch {m['torch']}, ORT {m['onnxruntime']}  "
                 "(blue: ours; * not identical settings)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(report: Dict[str, Any], out: Path) -> None:
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown(report))
    try:
        chart(report, out / "bench.png")
    except Exception as exc:  # the numbers matter more than the picture
        _say(f"chart failed: {type(exc).__name__}: {exc}")
