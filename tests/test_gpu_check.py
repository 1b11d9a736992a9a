"""scripts/gpu_check.py, the one command a short GPU lease runs (build, parity, ORT placement,
benchmark), rehearsed without a GPU (``--dry-run-cpu``: 'cpu' wherever 'cuda' would be), so
that the script cannot rot between the sessions that are lent a GPU."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rehearsal_builds_verifies_and_reports_node_placement(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run-cpu",
                          "--out", str(out), "--work", str(work), "--stages", "build,parity",
                          "--presets", "speechbrain_fbank_40", "--bench-presets", "mel_128", "--jobs", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "ALL CHECKS PASSED" in res.stdout
    env = json.loads((out / "gpu_env.json").read_text())
    assert env["torch"] and "onnxruntime" in env
    parity = json.loads((out / "gpu_parity.json").read_text())
    (result,) = parity["results"]
    assert result["name"] == "speechbrain_fbank_40" and result["ok"]
    backends = {r["backend"] for r in result["report"]["rows"] if r["status"] == "passed"}
    assert backends == {"eager", "torchscript", "onnxruntime"}     # pinned: every backend ran
    placement = result["ort_placement"]
    assert set(placement["nodes_by_provider"]) == {"CPUExecutionProvider"} and placement["all_on_device"]
    table = (out / "gpu_parity.md").read_text()
    assert "| speechbrain_fbank_40 | onnxruntime | cpu | float64_cpu |" in table


def test_split_probe_rehearsal_times_the_three_layouts(tmp_path):
    """scripts/gpu_probe_split.py (is the transpose-free split worth it on a GPU?) rehearsed on
    the CPU: the three layouts run, the 'cuda + split' one really splits stage 2 and gives the
    dense one's numbers to float32 rounding, and both 'cuda' ONNX bundles are timed."""
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_probe_split.py"), "--device", "cpu",
                          "--batch", "1", "--presets", "stft_2048", "--out", str(out),
                          "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (result,) = json.loads((out / "split_probe.json").read_text())
    rows = {r["layout"]: r for r in result["rows"]}
    assert list(rows) == ["cuda", "cuda + split", "cpu"]
    assert rows["cuda"]["stage2_split"] == [None] and rows["cuda + split"]["stage2_split"] == [[8, 8]]
    assert all(r["max_rel_diff_vs_first"] <= 1e-5 for r in rows.values())
    assert rows["cuda"]["ort_ms"] > 0 and rows["cuda + split"]["ort_ms"] > 0
    assert "| stft_2048 (batch 1, cpu) | cuda + split |" in (out / "split_probe.md").read_text()
