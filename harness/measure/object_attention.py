"""Where a patch router spends its expensive choice: on the object, or on the clutter.

On the cluttered-digit suites (harness/suites/cluttered.py) every test canvas knows its digit's ink
box. A patch router that has learnt where the work is should send the patches that overlap the
digit to attention far more often than the rest of the canvas (issue 23's ESH target: at least
3x, per layer). This measures that per routed layer, from eval forwards with sparse execution,
the decisions the deployed model takes (`zoo.routing.trace`).

A patch of a g x g grid over an S x S canvas covers pixels [j*S/g, (j+1)*S/g) across and the same
down; it is "on the digit" when that square overlaps the digit's ink box (x0, y0, x1, y1), pixel
edges. Fragments of other digits are clutter, so a patch on a fragment counts as "off".
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch

import zoo

__all__ = ["patch_overlap", "object_attention"]


def patch_overlap(boxes: torch.Tensor, grid: int, img_size: int) -> torch.Tensor:
    """(B, grid*grid) bool: which patches of a grid x grid split of each canvas overlap its box.

    boxes: (B, 4) integer pixel edges (x0, y0, x1, y1), x1/y1 exclusive."""
    edges = torch.arange(grid + 1, dtype=torch.float64) * (img_size / grid)
    lo, hi = edges[:-1], edges[1:]                                   # (grid,) patch spans, pixels
    b = boxes.to(torch.float64)
    across = (lo[None] < b[:, 2:3]) & (hi[None] > b[:, 0:1])        # (B, grid) columns hit
    down = (lo[None] < b[:, 3:4]) & (hi[None] > b[:, 1:2])          # (B, grid) rows hit
    return (down[:, :, None] & across[:, None, :]).reshape(len(boxes), grid * grid)


@torch.no_grad()
def object_attention(net, dataset, choice: str = "attention", batch_size: int = 100,
                     limit: int = 0) -> List[Dict[str, float]]:
    """Per patch router, in model order: the share of on-digit patches and of the other patches
    that take `choice` at eval, their ratio, and the counts behind them.

    dataset: a `ClutteredMnist` (items' `inputs`, and `boxes`); limit: the first `limit` canvases
    (0: all)."""
    from torch.utils.data import default_collate
    n = len(dataset) if not limit else min(limit, len(dataset))
    if n == 0:
        raise ValueError("object_attention needs at least one canvas")
    net.eval()
    device = next(net.parameters()).device
    layers: List[str] = []
    on = off = on_n = off_n = None
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        x = default_collate([dataset[i] for i in idx])["inputs"].to(device)
        with zoo.routing.execution(net, "sparse"):
            net(x)
        records = [r for r in zoo.routing.trace(net) if r.granularity == "patch"]
        if not records:
            raise ValueError(f"{type(net).__name__} has no patch router")
        if on is None:
            layers = [r.layer for r in records]
            on, off, on_n, off_n = ([0] * len(records) for _ in range(4))
        boxes = dataset.boxes[idx]
        for k, r in enumerate(records):
            grid = math.isqrt(r.decisions.shape[1])
            if grid * grid != r.decisions.shape[1]:
                raise ValueError(f"router {r.layer}: {r.decisions.shape[1]} patches are not a square grid")
            hit = patch_overlap(boxes, grid, dataset.img_size)
            took = (r.decisions == r.choices.index(choice)).cpu()
            on[k] += int(took[hit].sum())
            off[k] += int(took[~hit].sum())
            on_n[k] += int(hit.sum())
            off_n[k] += int((~hit).sum())
    out = []
    for k, layer in enumerate(layers):
        s_on = on[k] / on_n[k] if on_n[k] else float("nan")
        s_off = off[k] / off_n[k] if off_n[k] else float("nan")
        ratio = s_on / s_off if s_off > 0 else (float("inf") if s_on > 0 else float("nan"))
        out.append(dict(layer=layer, on_share=s_on, off_share=s_off, ratio=ratio, on_patches=on_n[k],
                        off_patches=off_n[k], canvases=n))
    return out


def format_rows(rows: Sequence[Dict[str, float]]) -> str:
    """One line per layer, for logs and notes."""
    return "\n".join(f"{r['layer']}: attention on digit {r['on_share'] * 100:.1f}% of {r['on_patches']} patches, "
                     f"elsewhere {r['off_share'] * 100:.1f}% of {r['off_patches']}; ratio {r['ratio']:.2f}"
                     for r in rows)
