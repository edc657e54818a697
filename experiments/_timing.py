"""Timing helpers the issue-12 experiment scripts share: the process setup, interleaved rounds,
min/median/max."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List


def prepare(threads: int) -> str:
    """The harness's allocator setting, `threads` torch threads and seed 0; returns the header
    line every script prints first (threads, load average, allocator)."""
    import torch
    from harness import runtime
    allocator = runtime.tune_allocator()["allocator"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return f"{threads} thread(s), load average {os.getloadavg()[0]:.2f}, allocator {allocator}"


def interleaved(forms: Dict[str, Callable[[], object]], rounds: int) -> Dict[str, List[float]]:
    """One untimed call of each form, then `rounds` rounds of each in turn: {name: [ms]}.
    Interleaving makes a load change hit every form alike."""
    for f in forms.values():
        f()
    ts = {k: [] for k in forms}
    for _ in range(rounds):
        for k, f in forms.items():
            t0 = time.perf_counter()
            f()
            ts[k].append((time.perf_counter() - t0) * 1e3)
    return ts


def min_med_max(ts: Dict[str, List[float]], fmt: str = ".2f") -> tuple:
    """({name: median}, "name min/med/max  ..." cells)."""
    med = {k: statistics.median(v) for k, v in ts.items()}
    cells = "  ".join(f"{k} {min(v):{fmt}}/{med[k]:{fmt}}/{max(v):{fmt}}" for k, v in ts.items())
    return med, cells
