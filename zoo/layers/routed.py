"""What every routed block does with a `Route`, whatever it routes: samples, patches or tokens.

A family's block says which branches run on which items and how their results combine (its
architecture). The mechanics below are the same in all of them:

* `single_choice(route)`: the choice every item took, or None when the items are split. The
  block then runs that one branch on the whole batch, with no gathering or scattering.
* `taken_weight(route)`: the straight-through weight of the choice each item took, (..., 1).
  Its forward value is exactly 1; multiplying by it only carries the router's gradient, so it
  is None when nothing needs a gradient (eval) and callers skip the multiply (a full pass).
* `scaled(values, weight)`: values times the taken weight, or the values themselves.
* `dense_mix(route, outputs)`: the dense combine, sum over choices of weight(c) * outputs[c].
* `gather_samples(x, *groups)` and `assemble(parts, batch)`: the samples of several item groups
  in one batch (keeping x's memory format), and an output whose rows each come from exactly one
  part, written once with no zero fill.
* `rows_with(mask)`: the images (or sequences) that hold at least one item of a branch.
* the lower-level gathers and scatters live in `zoo.ops.dispatch` (`select_items`, `pack_rows`,
  `packed_rows_index`, which writes packed rows and their padding into one buffer).
* static shapes (docs/DESIGN.md, "Compiled execution"): `unselected(selected, n)` and
  `fixed_rows(index)` for a fixed-capacity route's `selected` items, and `dense_under_compile`,
  whether a block runs its dense form because a compiler is tracing an eval forward.

Every routed block is a `RoutedBlock` (`zoo.layers.routed_block`): its choices, its routed mix,
and one choice run as a static model would (docs/DESIGN.md, "Routed blocks").
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import torch

from ..ops.dispatch import Packed, gather_items, select_items
from .router import Route

__all__ = ["single_choice", "taken_weight", "scaled", "dense_mix", "weight_of", "gather_samples", "assemble",
           "rows_with", "memory_format", "unselected", "fixed_rows", "dense_under_compile"]


def single_choice(route: Route) -> Optional[str]:
    """The one choice every item took, or None (one host sync)."""
    counts = torch.bincount(route.decisions.reshape(-1), minlength=len(route.choices)).tolist()
    taken = [c for c, n in zip(route.choices, counts) if n]
    return taken[0] if len(taken) == 1 else None


def taken_weight(route: Route, dtype: Optional[torch.dtype] = None) -> Optional[torch.Tensor]:
    """(..., 1) straight-through weight of each item's own choice, or None at eval."""
    if not route.carries_gradient:
        return None
    w = route.weights.gather(-1, route.decisions.unsqueeze(-1))
    return w if dtype is None else w.to(dtype)


def scaled(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """values times a per-item weight (items, 1) or (B, N, 1), broadcast over the values' trailing
    dims; the values themselves when weight is None."""
    if weight is None:
        return values
    w = weight.squeeze(-1).to(values.dtype)
    return values * w.reshape(*w.shape, *([1] * (values.dim() - w.dim())))


def weight_of(route: Route, name: str, like: torch.Tensor) -> torch.Tensor:
    """Each item's weight for choice `name`, shaped to broadcast against `like`, whose leading
    dims are the route's items."""
    w = route.weights[..., route.index(name)].to(like.dtype)
    return w.reshape(*w.shape, *([1] * (like.dim() - w.dim())))


def dense_mix(route: Route, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum over choices of weight(choice) * outputs[choice]: every branch ran on every item."""
    total = None
    for name, out in outputs.items():
        term = weight_of(route, name, out) * out
        total = term if total is None else total + term
    return total


def memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format


def gather_samples(x: torch.Tensor, *groups: torch.Tensor) -> torch.Tensor:
    """The samples of `groups` (sorted, disjoint index tensors), one group after the other,
    keeping x's memory format (index_select on a channels-last tensor would return NCHW, and
    every later op would convert back). One group that is the whole batch is x itself."""
    if any(g.numel() == x.shape[0] for g in groups):
        return x  # indices are sorted and unique: the whole batch, in order
    index = torch.cat(groups) if len(groups) > 1 else groups[0]
    if memory_format(x) == torch.channels_last:
        return gather_items(x.permute(0, 2, 3, 1), index).permute(0, 3, 1, 2)
    return gather_items(x, index)


def assemble(parts: Sequence[Tuple[torch.Tensor, torch.Tensor]], batch: int) -> torch.Tensor:
    """(index, values) parts whose indices cover every row of `batch` exactly once -> one tensor;
    each row is written once (no zero fill, no out-of-place copies)."""
    if len(parts) == 1:
        return parts[0][1]
    ref = parts[0][1]
    out = torch.empty((batch,) + ref.shape[1:], dtype=ref.dtype, device=ref.device,
                      memory_format=memory_format(ref))
    for index, values in parts:
        out.index_copy_(0, index, values)
    return out


def rows_with(mask: torch.Tensor):
    """(rows, their mask rows) for the rows of a (B, N) mask that hold a True entry; rows is
    None when every row does (then nothing needs selecting)."""
    has = mask.any(dim=1)
    if bool(has.all()):
        return None, mask
    rows = select_items(has)
    return rows, mask.index_select(0, rows)


def unselected(selected: torch.Tensor, n: int) -> torch.Tensor:
    """The sorted positions along the last dim that `selected` (sorted (..., k) indices into n)
    leaves out: (..., n - k), a shape known before the data (no `nonzero`, no host sync)."""
    taken = torch.zeros(*selected.shape[:-1], n, dtype=torch.int8, device=selected.device)
    taken = taken.scatter(-1, selected, torch.ones_like(selected, dtype=torch.int8))
    # a stable sort puts the untaken positions (0) first, in their order
    return torch.sort(taken, dim=-1, stable=True).indices[..., :n - selected.shape[-1]]


def fixed_rows(index: torch.Tensor) -> Packed:
    """A packing whose every row holds exactly index.shape[1] chosen items, no padding: what
    `pack_rows` gives for a fixed-capacity route, built without reading the counts on the host."""
    B, k = index.shape
    return Packed(index, torch.ones(B, k, dtype=torch.bool, device=index.device),
                  torch.full((B,), k, dtype=torch.long, device=index.device))


def dense_under_compile(route: Route, capacity: Optional[float]) -> bool:
    """Whether a fixed-capacity block runs its dense form: at eval (no `selected`) while
    torch.compile traces it. Eval decisions come from a per-item threshold, so the number of
    items on each branch is only known from the data; a compiled graph (fullgraph=True) cannot
    gather them without a host sync, so it runs every branch on every item and keeps each item's
    own (one-hot weights: the values of sparse execution). docs/DESIGN.md, "Compiled execution"."""
    return (capacity is not None and route.sparse and route.selected is None
            and torch.compiler.is_compiling())
