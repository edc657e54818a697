"""Causal softmax self-attention with RoPE, able to query for a subset of tokens only.

Keys and values are always computed for every token: a token that asks a question still
attends over the whole causal prefix, whatever the other tokens were routed to. Queries
can be restricted to packed per-sequence positions (`zoo.ops.dispatch.pack_rows`); RoPE and
the causal mask then use each query's *original* position, so a query at position t sees
exactly the keys at positions <= t, as it would in the full computation. Packed queries
are processed in position-ordered blocks of 128 that each read keys only up to the latest
position any row of the batch holds in that block (`sorted_query_attention`): the causal saving
is kept only across blocks. With at most 128 packed queries per row (every pydocs sequence at
T = 256) each query reads keys up to the batch's last packed position, 2.33-2.44x the (query,
key) pairs the mask allows (README, "Attention conventions").
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...ops.counting import check_convention, convention_pairs, current_convention
from ...ops.dispatch import Packed, gather_rows
from ...specs import AttentionSpec

__all__ = ["apply_rope", "sorted_query_attention", "fixed_query_attention", "sorted_query_pairs", "CausalSelfAttention"]


def apply_rope(x: torch.Tensor, pos: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotary embedding (rotate-half form) of x (B, L, H, D) at integer positions pos (L,) or (B, L)."""
    half = x.shape[-1] // 2
    inv_freq = theta ** -(torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = pos.to(torch.float32).unsqueeze(-1) * inv_freq       # (..., L, half)
    if angles.dim() == 2:
        angles = angles.unsqueeze(0)
    cos, sin = angles.cos().unsqueeze(2), angles.sin().unsqueeze(2)  # (B|1, L, 1, half)
    x1, x2 = x.float().split(half, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def sorted_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor,
                           block: int = 128) -> torch.Tensor:
    """Causal attention of queries at per-row positions `index` (B, M) over keys (B, H, T, D).

    q (B, H, M, D) -> (B, H, M, D); query m of row b sees keys at positions <= index[b, m].
    Packed queries are in position order, so the queries are split into blocks of `block` and
    each block reads keys only up to the largest position it holds in any row of the batch,
    instead of computing every query against every key under a mask. Within that range the
    kernel multiplies every (query, key) pair, masked or not, and padding queries (any
    position; their outputs are dropped by the caller) run like the others: counted as
    computed (`sorted_query_pairs`), a routed share of queries costs well over its share of the
    causal triangle (docs in `zoo.flops`, "Attention conventions").
    """
    B, H, M, D = q.shape
    T = k.shape[2]
    if M == 0:
        return q.new_zeros(B, H, 0, v.shape[-1])
    pos = torch.arange(T, device=q.device)
    outs = []
    # the key range of every block, in one host sync (the same blocks `sorted_query_pairs` counts)
    for b, (_, stop) in enumerate(_query_blocks(index, block)):
        idx = index[:, b * block:(b + 1) * block]
        # every row of the mask has its own position, so it is never empty
        mask = pos[:stop].view(1, 1, stop) <= idx.unsqueeze(-1)          # (B, Mb, stop)
        outs.append(F.scaled_dot_product_attention(
            q[:, :, b * block:(b + 1) * block], k[:, :, :stop], v[:, :, :stop],
            attn_mask=mask.unsqueeze(1)))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def fixed_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`sorted_query_attention` in shapes known before the data (docs/DESIGN.md, "Compiled
    execution"): every query over every key under the causal mask, one SDPA call, with no host
    sync for the key ranges. A masked key adds nothing, so the values are those of the blocked
    form; it computes more (query, key) pairs when the last query sits well before the end."""
    pos = torch.arange(k.shape[2], device=q.device)
    mask = pos.view(1, 1, -1) <= index.unsqueeze(-1)                    # (B, M, T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1))


def _query_blocks(index: torch.Tensor, block: int):
    """(rows, stop) of each SDPA call `sorted_query_attention` makes for positions index (B, M)."""
    B, M = index.shape
    if M == 0:
        return []
    ends = F.pad(index, (0, (-M) % block), value=0).reshape(B, -1, block).amax(dim=(0, 2)).add(1).tolist()
    return [(min(block, M - b * block), stop) for b, stop in enumerate(ends)]


def sorted_query_pairs(index: torch.Tensor, block: int = 128, convention: Optional[str] = None) -> int:
    """(query, key) pairs per head that `sorted_query_attention` counts for positions index (B, M),
    padding queries included (they run), under `convention` (the current one when None):

    * "allowed": a query at position t sees t + 1 keys: sum(index + 1);
    * "computed": each block of `block` queries runs against every key up to the block's last
      position, in every row of the batch (the mask only changes values), so a block costs
      B x its rows x its key range: a sparse block pays for the keys of its latest query.
    """
    B = index.shape[0]
    if check_convention(convention or current_convention()) == "allowed":
        return int((index + 1).sum())
    return sum(convention_pairs(rows, stop, convention="computed", batch_heads=B)
               for rows, stop in _query_blocks(index, block))


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, spec: AttentionSpec = AttentionSpec(num_heads=8, rope=True)):
        super().__init__()
        self.spec = spec
        self.num_heads = H = spec.num_heads or max(1, dim // 64)
        self.head_dim = D = spec.head_dim or dim // H
        if spec.rope and D % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {D}")
        # separate query and key/value projections: sparse execution projects queries only
        # for the tokens that ask, but keys/values for all of them
        self.q_proj = nn.Linear(dim, H * D, bias=spec.qkv_bias)
        self.kv_proj = nn.Linear(dim, 2 * H * D, bias=spec.qkv_bias)
        self.o_proj = nn.Linear(H * D, dim, bias=False)
        self.query_block = 128  # packed queries per SDPA call (sorted_query_attention)

    def flops_per_token(self, seq_len: int, keys_only: bool = False, convention: Optional[str] = None) -> float:
        """Executed FLOPs per token of one sequence of seq_len tokens, every query asking (the
        dense causal kernel): projections, and QK^T and AV over the (query, key) pairs that
        `convention` counts (the current one, `zoo.ops.counting.flop_convention`, when None):
        "allowed", the causal triangle T (T + 1) / 2; "computed", the CPU kernel's whole key
        blocks (`zoo.ops.counting.cpu_sdpa_pairs`: 1.99x the triangle at T=256, 1.50x at 1024).
        keys_only: the key/value projection alone (computed for every token)."""
        dim, HD = self.q_proj.in_features, self.num_heads * self.head_dim
        kv = 2 * dim * 2 * HD
        if keys_only:
            return kv
        pairs = convention_pairs(seq_len, seq_len, is_causal=True, convention=convention)
        return kv + 2 * dim * HD + 2 * HD * dim + 4 * HD * pairs / seq_len

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return apply_rope(x, pos, self.spec.rope_theta) if self.spec.rope else x

    def forward(self, x: torch.Tensor, queries: Optional[Packed] = None, fixed: bool = False) -> torch.Tensor:
        """x (B, T, dim) -> (B, T, dim); with `queries`, outputs (B, M, dim) at queries.index
        (`fixed`: by `fixed_query_attention`, with no host sync)."""
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        pos = torch.arange(T, device=x.device)
        k, v = self.kv_proj(x).reshape(B, T, 2, H, D).unbind(2)
        k = self._rope(k, pos).transpose(1, 2)
        v = v.transpose(1, 2)
        if queries is None:
            q = self._rope(self.q_proj(x).reshape(B, T, H, D), pos).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            index = queries.index                                          # (B, M)
            q = self.q_proj(gather_rows(x, index)).reshape(B, index.shape[1], H, D)
            q = self._rope(q, index).transpose(1, 2)
            out = fixed_query_attention(q, k, v, index) if fixed else \
                sorted_query_attention(q, k, v, index, self.query_block)
        return self.o_proj(out.transpose(1, 2).reshape(B, -1, H * D))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}, rope={self.spec.rope}"
