"""scripts/server_loop.py and scripts/core_to_core.c: the tools that tell a user which way to
run CPU batches on their host (intra-op threads, item workers or 'auto'), and why it changes."""
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

import nnaudio_export as nx

ROOT = Path(__file__).resolve().parents[1]
TINY = {"sample_rate": 8000, "num_samples": 800,
        "stages": [{"type": "stft", "n_fft": 64, "hop_length": 32}, {"type": "power"},
                   {"type": "mel", "n_mels": 8}, {"type": "log10", "floor": 1e-10}]}


def _script():
    spec = importlib.util.spec_from_file_location("server_loop", ROOT / "scripts" / "server_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """core_to_core.c built with gcc (which .pt2 bundles need too)."""
    binary = tmp_path_factory.mktemp("c2c") / "core_to_core"
    subprocess.run(["gcc", "-O2", "-pthread", str(ROOT / "scripts" / "core_to_core.c"), "-o", str(binary)],
                   check=True, capture_output=True, timeout=120)
    return binary


def test_core_to_core_prints_a_round_trip(probe):
    cpus = [str(c) for c in sorted(os.sched_getaffinity(0))[:2]]
    r = subprocess.run([str(probe), *cpus], capture_output=True, text=True, timeout=60, check=True)
    assert 1.0 < float(r.stdout) < 1e5          # ns; one cache ~70, apart ~330 on our VM
    for cpus in (("100000", "0"), ("0", "100000"), ("0", "1000")):   # no such CPU: said, not hung
        r = subprocess.run([str(probe), *cpus], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and f"cannot run on CPU {max(cpus, key=int)}" in r.stderr


def test_server_loop_times_the_three_ways_in_blocks(tmp_path, probe, capsys):
    mod = _script()
    bundle = nx.export(TINY, tmp_path / "tiny", formats=("onnx",), verify=False)
    out = tmp_path / "blocks.json"
    assert mod.main([str(bundle), "--threads", "2", "--minutes", "0.004", "--block", "0.05",
                     "--probe", str(probe), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("all: intra-op ") and "2 item workers" in text and "auto " in text
    records = json.loads(out.read_text())
    blocks = [r for r in records if "ms_per_batch" in r]
    assert [r["runtime"] for r in blocks[:3]] == ["intra-op", "2 item workers", "auto"]
    assert all(r["ms_per_batch"] > 0 and r["probe_before_ns"] > 0 and r["probe_after_ns"] > 0 for r in blocks)
    ways = records[-1]["batch_timings"]
    assert ways["intra_op"]["calls"] >= 2 and ways["item_workers"]["calls"] >= 2
    row = {"probe_before_ns": 75.0, "probe_after_ns": 80.0}
    assert mod.state(row) == "one cache"
    assert mod.state({**row, "probe_after_ns": 330.0}) == "changing"
    assert mod.state({"probe_before_ns": 320.0, "probe_after_ns": 340.0}) == "apart"
    with pytest.raises(SystemExit):
        mod.main([str(bundle), "--batch", "1"])
    assert "--batch must be >= 2" in capsys.readouterr().err
