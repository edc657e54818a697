"""Gated DeltaNet token mixer (flash-linear-attention formulation), with token visibility.

    q, k, v = SiLU(causal depthwise conv_4(Linear(x)))       q, k L2-normalised per head
    beta    = sigmoid(b_proj x)                              write strength per head
    g       = -exp(A_log) * softplus(a_proj x + dt_bias)     log-decay per head
    o       = gated_delta_rule(q, k, v, g, beta)             zoo.ops.delta_rule
    out     = o_proj(RMSNorm(o) * SiLU(gate_proj x))         norm per head

(q/k/v, gate, a and b projections are one fused Linear, `in_proj`, split after the matmul.)

`visible` (B, T) bool lets a routed layer hide tokens from the mixer. An invisible token
  * is not in anyone's short-conv window: the window of token t is the last conv_size - 1
    *visible* tokens before t, then t itself;
  * leaves the recurrent state exactly unchanged (g = 0 and beta = 0 at that step);
  * still gets an output: a read-only query of the state left by the visible tokens before
    it. The routed layer weights that output by zero in the forward pass, but the router's
    straight-through gradient reads it.
For visible tokens this is exactly the mixer run on the packed subsequence of visible tokens,
which is what sparse execution does (it never computes the invisible tokens at all).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...ops.delta_rule import chunk_gated_delta_rule
from ...ops.dispatch import pack_rows
from ...specs import GDNSpec

__all__ = ["ShortConv", "GatedDeltaNet", "short_conv_flops"]


def _l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    # fla's l2norm: x / sqrt(sum x^2 + eps), smooth at x = 0 (F.normalize clamps the norm)
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def _causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Causal depthwise conv over time: x (B, L, C), weight (C, n) -> (B, L, C).

    As n shifted multiply-adds in the (B, L, C) layout: 2-3x faster on CPU than conv1d, which
    needs channels-first copies and runs a slow depthwise kernel, and exactly equal to it.
    """
    n, L = weight.shape[1], x.shape[1]
    xp = F.pad(x, (0, 0, n - 1, 0))
    y = xp[:, :L] * weight[:, 0]
    for i in range(1, n):
        y.addcmul_(xp[:, i:i + L], weight[:, i])  # y is our own fresh tensor: safe in place
    return y


class ShortConv(nn.Module):
    """Causal depthwise conv over time on (B, T, C) features, optionally skipping invisible tokens."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        if size < 2:
            raise ValueError(f"short conv size must be >= 2, got {size}")
        self.size = size
        self.weight = nn.Parameter(torch.empty(channels, size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.size)  # nn.Conv1d's default for a depthwise kernel
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, T, C = x.shape
        if visible is None:
            return _causal_conv(x, self.weight)
        # Split the kernel: the last tap reads token t itself; the first size-1 taps read the
        # visible tokens before t, i.e. a conv of the packed visible row at t's visible rank.
        index = pack_rows(visible).index                                # (B, M)
        seq = x.gather(1, index.unsqueeze(-1).expand(-1, -1, C))        # (B, M, C)
        # history[:, r] = sum_i weight[:, i] * seq[:, r - size + 1 + i] over the first size-1 taps
        history = _causal_conv(F.pad(seq, (0, 0, 1, 0)), self.weight[:, :-1])  # (B, M + 1, C)
        rank = visible.long().cumsum(1) - visible.long()               # visible tokens before t
        history = history.gather(1, rank.unsqueeze(-1).expand(-1, -1, C))
        return history + x * self.weight[:, -1]


def short_conv_flops(module: ShortConv, args: tuple, kwargs: dict, output: torch.Tensor) -> int:
    """The FLOPs a `ShortConv` forward stands for (a `zoo.flops` module rule): its shifted
    multiply-adds are elementwise code, counted as the depthwise conv they are, one multiply-add
    per tap and output."""
    x = args[0]
    visible = args[1] if len(args) > 1 else kwargs.get("visible")
    B, T, C = x.shape
    if visible is None:
        return 2 * B * T * C * module.size
    # the size-1 history taps run over the packed visible row (one step longer for its left
    # pad), the last tap over every token
    M = int(visible.sum(dim=1).max()) if B else 0
    return 2 * B * (M + 1) * C * (module.size - 1) + 2 * B * T * C


class GatedDeltaNet(nn.Module):
    def __init__(self, dim: int, spec: GDNSpec = GDNSpec()):
        super().__init__()
        self.spec = spec
        self.num_heads = H = spec.num_heads
        self.head_k_dim = K = spec.head_k_dim or dim // H
        self.head_v_dim = V = spec.head_v_dim or K
        self.key_dim, self.value_dim = H * K, H * V
        # q, k, v, the output gate and the a/b gate logits are six Linears of the same input,
        # fused into one matmul (the narrow a/b projections alone are slow, skinny matmuls).
        # The depthwise conv is per channel, so one conv over q|k|v equals three separate ones.
        self.splits = (2 * self.key_dim + self.value_dim, self.value_dim, H, H)
        self.in_proj = nn.Linear(dim, sum(self.splits), bias=False)
        self.conv = ShortConv(self.splits[0], spec.conv_size)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.o_norm = nn.RMSNorm(V, eps=1e-5)
        self.o_proj = nn.Linear(self.value_dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Mamba-style decay init (A in [1, 16], dt log-uniform in [1e-3, 0.1]); fine on meta."""
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1.0, 16.0).log())
            lo, hi = math.log(1e-3), math.log(0.1)
            dt = (torch.rand_like(self.dt_bias) * (hi - lo) + lo).exp().clamp_min(1e-4)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def flops_per_token(self, seq_len: int) -> float:
        """Executed FLOPs per token of one sequence of seq_len tokens (projections, short conv
        and the chunked delta rule, as `zoo.flops` counts them)."""
        from ...ops.delta_rule import gated_delta_rule_flops
        dim = self.in_proj.in_features
        H, K, V = self.num_heads, self.head_k_dim, self.head_v_dim
        rule = gated_delta_rule_flops(1, seq_len, H, K, V, chunk_size=self.spec.chunk_size) / seq_len
        return (2 * dim * self.in_proj.out_features + 2 * self.conv.size * self.splits[0] + rule
                + 2 * self.value_dim * dim)

    def features(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None):
        """The delta rule's inputs q, k (B,T,H,K), v (B,T,H,V), g, beta (B,T,H), and the gate (B,T,H,V)."""
        B, T, _ = x.shape
        H, K, V = self.num_heads, self.head_k_dim, self.head_v_dim
        qkv, gate, a, b = self.in_proj(x).split(self.splits, dim=-1)
        qkv = F.silu(self.conv(qkv, visible))
        qk, v = qkv.split([2 * self.key_dim, self.value_dim], dim=-1)
        qk = _l2norm(qk.reshape(B, T, 2 * H, K))  # q and k heads normalised in one pass
        q, k = qk[:, :, :H], qk[:, :, H:]
        beta = torch.sigmoid(b)
        g = -self.A_log.exp() * F.softplus(a + self.dt_bias)
        if visible is not None:
            keep = visible.unsqueeze(-1).to(g.dtype)
            g, beta = g * keep, beta * keep
        return q, k, v.reshape(B, T, H, V), g, beta, gate.reshape(B, T, H, V)

    def forward(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None,
                initial_state: Optional[torch.Tensor] = None, output_final_state: bool = False):
        """x (B, T, dim) -> (B, T, dim); with output_final_state, also the (B, H, K, V) state."""
        B, T, _ = x.shape
        q, k, v, g, beta, gate = self.features(x, visible)
        o, state = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=initial_state,
                                          output_final_state=output_final_state,
                                          chunk_size=self.spec.chunk_size)
        o = self.o_proj((self.o_norm(o) * F.silu(gate)).reshape(B, T, self.value_dim))
        return (o, state) if output_final_state else o

    def extra_repr(self) -> str:
        return (f"heads={self.num_heads}, head_k_dim={self.head_k_dim}, head_v_dim={self.head_v_dim}, "
                f"conv={self.spec.conv_size}, chunk={self.spec.chunk_size}")
