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
