"""Process settings the harness applies before it builds a model: the C allocator.

glibc's malloc serves every block above its mmap threshold with a fresh mmap and gives freed
memory at the top of the heap back to the kernel once it passes the trim threshold. A forward
pass frees and reallocates the same few-MB activations over and over, so each of them is
faulted in again, page by page: 7,000 minor page faults per eval forward of eshvision_xs (batch
64, 1 thread), 15,500 per resnet18 forward (batch 8, 224 px). With both thresholds raised, freed
blocks stay in the heap for the next allocation and the faults go to nearly 0: eval forwards are
1.05-1.71x faster, static and routed models and timm's alike, in a process that runs one model
(experiments/archive/issue12_allocator.py).

The cost is resident memory: the process keeps its peak heap instead of returning it. That is
what PyTorch's CPU performance guides get by preloading jemalloc or tcmalloc; mallopt reaches
the same end with the C library that is already loaded, and nothing to install.

`ROUTING_ZOO_ALLOCATOR=system` leaves the C library's defaults (to measure the difference).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Dict, Optional

__all__ = ["tune_allocator", "tune_allocator_or_exit", "allocator_settings", "ENV_VAR"]

ENV_VAR = "ROUTING_ZOO_ALLOCATOR"
# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# large enough that no activation of the zoo's models is mmapped; freed memory is kept
_MMAP_THRESHOLD = 1 << 30
_TRIM_THRESHOLD = 1 << 31

_applied: Optional[Dict[str, object]] = None


def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_allocator() -> Dict[str, object]:
    """Raise glibc's mmap and trim thresholds for this process (once); returns what was set,
    as recorded in every benchmark's conditions (`allocator_settings`)."""
    global _applied
    if _applied is not None:
        return _applied
    choice = os.environ.get(ENV_VAR, "tuned").strip().lower()
    if choice not in ("tuned", "system"):
        from .errors import HarnessError
        raise HarnessError(f"{ENV_VAR}={choice!r}: expected 'tuned' or 'system'")
    libc = _glibc()
    if choice == "system" or libc is None:
        _applied = dict(allocator="system", reason="asked for" if choice == "system" else "not glibc")
        return _applied
    ok = all([libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)])
    _applied = (dict(allocator="glibc mallopt", mmap_threshold=_MMAP_THRESHOLD, trim_threshold=_TRIM_THRESHOLD)
                if ok else dict(allocator="glibc, partly tuned", reason="mallopt refused a setting"))
    return _applied


def tune_allocator_or_exit(prog: str) -> Dict[str, object]:
    """`tune_allocator` for a script's main: a bad ROUTING_ZOO_ALLOCATOR is one line and exit 2."""
    import sys
    from .errors import HarnessError
    try:
        return tune_allocator()
    except HarnessError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2)


def allocator_settings() -> Dict[str, object]:
    """What `tune_allocator` set in this process, or the system default if it was not called."""
    return _applied if _applied is not None else dict(allocator="system", reason="not tuned")
