"""Gather/scatter over routed items: how sparse execution runs a branch on the items that chose it
(what a branch still computes over every item, such as keys/values or a scan, is its block's business).

Two shapes of dispatch cover every family:

* flat items (samples, or patches/tokens that need no sequence context):
  `select_items` + `index_select` on the flattened batch, results put back with `index_copy`.
* per-sequence packing (queries that still attend over their own sequence, recurrences that
  must keep order): `pack_rows` moves each sequence's chosen items to the front, in order,
  padded to the longest count; `unpack_rows` writes the results back.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

__all__ = ["select_items", "gather_items", "scatter_items", "Packed", "pack_rows", "unpack_rows",
           "gather_rows", "packed_rows_index"]


def select_items(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the True items of `mask` (any shape), for index_select/index_copy."""
    return mask.reshape(-1).nonzero(as_tuple=False).squeeze(1)


def gather_items(x: torch.Tensor, index: torch.Tensor, item_dims: int = 1) -> torch.Tensor:
    """Select items of `x` whose first `item_dims` dims are flattened into one."""
    flat = x.reshape(-1, *x.shape[item_dims:])
    return flat.index_select(0, index)


def scatter_items(out: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
                  item_dims: int = 1) -> torch.Tensor:
    """Out-of-place index_copy of `values` into the items of `out` (autograd-safe)."""
    flat = out.reshape(-1, *out.shape[item_dims:])
    return flat.index_copy(0, index, values.to(flat.dtype)).reshape(out.shape)


class Packed(NamedTuple):
    index: torch.Tensor   # (B, M) position of each packed item in its sequence
    valid: torch.Tensor   # (B, M) False for padding at the end of a short row
    counts: torch.Tensor  # (B,) number of chosen items per row


def pack_rows(mask: torch.Tensor) -> Packed:
    """Per-row positions of the True entries of a (B, N) mask, kept in order, padded at the end.

    Padding (where `valid` is False) holds positions of the row's unchosen items, in order, so
    gathers stay in range; it always follows the row's chosen items. Order is preserved, so a
    causal computation over the packed row stays causal.
    """
    B, N = mask.shape
    counts = mask.sum(dim=1)
    M = int(counts.max()) if B > 0 else 0
    # a stable sort of ~mask puts the chosen positions first, in their original order
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :M]
    valid = torch.arange(M, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)
    return Packed(order, valid, counts)


def unpack_rows(out: torch.Tensor, packed: Packed, values: torch.Tensor) -> torch.Tensor:
    """Write packed `values` (B, M, ...) back into `out` (B, N, ...) at the packed positions.

    Out of place (autograd-safe). Padding entries are sent to scratch rows past the end, each
    to its own, instead of being filtered out by a boolean mask (a nonzero + two gathers).
    """
    B, N = out.shape[:2]
    M = packed.index.shape[1]
    flat_out = out.reshape(B * N, *out.shape[2:])
    flat_index = packed_rows_index(packed, N)
    ext = torch.cat([flat_out, flat_out.new_empty(B * M, *out.shape[2:])])
    ext.index_copy_(0, flat_index, values.reshape(B * M, *values.shape[2:]).to(ext.dtype))
    return ext[:B * N].reshape(out.shape)


def packed_rows_index(packed: Packed, row_len: int, rows: Optional[torch.Tensor] = None,
                      total_rows: Optional[int] = None) -> torch.Tensor:
    """Flat (B*M,) positions to write packed values to, in a buffer of `total_rows` rows (all
    B * row_len items by default) followed by one scratch row per packed entry.

    Row b of the packing is row `rows[b]` of the buffer's (rows, row_len) items (b itself when
    rows is None); padding entries go to their own scratch row past the end, so one index_copy
    writes a whole packing without a boolean filter.
    """
    b, M = packed.index.shape
    device = packed.index.device
    start = (torch.arange(b, device=device) if rows is None else rows) * row_len
    total = b * row_len if total_rows is None else total_rows
    scratch = total + torch.arange(b * M, device=device).view(b, M)
    return torch.where(packed.valid, packed.index + start.unsqueeze(1), scratch).reshape(-1)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...), per-row positions index (B, M) -> (B, M, ...): x[b, index[b, m]].

    One index_select on the flattened (B*N) items (faster than gather with an expanded index).
    """
    B, N = x.shape[:2]
    flat = (index + (torch.arange(B, device=x.device) * N).unsqueeze(1)).reshape(-1)
    return gather_items(x, flat, item_dims=2).reshape(B, index.shape[1], *x.shape[2:])
