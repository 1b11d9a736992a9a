"""Smoke test of the benchmark (quick mode): files written, rows and fields present.
No speed assertions: timings depend on the machine."""
import json

import numpy as np
import pytest
import torch

import nnaudio_export as nx

from nnaudio_export import bench
from nnaudio_export.cli import build_parser

ROW_FIELDS = ("impl", "group", "status", "median_ms", "min_ms", "max_ms", "runs", "faults_per_call", "gflop",
              "gflops_per_s",
              "pct_of_gemm_peak", "rel_to_fastest_peer", "mem_mb", "identical_settings", "note", "error")
WHISPER_PEERS = ("librosa", "torch.stft", "nnAudio 0.3.4", "openai-whisper",
                 "transformers WhisperFeatureExtractor", "kaldi-native-fbank (80-bin fbank)",
                 "ONNX STFT op (ORT CPU)")


# A stand-in for scripts/core_to_core (the real one: tests/test_server_loop.py, and
# test_placement_reader_runs_the_real_probe below): every third reading 'apart'.
FAKE_PROBE = """#!/bin/sh
n=$(cat "$0.count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$0.count"
if [ $((n % 3)) -eq 0 ]; then echo 331.5; else echo 76.5; fi
"""


def fake_probe(folder):
    path = folder / "fake_core_to_core"
    path.write_text(FAKE_PROBE)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    rc = bench.main(["--quick", "--presets", "whisper_80", "--threads", "1", "--out", str(out),
                     "--probe", str(fake_probe(out))])
    assert rc == 0
    assert torch.get_num_threads() == threads                # restored after the run
    return out


def test_files_written(quick_report):
    for name in ("bench.md", "bench.json", "bench.png"):
        assert (quick_report / name).is_file() and (quick_report / name).stat().st_size > 0
    assert (quick_report / "bundles" / "whisper_80-n16000" / "manifest.json").is_file()
    assert (quick_report / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_rows_and_fields(quick_report):
    rep = json.loads((quick_report / "bench.json").read_text())
    for key in ("cores", "cpu", "date", "torch", "onnxruntime"):
        assert key in rep["machine"]
    assert rep["gemm"]["gflops"] > 0 and rep["quick"] is True and rep["repeats"] == 2
    (p,) = rep["presets"]
    assert p["preset"] == "whisper_80" and p["batch"] == 2 and p["num_samples"] == 16000
    impls = [r["impl"] for r in p["rows"]]
    # whisper_80 declares precision 'single' (the factorised DFT); 'extended' is timed too
    assert impls[:6] == [f"ours: {b}, precision single" for b in bench.OURS] + [
        "ours: torchscript, precision extended", "ours: onnxruntime, precision extended"]
    for peer in WHISPER_PEERS:
        assert peer in impls
    # the Fourier stages: single runs the factorised DFT, whose direct-conv "before" is timed
    # too; extended the same stages in float64, stage 1 as a MatMul (its taps padded to 3 x 8)
    (single,) = p["fourier_stages"]
    (ext,) = p["fourier_stages_extended"]
    assert (ext["method"], ext["dtype"], ext["stage1"]) == ("factorised", "float64", "matmul")
    assert ext["macs_per_frame"] == 27280 + 2 * 11 * 20 * 4
    assert (single["method"], single["n1"], single["n2"]) == ("factorised", 20, 20)
    assert single["macs_per_frame"] == 27280 and single["direct_macs_per_frame"] == 160800
    assert "ours: onnxruntime, precision single, direct conv (before)" in impls
    # the mel bank after it: banded (3 bands of whisper's 80 x 201 bank), listed with the dense cost
    (bank,) = p["filterbank_stages"]
    assert not bank["dense"] and len(bank["bands"]) == 3
    assert bank["macs_per_frame"] == 4815 and bank["dense_macs_per_frame"] == 80 * 201
    for r in p["rows"]:
        for f in ROW_FIELDS:
            assert f in r, (r["impl"], f)
        assert r["status"] in ("ok", "error", "skipped")
    ours = [r for r in p["rows"] if r["group"] == "ours"]
    assert all(r["status"] == "ok" for r in ours), [r["error"] for r in ours]
    for r in ours:
        assert r["runs"] == 2 and r["median_ms"] > 0 and r["gflop"] > 0 and r["mem_mb"] is not None
        assert isinstance(r["faults_per_call"], int) and r["faults_per_call"] >= 0
        assert r["items_per_call"] == 2 and "item(s) a call" not in (r["note"] or "")   # small items: one call
        assert r["rel_to_fastest_peer"] is not None and r["pct_of_gemm_peak"] is not None
    assert p["fastest_peer"] in impls and p["fastest_peer_ms"] > 0
    kaldi = next(r for r in p["rows"] if r["impl"].startswith("kaldi"))
    assert kaldi["identical_settings"] is False


def test_markdown_lists_every_row(quick_report):
    md = (quick_report / "bench.md").read_text()
    assert "GEMM ceiling" in md and "## whisper_80" in md
    assert "factorised 20 x 20 (n_fft 400, hop 160), 27,280 MACs/frame; direct conv 160,800" in md
    assert "Filterbanks: stages.2: 3 bands, 4,815 MACs/frame; dense 16,080 (3.3x fewer)" in md
    for name in ("ours: onnxruntime", "ours: pt2", "librosa", "ONNX STFT op"):
        assert name in md
    assert "ONNX Runtime, precision extended / single: " in md   # the 1.5x budget, visible
    # the C allocator's regime and each call's page faults (glibc's defaults in this run)
    assert "- C allocator: glibc " in md and "its defaults (large blocks unmapped when freed" in md
    assert "| % GEMM peak | page faults / call | mem MB |" in md
    assert "factorised 20 x 20, float64, stage 1 as a MatMul (n_fft 400, hop 160)" in md   # extended


def test_failed_bundle_is_reported_and_peers_still_run(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("layer not available")
    from nnaudio_export.bench import driver     # the submodule itself (bench's names load lazily)
    monkeypatch.setattr(driver, "ensure_bundle", broken)
    cfg = bench.Config(presets=("stft_2048",), out=tmp_path, quick=True, repeats=1, warmup=0, memory=False)
    res = bench.run_preset("stft_2048", cfg, peak_gflops=100.0)
    ours = [r for r in res["rows"] if r["group"] == "ours"]
    assert len(ours) == 4 and all(r["status"] == "error" and "layer not available" in r["error"] for r in ours)
    peers = {r["impl"]: r for r in res["rows"] if r["group"] == "peer"}
    assert peers["librosa"]["status"] == "ok" and peers["torch.stft"]["status"] == "ok"
    assert res["fastest_peer"] is not None


def test_cli_registers_bench():
    args = build_parser().parse_args(["bench", "--quick", "--presets", "whisper_80", "--repeats", "3"])
    assert args.quick and args.presets == ["whisper_80"] and args.repeats == 3
    from nnaudio_export import cli
    assert args.func is cli.cmd_bench            # runs bench.cmd_bench; --help imports no torch


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        bench.main(["--quick", "--presets", "no_such_preset", "--out", str(tmp_path)])


@pytest.mark.parametrize("name", ["kaldi_fbank_80", "kaldi_fbank_80_lhotse"])
def test_kaldi_peer_runs_the_presets_reference_settings(name):
    """The Kaldi presets' peer is kaldi-native-fbank with the spec's own settings ('identical
    settings' in the table): its numbers are the preset's reference's, item by item."""
    from nnaudio_export.bench.peers import build_kaldi_peers
    from nnaudio_export.references import REFERENCES
    from nnaudio_export.signals import clip
    spec = nx.presets.get_spec(name, seconds=1.0)
    xn = np.stack([clip("speech", 16000, 1.0), clip("tones", 16000, 1.0)]).astype(np.float32)
    ((label, identical, device, build),) = build_kaldi_peers(spec, xn)
    assert (label, identical, device) == ("kaldi-native-fbank", True, "cpu")
    fn, flops, _ = build()
    for got, y in zip(fn(), xn):
        np.testing.assert_array_equal(got, REFERENCES[name](y))
    assert flops > 0


def test_streaming_bench_writes_per_chunk_latency(tmp_path):
    """``bench --streaming`` (the CLI flag reaches it): ours and kaldi-native-fbank timed per
    chunk, both the 10 ms chunks' call counts over 0.5 s."""
    args = build_parser().parse_args(["bench", "--streaming", "--chunks-ms", "10", "--stream-seconds", "0.5",
                                      "--out", str(tmp_path)])
    assert args.streaming and args.presets is None
    assert args.func(args) == 0
    rep = json.loads((tmp_path / "bench_streaming.json").read_text())
    (row,) = rep["rows"]
    assert (row["preset"], row["chunk_samples"], row["calls"], row["ort_threads"]) == ("kaldi_fbank_80", 160, 50, 1)
    for impl in ("ours_ort", "kaldi_native_fbank"):
        assert 0 < row[impl]["median_ms"] <= row[impl]["p99_ms"] and row[impl]["rtf"] > 0
    assert "kaldi-native-fbank" in (tmp_path / "bench_streaming.md").read_text()


def test_each_timed_call_waits_for_the_previous_ones_threads(monkeypatch):
    """Round-robin timing sleeps ``settle`` before every timed call (never inside the timed
    region): ONNX Runtime's spinning workers slowed the next implementation up to 1.5x."""
    from nnaudio_export.bench import measure as m
    events = []
    monkeypatch.setattr(m.time, "sleep", lambda s: events.append(("sleep", s)))
    cands = [({"impl": name}, (lambda name=name: events.append(("call", name))), None) for name in "ab"]
    m.measure(cands, warmup=1, repeats=2, settle=0.25)
    timed = events[2:]                                  # after one warm-up call of each
    assert timed == [("sleep", 0.25), ("call", "a"), ("sleep", 0.25), ("call", "b")] * 2
    assert all(row["runs"] == 2 for row, _, _ in cands)
    assert bench.Config(quick=False).settle == m.SETTLE_S == 0.2 and bench.Config(quick=True).settle == 0.0


def test_calls_per_turn_run_back_to_back_after_one_pause(monkeypatch, tmp_path):
    """--calls-per-turn K: each turn is one pause, then K timed calls of the same
    implementation back to back; every call counts in the median, and the turns' first calls
    (after the other implementations ran) get their own median. K out of range is refused."""
    from nnaudio_export.bench import measure as m
    from nnaudio_export.bench.report import describe_turns
    events = []
    monkeypatch.setattr(m.time, "sleep", lambda s: events.append(("sleep", s)))
    cands = [({"impl": name}, (lambda name=name: events.append(("call", name))), None) for name in "ab"]
    m.measure(cands, warmup=1, repeats=2, settle=0.25, placement=lambda: 80.0, calls_per_turn=3)
    timed = events[2:]
    turn = lambda name: [("sleep", 0.25)] + [("call", name)] * 3
    assert timed == (turn("a") + turn("b")) * 2
    for row, _, _ in cands:
        assert row["runs"] == 6 and len(row["placement_ns"]) == 6 and row["first_of_turn_ms"] >= 0
        assert row["by_placement"]["one_l3"]["calls"] == 6
    single = [({"impl": "c"}, lambda: None, None)]
    m.measure(single, warmup=0, repeats=2, settle=0.0)
    assert "first_of_turn_ms" not in single[0][0]
    assert describe_turns({"repeats": 5, "calls_per_turn": 1}) == "5 timed calls"
    assert describe_turns({"repeats": 5, "calls_per_turn": 4}).startswith("20 timed calls in 5 turns of 4")
    for bad in (0, 101, 2.0, True):
        with pytest.raises(ValueError, match="--calls-per-turn must be an integer from 1 to 100"):
            bench.Config(quick=True, calls_per_turn=bad)
    with pytest.raises(ValueError, match="--calls-per-turn"):
        bench.main(["--quick", "--presets", "stft_2048", "--calls-per-turn", "0", "--out", str(tmp_path)])


def test_settle_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--settle"):
        bench.main(["--quick", "--presets", "stft_2048", "--settle", "-1", "--out", str(tmp_path)])


def test_threads_reach_torch_and_onnxruntime(quick_report):
    """``--threads 1`` (the issue's second setting): torch ran one thread and our ORT
    sessions one intra-op thread, and the report says so."""
    rep = json.loads((quick_report / "bench.json").read_text())
    assert rep["machine"]["torch_threads"] == 1 and rep["ort_threads"] == 1
    assert "torch threads 1; ORT intra-op threads 1" in (quick_report / "bench.md").read_text()
    with pytest.raises(ValueError, match="--threads"):
        bench.Config(threads=0)


def test_a_gpu_table_times_only_the_peers_on_the_gpu(tmp_path):
    """--device cuda compares implementations on the same GPU: a peer that runs on the CPU
    (librosa, transformers, kaldi-native-fbank, ORT's STFT op on CPU) is listed as skipped,
    with why, and never timed against a GPU."""
    spec = nx.presets.get_spec("whisper_80", seconds=0.5)
    xn = np.zeros((1, 8000), np.float32)
    from nnaudio_export.bench.peers import prepare_peers
    cands = prepare_peers("whisper_80", spec, torch.from_numpy(xn), xn, "cuda", tmp_path, True)
    rows = {row["impl"]: (row, fn) for row, fn, _ in cands}
    for name in ("librosa", "transformers WhisperFeatureExtractor", "ONNX STFT op (ORT CPU)"):
        row, fn = rows[name]
        assert fn is None and row["status"] == "skipped" and "runs on cpu" in row["error"], row
    assert rows["torch.stft"][0]["device"] == "cuda"


def test_a_bundle_is_reused_only_when_this_code_exported_it(tmp_path):
    """The bench keeps its bundles between runs; one exported by other code (same spec and
    torch, another graph: what happened when 'extended' moved onto the factorised stages) is
    exported again instead of being timed as this code's."""
    from nnaudio_export.bench import bundles
    length = {"num_samples": 16000}
    out = bundles.ensure_bundle("whisper_80", length, tmp_path, formats=("onnx",))
    model = out / "model.onnx"
    first = model.stat().st_mtime_ns
    assert bundles.ensure_bundle("whisper_80", length, tmp_path, formats=("onnx",)) == out
    assert model.stat().st_mtime_ns == first                       # reused
    stamp = out.with_name(out.name + ".source")
    stamp.write_text("0" * 64 + "\n")                              # as if other code wrote it
    bundles.ensure_bundle("whisper_80", length, tmp_path, formats=("onnx",))
    assert model.stat().st_mtime_ns != first
    assert stamp.read_text().strip() == bundles.source_fingerprint()


def test_malloc_mode_is_checked_and_retain_needs_glibc(tmp_path, monkeypatch):
    """``--malloc retain`` (glibc keeps freed memory: no page faults per call) is refused,
    before anything runs, where the C library is not glibc; an unknown mode is refused."""
    with pytest.raises(ValueError, match="--malloc must be one of default, retain"):
        bench.Config(malloc="jemalloc")
    from nnaudio_export.bench import driver
    monkeypatch.setattr(driver, "retain_freed_memory", lambda: False)
    with pytest.raises(ValueError, match="--malloc retain: the C library is not glibc"):
        bench.main(["--quick", "--presets", "stft_2048", "--malloc", "retain", "--out", str(tmp_path)])
    assert not (tmp_path / "bench.json").exists()
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--malloc", "tcmalloc", "--out", str(tmp_path)])


def test_whole_batch_peers_are_also_timed_in_ours_chunks(tmp_path):
    """When ours runs a batch a few items a call (the runtime's CPU default in ONNX Runtime),
    the peers that take the whole batch as one tensor are timed in the same chunks too
    (counted as peers), and torch.stft's recipe gives each item the features it gives in
    one call (per-item tail; float32 rounding of a differently blocked FFT at most)."""
    from nnaudio_export.bench.peers import prepare_peers
    spec = nx.Frontend.from_spec(nx.presets.get_spec("whisper_80", seconds=0.5)).spec
    xn = (0.1 * np.random.default_rng(0).standard_normal((3, 8000))).astype(np.float32)
    cands = prepare_peers("whisper_80", spec, torch.from_numpy(xn), xn, "cpu", tmp_path, True, 2)
    rows = {row["impl"]: (row, fn) for row, fn, _ in cands}
    for name in ("torch.stft", "openai-whisper"):
        row, fn = rows[f"{name} (2 item(s) a call)"]
        assert row["group"] == "peer" and row["identical_settings"] and "2 item(s) a call" in row["note"]
        assert [tuple(p.shape[:1]) for p in fn()] == [(2,), (1,)]
    whole = rows["torch.stft"][1]()
    parts = torch.cat(rows["torch.stft (2 item(s) a call)"][1]())
    assert parts.shape == whole.shape
    assert (parts - whole).abs().max() <= 1e-5 * whole.abs().max()
    assert not any("item(s) a call" in name for name in
                   {row["impl"] for row, _, _ in prepare_peers("whisper_80", spec, torch.from_numpy(xn),
                                                                 xn, "cpu", tmp_path, True, 3)})


def test_ours_in_chunks_is_timed_beside_the_whole_batch(quick_report, monkeypatch):
    """Where the runtime runs the batch a few items a call (ONNX Runtime on the CPU), the same
    session options on the whole batch in one call are timed beside it (what the chunks buy),
    and both give the batch's features."""
    from nnaudio_export import runtime
    from nnaudio_export.bench.driver import prepare_ours
    monkeypatch.setattr(runtime, "CACHE_BYTES_PER_THREAD", 1)     # one item a call
    bundle = quick_report / "bundles" / "whisper_80-n16000"
    fe = nx.presets.load("whisper_80", num_samples=16000)
    xn = (0.1 * np.random.default_rng(1).standard_normal((3, 16000))).astype(np.float32)
    cands = prepare_ours(bundle, fe, torch.from_numpy(xn), xn, "cpu", ("onnxruntime",))
    (chunked, f1, _), (whole, f2, _) = cands
    assert chunked["items_per_call"] == 1 and chunked["note"] == "providers CPU; 1 item(s) a call"
    assert whole["impl"] == chunked["impl"] + ", whole batch a call" and whole["items_per_call"] == 3
    assert whole["note"] == "providers CPU" and whole["probe_memory"] is False
    np.testing.assert_array_equal(f1(), f2())


def test_side_by_side_rows_run_items_on_one_thread_each(tmp_path, quick_report, monkeypatch):
    """With 2 threads on the CPU, ours is also timed on 2 single-threaded sessions side by side
    (``item_workers=2``) and the peers that compute an item at a time on 2 chunks at once with
    one torch thread each: every such row gives the batch's features in order, and the torch
    thread count is restored after each call."""
    from nnaudio_export import runtime
    from nnaudio_export.bench.driver import prepare_ours
    from nnaudio_export.bench.peers import prepare_peers
    spec = nx.Frontend.from_spec(nx.presets.get_spec("whisper_80", seconds=0.5)).spec
    xn = (0.1 * np.random.default_rng(0).standard_normal((3, 8000))).astype(np.float32)
    cands = prepare_peers("whisper_80", spec, torch.from_numpy(xn), xn, "cpu", tmp_path, True, 1, 2)
    rows = {row["impl"]: (row, fn) for row, fn, _ in cands}
    threads = torch.get_num_threads()
    for name in ("torch.stft", "openai-whisper", "librosa", "transformers WhisperFeatureExtractor"):
        row, fn = rows[f"{name} (1 item(s) a call, 2 side by side)"]
        assert row["identical_settings"] and "one thread each" in row["note"]
        side = fn()
        alone = rows[f"{name} (1 item(s) a call)"][1]() if name in ("torch.stft", "openai-whisper") else None
        assert len(side) == 3 and torch.get_num_threads() == threads
        if alone is not None:   # the same single-item calls on 1 thread: float32 rounding apart at most
            for a, b in zip(side, alone):
                a, b = torch.as_tensor(a), torch.as_tensor(b)
                assert a.shape == b.shape and (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert "kaldi-native-fbank (80-bin fbank) (1 item(s) a call, 2 side by side)" not in rows   # not identical

    monkeypatch.setattr(runtime, "CACHE_BYTES_PER_THREAD", 1)     # one item a call
    bundle = quick_report / "bundles" / "whisper_80-n16000"
    fe = nx.presets.load("whisper_80", num_samples=16000)
    xw = (0.1 * np.random.default_rng(1).standard_normal((3, 16000))).astype(np.float32)
    ours = prepare_ours(bundle, fe, torch.from_numpy(xw), xw, "cpu", ("onnxruntime",), workers=2)
    (chunked, f1, _), _, (side, f3, _), (auto, f4, _) = ours
    assert side["impl"] == chunked["impl"] + ", 2 item workers" and side["items_per_call"] == 1
    assert "2 single-threaded sessions side by side" in side["note"] and side["probe_memory"] is False
    one_thread = nx.load(bundle, intra_op_num_threads=1)
    np.testing.assert_array_equal(f3(), one_thread(xw))
    assert auto["impl"] == chunked["impl"] + ", auto" and "item_workers='auto'" in auto["note"]
    for _ in range(8):                       # both ways tried (4 calls each at the start), same bits
        np.testing.assert_array_equal(f4(), one_thread(xw))
    assert {way: t["calls"] for way, t in auto["ways"].items()} == {"intra_op": 4, "item_workers": 4}


def test_profile_script_times_the_timed_calls_only(quick_report, capsys):
    """scripts/profile_onnx.py: per-node kernel times of a bundle's model, each the median of
    the timed calls' events (warm-up calls left out: they hold the arena's first page
    faults), slowest first, with the wall clock; a path without a model says so."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "profile_onnx.py"
    spec = importlib.util.spec_from_file_location("profile_onnx", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bundle = quick_report / "bundles" / "whisper_80-n16000"
    shape, wall, nodes = mod.profile(mod.model_path(str(bundle)), threads=1, batch=2, runs=4)
    assert shape == [2, 16000] and wall > 0
    ops = {op for op, _, _, _ in nodes.values()}
    assert {"MatMul", "Log"} <= ops and all(ms >= 0 for _, ms, _, _ in nodes.values())
    assert mod.main([str(bundle), "--runs", "3", "--top", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("input [1, 16000], 1 thread(s): wall clock") and "warm-up left out" in lines[0]
    assert len(lines) == 5 and all(" ms " in ln for ln in lines[1:])
    ms = [float(ln.split()[0]) for ln in lines[1:]]
    assert ms == sorted(ms, reverse=True)
    with pytest.raises(SystemExit, match="no ONNX model at"):
        mod.model_path(str(quick_report / "nothing"))


def test_rows_are_split_by_the_vcpus_placement(quick_report):
    """--probe: the probe is read before each timed call; every row's calls are split into
    'one_l3' and 'apart' (above 150 ns), with each state's median and its ratio to the
    fastest peer in the same state, in the JSON and as a table in bench.md."""
    rep = json.loads((quick_report / "bench.json").read_text())
    assert rep["placement_probe"]["apart_above_ns"] == 150.0
    (p,) = rep["presets"]
    rows = [r for r in p["rows"] if r["status"] == "ok"]
    readings = [ns for r in rows for ns in r["placement_ns"]]
    assert set(readings) == {331.5, 76.5} and len(readings) == sum(r["runs"] for r in rows)
    for r in rows:
        split = r["by_placement"]
        assert split["one_l3"]["calls"] + split["apart"]["calls"] == r["runs"]
        assert split["apart"]["calls"] == sum(1 for ns in r["placement_ns"] if ns > 150)
        for cell in split.values():
            assert (cell["median_ms"] is None) == (cell["calls"] == 0)
    best = p["fastest_peer_ms_by_placement"]
    peers = [r for r in rows if r["group"] == "peer" and r.get("identical_settings")]
    for name, ms in best.items():
        assert ms == min((r["by_placement"][name]["median_ms"] for r in peers
                          if r["by_placement"][name]["median_ms"] is not None), default=None)
    md = (quick_report / "bench.md").read_text()
    apart = sum(1 for ns in readings if ns > 150)
    assert f"{apart} of {len(readings)} calls found the two vCPUs apart" in md
    assert "| implementation | one L3: calls | median ms | x fastest peer | apart: calls |" in md


def test_a_probe_that_cannot_run_is_refused_before_the_run(tmp_path):
    """--probe names itself in one line: not an executable file, or no reading in ns."""
    with pytest.raises(ValueError, match="--probe: .* is not an executable file .*gcc -O2 -pthread"):
        bench.main(["--quick", "--presets", "stft_2048", "--probe", str(tmp_path / "missing"),
                    "--out", str(tmp_path)])
    talker = tmp_path / "talker"
    talker.write_text("#!/bin/sh\necho hello\n")
    talker.chmod(0o755)
    with pytest.raises(ValueError, match="--probe: .* gave no reading in ns: hello"):
        bench.Config(quick=True, probe=str(talker))
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho cannot run on CPU 1 >&2\nexit 2\n")
    failing.chmod(0o755)
    with pytest.raises(ValueError, match="gave no reading in ns: cannot run on CPU 1"):
        bench.Config(quick=True, probe=str(failing))
    assert not list(tmp_path.glob("bench.*"))                    # nothing was run


def test_placement_reader_runs_the_real_probe(tmp_path):
    """The reader on scripts/core_to_core.c built with gcc: a round trip in ns."""
    import subprocess
    from pathlib import Path
    from nnaudio_export.bench.placement import placement_reader, state
    binary = tmp_path / "core_to_core"
    source = Path(__file__).resolve().parents[1] / "scripts" / "core_to_core.c"
    subprocess.run(["gcc", "-O2", "-pthread", str(source), "-o", str(binary)], check=True,
                   capture_output=True, timeout=120)
    ns = placement_reader(str(binary))()
    assert 1.0 < ns < 1e5 and state(ns) in ("one_l3", "apart")
    assert state(150.0) == "one_l3" and state(150.1) == "apart"
