"""The C allocator's settings (:mod:`nnaudio_export.allocator`): with glibc's defaults a call
that allocates a large tensor pays a page fault per 4 KiB page every time; after
``retain_freed_memory`` the freed block is reused and the faults are gone. Counted with
``getrusage`` in a fresh process (the setting is process-wide), not timed."""
import json
import os
import subprocess
import sys

import pytest

from nnaudio_export import allocator

PROBE = """
import json, sys, torch
import nnaudio_export as nx
from nnaudio_export.allocator import minor_faults
applied = nx.retain_freed_memory() if sys.argv[1] == "retain" else None
def call():                                   # 64 MiB allocated, touched and freed per call
    return float(torch.ones(16 * 2 ** 20).sum())
for _ in range(20):   # the heap settles within ~10 calls (holes left by small blocks fill up)
    call()
faults = []
for _ in range(5):
    f0 = minor_faults(); call(); faults.append(minor_faults() - f0)
print(json.dumps({"applied": applied, "faults": sorted(faults)[2]}))
"""


def _probe(mode):
    env = {k: v for k, v in os.environ.items() if k not in allocator.ALLOCATOR_ENV}   # glibc's defaults
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_retained_memory_stops_the_page_faults_of_large_tensors():
    pages = 16 * 2 ** 20 * 4 // 4096                 # 16,384 pages of 4 KiB per call
    default, retained = _probe("default"), _probe("retain")
    if not allocator.glibc_version():                # another C library: nothing is changed, and it says so
        assert retained["applied"] is False
        return
    assert default["faults"] >= pages // 2, default   # glibc unmapped the block: every page faults again
    assert retained["applied"] is True and retained["faults"] <= pages // 50, retained


def test_retain_refuses_a_bad_limit_and_changes_nothing_off_glibc(monkeypatch):
    for bad in (0, 2 ** 31, 1.5, True):
        with pytest.raises(ValueError, match="limit must be an int"):
            allocator.retain_freed_memory(bad)
    monkeypatch.setattr(allocator, "glibc_version", lambda: "")
    assert allocator.retain_freed_memory() is False
    assert allocator.allocator_state()["libc"] == "not glibc"


def test_the_report_line_says_what_governs_the_allocator(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    base = {"libc": "glibc 2.36", "retain_freed_memory": None, "env": {}}
    assert allocator.describe_allocator(base) == \
        "glibc 2.36, its defaults (large blocks unmapped when freed: page faults on every call)"
    assert allocator.describe_allocator({**base, "retain_freed_memory": 2 ** 31 - 1}) == \
        "glibc 2.36, freed memory retained below 2147483647 bytes (retain_freed_memory)"
    assert allocator.describe_allocator({**base, "env": {"LD_PRELOAD": "libjemalloc.so.2"}}) == \
        "glibc 2.36, environment LD_PRELOAD=libjemalloc.so.2"
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "2147483647")
    assert allocator.allocator_state()["env"] == {"MALLOC_MMAP_THRESHOLD_": "2147483647"}


def test_minor_faults_count_this_process():
    f0 = allocator.minor_faults()
    block = bytearray(8 * 2 ** 20)      # calloc'd fresh from the kernel: its pages fault when touched
    block[::4096] = b"\x01" * len(block[::4096])
    assert allocator.minor_faults() - f0 >= 1000
