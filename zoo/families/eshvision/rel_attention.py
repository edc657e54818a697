"""Global multi-head self-attention with a Swin-style relative position bias.

Every patch of a stage attends to every patch of that stage; the bias for an offset
(dy, dx) comes from a learned table over the stage grid at the model's img_size (larger
inputs clip their offsets to the table). Queries may be a subset of the
patches (per-image packed positions, from `zoo.ops.dispatch.pack_rows`): keys and values
still cover the whole image, and each query gets its own row of the bias. That is what
lets a routed block pay the query / output cost only for the patches routed to attention.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RelPosAttention", "biased_attention", "relative_position_index"]


def relative_position_index(h: int, w: int, grid: Tuple[int, int], device=None) -> torch.Tensor:
    """(h*w, h*w) index into a ((2*gh-1) * (2*gw-1))-row table for an h x w grid.

    Offsets beyond the table's grid (an input larger than the model's img_size) are clipped to
    its edge, as in Shaw et al.'s clipped relative positions: far-apart patches share a bias.
    """
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = (ys[:, None] - ys[None, :]).clamp(-(gh - 1), gh - 1) + (gh - 1)
    dx = (xs[:, None] - xs[None, :]).clamp(-(gw - 1), gw - 1) + (gw - 1)
    return dy * (2 * gw - 1) + dx


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for q (B, h, M, d), k and v (B, h, N, d), bias (h, M, N).

    What `F.scaled_dot_product_attention(q, k, v, attn_mask=bias)` computes, as baddbmm +
    softmax + bmm: on CPU a float mask sends SDPA down its `_safe_softmax` math path, which
    this beats by 1.5x at 49 patches and 1.3x at 196 (B=64, 1 thread, experiments/archive/issue12_rel_attention.py).
    """
    B, h, M, d = q.shape
    N = k.shape[2]
    scores = torch.baddbmm(bias.expand(B, h, M, N).reshape(B * h, M, N), q.reshape(B * h, M, d),
                           k.reshape(B * h, N, d).transpose(1, 2), alpha=d ** -0.5)
    return torch.bmm(scores.softmax(-1), v.reshape(B * h, N, d)).view(B, h, M, d)


class RelPosAttention(nn.Module):
    """q/k/v from one `qkv` Linear (split by weight slices, so q can be computed for a subset)."""

    def __init__(self, dim: int, num_heads: int, grid: Tuple[int, int], qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.grid = (int(grid[0]), int(grid[1]))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * self.grid[0] - 1) * (2 * self.grid[1] - 1), num_heads))
        self._index_cache: dict = {}

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _linear(self, x: torch.Tensor, part: slice) -> torch.Tensor:
        bias = self.qkv.bias[part] if self.qkv.bias is not None else None
        return F.linear(x, self.qkv.weight[part], bias)

    def kv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, 2D): keys and values of every patch."""
        return self._linear(x, slice(self.dim, 3 * self.dim))

    def _index(self, hw: Tuple[int, int], device) -> torch.Tensor:
        # the index depends only on the grid: built once per (grid, device), not every call
        key = (tuple(hw), str(device))
        index = self._index_cache.get(key)
        if index is None:
            index = self._index_cache[key] = relative_position_index(*hw, self.grid, device)
        return index

    def bias(self, hw: Tuple[int, int], query_pos: Optional[torch.Tensor], device) -> torch.Tensor:
        """(heads, N, N), or (B, heads, M, N) rows for packed query positions (B, M)."""
        index = self._index(hw, device)
        full = self.relative_position_bias_table[index].permute(2, 0, 1)   # (heads, N, N)
        if query_pos is None:
            return full
        # whole rows of the (heads, N, N) bias, one index_select, rather than a per-element
        # gather from the table for every query
        B, M = query_pos.shape
        rows = full.contiguous().index_select(1, query_pos.reshape(-1))   # (heads, B*M, N)
        return rows.view(self.num_heads, B, M, -1).transpose(0, 1)

    def attend(self, xq: torch.Tensor, kv: torch.Tensor, hw: Tuple[int, int],
               query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """xq (B, M, D) queries (at `query_pos` (B, M), or all N patches in order when None),
        kv (B, N, 2D) -> (B, M, D) after the output projection."""
        B, M, _ = xq.shape
        N = kv.shape[1]
        q = self._linear(xq, slice(0, self.dim)).view(B, M, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = kv.view(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # packed rows too: their (B, heads, M, N) bias is copied once into baddbmm's layout,
        # which beats SDPA's float-mask path at 2 threads (1.34-1.72x at eshvision_xs's 49 and
        # 16 patches, 1.03-1.07x at eshvision_s's) and is within 4 % of it at 1 thread
        # (experiments/archive/issue12_esh_small_shapes.py)
        out = biased_attention(q, k, v, self.bias(hw, query_pos, xq.device).to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(B, M, self.dim))

    def flops_per_patch(self, n: int) -> int:
        """Executed FLOPs per patch of global attention over n patches: q, k, v and the output
        projection, QK^T and AV (the additive bias allows every pair)."""
        return 8 * self.dim * self.dim + 4 * n * self.dim

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """Plain global attention over all patches of (B, N, D)."""
        return self.attend(x, self.kv(x), hw)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, grid={self.grid}"
