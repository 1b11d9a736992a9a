"""Shared fixtures: bundles are expensive (a .pt2 is an AOTInductor compile, ~10-20 s on
CPU), so they are exported once per session into a temporary directory and shared.

Tests that modify a bundle (tampering, manifest edits) must work on a copy
(:func:`copy_bundle`), never on the shared one.
"""
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Union

import pytest

warnings.filterwarnings("ignore")
# nnAudio2 prints a citation reminder on import; tests compare against it, quietly.
os.environ.setdefault("NNAUDIO_DISABLE_CITATION_REMINDER", "1")

# Short clips keep the exports fast; the per-preset bundles hold every format.
SHORT_SECONDS = 1.0
SHORT_FRAMES = 64           # a synthesis preset's short input (spectrum frames)
ALL_FORMATS = ("torchscript", "onnx", "pt2")


def short_length(name: str) -> Dict[str, Any]:
    """The overrides that make preset ``name`` short: SHORT_SECONDS of input audio, or
    SHORT_FRAMES frames of a synthesis preset's input spectrum."""
    import nnaudio_export as nx
    from nnaudio_export.spec import input_kind
    if input_kind(nx.presets.get_spec(name)) == "spectrum":
        return {"num_frames": SHORT_FRAMES}
    return {"seconds": SHORT_SECONDS}


class BundleCache:
    """Export-on-first-use cache of bundle directories, keyed by a name.

    ``get(key, source, **export_kwargs)`` exports ``source`` into ``root / key`` the first
    time and returns the path afterwards. A failed export is remembered, so every test that
    needs that bundle fails quickly with the original error instead of exporting again.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._done: Dict[str, Union[Path, BaseException]] = {}

    def get(self, key: str, source: Any, **kwargs: Any) -> Path:
        if key not in self._done:
            import nnaudio_export as nx
            try:
                self._done[key] = Path(nx.export(source, self.root / key, **kwargs))
            except Exception as exc:  # remembered; raised below for this and later callers
                self._done[key] = exc
                raise
        got = self._done[key]
        if isinstance(got, BaseException):
            pytest.fail(f"export of bundle {key!r} failed earlier: {type(got).__name__}: {got}")
        return got

    def preset(self, name: str) -> Path:
        """The preset made short (:func:`short_length`), every format, no export-time verify
        (the tests run ``nx.verify`` themselves)."""
        return self.get(f"preset_{name}", name, formats=ALL_FORMATS, verify=False,
                        **short_length(name))


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> BundleCache:
    return BundleCache(tmp_path_factory.mktemp("shared_bundles"))


@pytest.fixture(scope="session")
def mel_bundle(bundles) -> Path:
    """mel_128, 0.5 s, float32 mono, length_policy 'exact', every format: shared by
    test_cpp, test_triton and test_ort_serving."""
    return bundles.get("mel_128_0.5s", "mel_128", seconds=0.5, formats=("torchscript", "onnx", "pt2"),
                       verify=False)


def copy_bundle(src: Path, dst_parent: Path, name: str = "copy") -> Path:
    dst = Path(dst_parent) / name
    shutil.copytree(src, dst)
    return dst
