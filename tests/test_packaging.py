"""A plain wheel holds the whole package and every preset, and presets load from an
installed copy of it (not from a checkout)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    wheels = list(out.glob("nnaudio_export-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_every_module_and_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nnaudio_export").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set(), "pyproject.toml's package list misses these"
    presets = {f"nnaudio_export/models/{p.name}" for p in (ROOT / "models").glob("*.json")}
    assert len(presets) >= 14 and presets <= names


def test_presets_load_from_an_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True, text=True)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import nnaudio_export as nx; from nnaudio_export import presets; "
        "assert nx.__file__.startswith(sys.argv[1]), nx.__file__; "
        "root = str(presets._preset_root()); assert root.startswith(sys.argv[1]), root; "
        "names = presets.names(); fe = presets.load('whisper_80', seconds=1.0); "
        "print(len(names), fe.output_shape)")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    n, shape = out.stdout.strip().split(" ", 1)
    assert int(n) == len(list((ROOT / "models").glob("*.json")))
    assert shape == "(80, 100)"
