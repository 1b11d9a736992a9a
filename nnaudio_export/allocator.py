"""The C allocator's part in CPU timings: glibc returns large freed blocks to the kernel, so
every call that allocates them pays page faults again (standard library only).

glibc's ``malloc`` serves a block above its mmap threshold (128 KiB at start, raised
dynamically up to 32 MiB as such blocks are freed) with a fresh ``mmap`` and unmaps it on
``free``. A tensor of tens of MB (whisper_80's power spectrum of 8 x 30 s: 44 MB) is then new
memory on every call, and touching it costs one page fault per 4 KiB page, each zeroing the
page. Measured 2026-12-05 (2 cores, AMD EPYC, glibc 2.36, torch 2.13, 2 threads):
``torch.stft`` + ``|X|^2`` of 8 x 30 s took 48.2 ms with 25,900 page faults per call, 18.7 ms
with none once :func:`retain_freed_memory` had run; in the benchmark (whisper_80, 8 x 30 s)
openai-whisper's log-mel 49.4 -> 25.5 ms, our TorchScript bundle 76.4 -> 38.6 ms. ONNX Runtime
keeps its own arena and pays no faults (25.0 / 25.1 ms).

What a process that calls a frontend repeatedly can do (any one):

- call :func:`retain_freed_memory` once at start (glibc; what ``nnaudio-export bench
  --malloc retain`` does);
- start it with ``MALLOC_MMAP_THRESHOLD_=2147483647 MALLOC_TRIM_THRESHOLD_=2147483647`` in the
  environment (the same two settings, read by glibc at start: a C++ / libtorch application
  needs no code), or call ``mallopt(M_MMAP_THRESHOLD, ...)`` and ``mallopt(M_TRIM_THRESHOLD,
  ...)`` itself;
- link or preload another allocator that keeps freed memory (jemalloc, tcmalloc; not measured
  here).

The price: memory freed is kept for reuse instead of going back to the operating system, so
the resident size stays at its peak (one batch's intermediates).
"""
import ctypes
import ctypes.util
import os
import platform
from typing import Any, Dict

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# mallopt takes an int: blocks below 2 GiB come from the heap and stay there once freed.
RETAIN_LIMIT = 2 ** 31 - 1
# Environment variables and preloads that change how the C allocator behaves.
ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
                 "MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD")

_RETAINED = {"limit": 0}


def glibc_version() -> str:
    """'2.36' when the process runs on glibc, else ''."""
    lib, version = platform.libc_ver()
    return version if lib == "glibc" else ""


def retain_freed_memory(limit: int = RETAIN_LIMIT) -> bool:
    """Make glibc keep freed blocks below ``limit`` bytes for reuse (``mallopt``: mmap
    threshold and trim threshold to ``limit``), so tensors allocated on every call stop
    costing page faults (see the module docstring for figures). Process-wide and lasting;
    call it before the first batch. Returns False, changing nothing, when the C library is
    not glibc (musl, macOS, Windows: their allocators behave otherwise)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 << 20 <= limit <= RETAIN_LIMIT:
        raise ValueError(f"limit must be an int between 1 MiB and {RETAIN_LIMIT} bytes, got {limit!r}")
    if not glibc_version():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(limit)) == 1 and \
        libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(limit)) == 1
    if not ok:
        raise RuntimeError(f"glibc {glibc_version()} refused mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD, "
                           f"{limit})")
    _RETAINED["limit"] = int(limit)
    return True


def minor_faults() -> int:
    """Minor page faults of this process so far, all threads (``getrusage``): a call that
    allocates memory the C allocator got fresh from the kernel pays one per 4 KiB page it
    touches (what :func:`retain_freed_memory` removes). Unix only (``resource``)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def allocator_state() -> Dict[str, Any]:
    """What governs the C allocator in this process: the C library, whether
    :func:`retain_freed_memory` ran (and its limit), and the allocator environment variables
    set (:data:`ALLOCATOR_ENV`)."""
    return {"libc": f"glibc {glibc_version()}" if glibc_version() else "not glibc",
            "retain_freed_memory": _RETAINED["limit"] or None,
            "env": {k: os.environ[k] for k in ALLOCATOR_ENV if os.environ.get(k)}}


def describe_allocator(state: Dict[str, Any]) -> str:
    """One line for a report, e.g. 'glibc 2.36, freed memory retained below 2147483647 bytes
    (retain_freed_memory)' or 'glibc 2.36, its defaults (large blocks unmapped when freed:
    page faults on every call)'."""
    env = ", ".join(f"{k}={v}" for k, v in state.get("env", {}).items())
    if state.get("retain_freed_memory"):
        how = f"freed memory retained below {state['retain_freed_memory']} bytes (retain_freed_memory)"
    elif env:
        how = f"environment {env}"
    elif state.get("libc", "").startswith("glibc"):
        how = "its defaults (large blocks unmapped when freed: page faults on every call)"
    else:
        how = "its defaults"
    return f"{state.get('libc', 'unknown libc')}, {how}"
