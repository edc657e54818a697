"""Executed FLOPs of a trained network over a suite's eval items: the record's `flops` field.

For each batch of evenly spaced eval items, `zoo.flops.flops_report` counts the FLOPs hard
routing executes (sparse execution) and the dense reference (dense execution, every router at
its full choice); saved = 1 - executed / dense over the whole set.

Attention is counted two ways (`zoo.flops`, "Attention conventions"): the plain keys by the pairs
the mask allows, the `_computed` keys by the pairs the kernels multiply; `conventions` in the
record says what each means.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import HarnessError

__all__ = ["measure_flops", "sample_indices"]

# how many evenly spaced eval items `run` counts is its task's `flops_items` (harness/tasks.py)


def sample_indices(size: int, limit: Optional[int]) -> list:
    """`limit` evenly spaced indices of a `size`-item eval set (all of them when None).

    Evenly spaced, not the first N: eval sets are ordered (mnist5k's test split is sorted by
    class, pydocs by topic), and routing, hence executed FLOPs, depends on the content."""
    n = size if limit is None else min(int(limit), size)
    return [i * size // n for i in range(n)]


def measure_flops(net: torch.nn.Module, dataset, limit: Optional[int] = None, batch_size: int = 64) -> dict:
    """Executed and dense FLOPs of `net` averaged over `limit` evenly spaced items of `dataset`
    (all of them when None), in batches of `batch_size`; the record's `flops` field."""
    from torch.utils.data import default_collate

    import zoo.flops

    index = sample_indices(len(dataset), limit)
    n = len(index)
    if n < 1:
        raise HarnessError("no eval samples to count FLOPs on")
    batch_size = min(int(batch_size), n)
    device = next(net.parameters()).device
    totals = {c: [0, 0] for c in zoo.flops.CONVENTIONS}  # convention -> [executed, dense]
    tokens = 0
    per = "sample"
    for start in range(0, n, batch_size):
        batch = default_collate([dataset[i] for i in index[start:start + batch_size]])
        x = batch["inputs"].to(device)
        report = zoo.flops.flops_report(net, x)
        for c, total in totals.items():
            suffix = "" if c == "allowed" else "_" + c
            total[0] += report["executed" + suffix]
            total[1] += report["dense" + suffix]
        per = report["per"]
        tokens += report["items"] if per == "token" else 0
    executed, dense = totals["allowed"]
    out = dict(
        unit="GFLOPs (2 x MACs)",
        executed_gflops=executed / n / 1e9,       # per sample: one image, or one sequence
        dense_gflops=dense / n / 1e9,
        saved=(1.0 - executed / dense) if dense else 0.0,
        per_sample="sequence" if per == "token" else "image",
        samples=n, batch_size=int(batch_size),
        execution="sparse, hard routing", dense_reference="dense execution, full policy",
        counter="torch.utils.flop_counter.FlopCounterMode + zoo op formulas",
        conventions={c: ("plain keys: " if c == "allowed" else f"keys ending _{c}: ") + zoo.flops.CONVENTION_NOTES[c]
                     for c in totals},
    )
    for c, (ex, de) in totals.items():
        if c == "allowed":
            continue
        out.update({f"executed_gflops_{c}": ex / n / 1e9, f"dense_gflops_{c}": de / n / 1e9,
                    f"saved_{c}": (1.0 - ex / de) if de else 0.0})
    if per == "token":
        out.update(executed_gflops_per_token=executed / tokens / 1e9,
                   dense_gflops_per_token=dense / tokens / 1e9, tokens_per_sample=tokens / n)
        for c, (ex, de) in totals.items():
            if c != "allowed":
                out.update({f"executed_gflops_per_token_{c}": ex / tokens / 1e9,
                            f"dense_gflops_per_token_{c}": de / tokens / 1e9})
    return out
