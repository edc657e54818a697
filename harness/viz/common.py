"""What every picture shares: the headless backend, the route colours, and "PNG + JSON".

Each picture is written as NAME.png with NAME.json beside it. The JSON holds exactly the
numbers drawn (and what they were computed from), so a figure can be checked or re-plotted
without re-running the model. Figures are saved at a fixed size (no tight bounding box), so
a picture's pixel size follows from its layout alone.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, Iterator, List, Tuple

import torch

from leaderboard.atomic import atomic_path, atomic_write

__all__ = ["DPI", "ROUTE_COLORS", "plt", "save_picture", "route_color", "batches", "png_size",
           "Picture"]

DPI = 100

# colours by a choice's place in its router's `choices`, so a new family needs no entry here
# (the first choice, always blue, is DHVN's conv, ESH's ssm and Exp11's gdn: each router's cheap_choice,
# though not always its cheapest: ESH's attention costs less per patch than its SSM)
ROUTE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#C44E52", "#937860", "#DA8BC3")


def plt():
    """pyplot on the Agg backend, chosen before pyplot is first imported anywhere here."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def route_color(index: int) -> str:
    """The colour of the choice at `index` of its router's choices."""
    return ROUTE_COLORS[index % len(ROUTE_COLORS)]


class Picture(dict):
    """Return value of one drawn picture: name -> paths and size (also what the CLI prints)."""


def _clean(obj):
    """JSON-safe copy: tensors to lists, non-finite floats to None (never NaN in the file)."""
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return _clean(obj.item())
    return obj


def save_picture(fig, out_dir: str, name: str, data: dict) -> Picture:
    """Write out_dir/name.png (fixed size, DPI) and out_dir/name.json (`data` + the pixel size)."""
    pyplot = plt()
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, f"{name}.png")
    w, h = fig.get_size_inches()
    size = [int(round(w * DPI)), int(round(h * DPI))]
    # no bbox_inches="tight": the size must not depend on the text drawn. Both files go through
    # a temporary name and a rename: a kill never leaves a cut PNG or JSON (`leaderboard.atomic`)
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=DPI, metadata={"Software": None})
    finally:
        pyplot.close(fig)
    payload = dict(data)
    payload["figure"] = dict(png=os.path.basename(png), width_px=size[0], height_px=size[1])
    path = os.path.join(out_dir, f"{name}.json")
    atomic_write(path, json.dumps(_clean(payload), indent=1, sort_keys=True) + "\n")
    return Picture(name=name, png=png, json=path, size=tuple(size))


def png_size(path: str) -> Tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def batches(dataset, batch_size: int, limit: int = 0) -> Iterator[Tuple[torch.Tensor, torch.Tensor, List[int]]]:
    """(inputs, data_samples, dataset indices) in dataset order, the first `limit` items (0: all)."""
    from torch.utils.data import default_collate
    n = len(dataset) if not limit else min(limit, len(dataset))
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        batch = default_collate([dataset[i] for i in idx])
        yield batch["inputs"], batch["data_samples"], idx


def shares_from_counts(counts: Dict[str, int]) -> Dict[str, float]:
    total = sum(counts.values())
    return {c: (v / total if total else 0.0) for c, v in counts.items()}
