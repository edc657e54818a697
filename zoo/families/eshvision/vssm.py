"""Bidirectional vision state-space mixer (Mamba-1 selective scan over the patch sequence).

    x, z = in_proj(n)                       (expand: d_inner = expand * dim)
    per scan direction: u = SiLU(causal depthwise conv(x)); dt, B, C = x_proj(u)
                        delta = softplus(dt_proj(dt)); y_d = selective_scan(u, delta, A, B, C, D)
    y = mean over directions;  out = out_proj(y * SiLU(z))

Directions are orders of the patch grid: row-major forward and reverse (directions=2), plus
column-major forward and reverse (directions=4). All directions share one set of weights, as
in the seed (its parameter counts, 19.9M / 153M / 545M, are those of shared weights), and are
scanned together as one batch of sequences. SSMSpec.kind="ssd" swaps the per-channel decay
for one decay per head (Mamba-2), which runs as a chunked matmul scan (`ssd_scan`).

The module is split in two on purpose, for routed execution: `scan` runs over every patch
(the recurrence needs the whole sequence; its cost is linear in the patch count, yet at every
router of eshvision_xs and eshvision_s it costs more per patch than attention: 29.2 k against
14.5 k FLOPs at eshvision_xs stage 0), while `gate`
(the z half of in_proj, the gating and out_proj) can run on just the patches that use it.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...ops.selective_scan import selective_scan, ssd_scan
from ...specs import SSMSpec

__all__ = ["BidirectionalVSSM"]


def _to_order(x: torch.Tensor, direction: int) -> torch.Tensor:
    """(B, h, w, C) grid -> (B, L, C) sequence in scan `direction`'s order."""
    B, h, w, C = x.shape
    seq = x.reshape(B, h * w, C) if direction < 2 else x.transpose(1, 2).reshape(B, h * w, C)
    return seq.flip(1) if direction % 2 else seq


def _from_order(seq: torch.Tensor, direction: int, hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of `_to_order`, back to row-major (B, L, C)."""
    h, w = hw
    if direction % 2:
        seq = seq.flip(1)
    if direction >= 2:
        B, L, C = seq.shape
        # reshape, not view: eager's flip is contiguous, but inductor may lower it to a strided view
        seq = seq.reshape(B, w, h, C).transpose(1, 2).reshape(B, L, C)
    return seq


class _SelectiveScan(nn.Module):
    """conv -> SiLU -> (dt, B, C) -> scan. kind="mamba1": a decay per channel and state entry;
    kind="ssd": one decay per head of `head_dim` channels (Mamba-2's chunked matmul form)."""

    def __init__(self, d_inner: int, d_state: int, d_conv: int, dt_rank: int, kind: str = "mamba1",
                 head_dim: int = 32):
        super().__init__()
        if kind == "ssd" and d_inner % head_dim:
            raise ValueError(f"SSMSpec.kind='ssd' needs d_inner {d_inner} divisible by head_dim {head_dim}")
        self.kind, self.d_state, self.dt_rank = kind, d_state, dt_rank
        n_decay = d_inner // head_dim if kind == "ssd" else d_inner
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, n_decay, bias=True)
        self.A_log = nn.Parameter(torch.zeros(n_decay, d_state) if kind == "mamba1" else torch.zeros(n_decay))
        self.D = nn.Parameter(torch.ones(d_inner))

    @torch.no_grad()
    def init_weights(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """Mamba's init: A = -(1..d_state) per channel (ssd: heads spread over -1..-16), D = 1,
        softplus(dt bias) log-uniform in [dt_min, dt_max]."""
        n_decay = self.dt_proj.out_features
        device = self.A_log.device
        if self.kind == "mamba1":
            a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device).expand(n_decay, -1)
        else:
            a = torch.linspace(1, 16, n_decay, device=device)
        self.A_log.copy_(a.log())
        self.D.fill_(1.0)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        u = torch.rand(n_decay, device=self.dt_proj.bias.device)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp_min(1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d_inner) sequences, each in its scan order -> y (B, L, d_inner), D skip included."""
        L = x.shape[1]
        # SiLU on the conv's contiguous output, then the causal slice: on the sliced, transposed
        # view it ran strided, 1.7-2.6x slower than the conv itself at ESH's small shapes
        c = self.conv1d(x.transpose(1, 2))
        u = F.silu(c, inplace=not c.requires_grad)[..., :L].transpose(1, 2)  # causal along the order
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        scan = selective_scan if self.kind == "mamba1" else ssd_scan
        return scan(u, delta, A, B, C, self.D)


class BidirectionalVSSM(nn.Module):
    def __init__(self, dim: int, spec: SSMSpec = SSMSpec()):
        super().__init__()
        if spec.kind not in ("mamba1", "ssd"):
            raise ValueError(f"SSMSpec.kind must be 'mamba1' or 'ssd', got {spec.kind!r}")
        if spec.directions not in (2, 4):
            raise ValueError(f"SSMSpec.directions must be 2 or 4, got {spec.directions}")
        self.dim = dim
        self.d_inner = spec.expand * dim
        dt_rank = spec.dt_rank or math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * self.d_inner, bias=False)
        self.num_directions = spec.directions
        self.core = _SelectiveScan(self.d_inner, spec.d_state, spec.d_conv, dt_rank, spec.kind, spec.head_dim)
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)

    def init_weights(self) -> None:
        self.core.init_weights()

    def flops_per_patch(self, n: int) -> float:
        """Executed FLOPs per patch of the mixer over n patches: in_proj (both halves), and per
        scan direction the depthwise conv, x_proj, dt_proj and the scan; then out_proj."""
        from ...ops.selective_scan import selective_scan_flops, ssd_scan_flops
        core, di = self.core, self.d_inner
        N = core.d_state
        if core.kind == "mamba1":
            scan = selective_scan_flops(1, n, di, N)
        else:
            scan = ssd_scan_flops(1, n, di, N, core.dt_proj.out_features)
        k = core.conv1d.kernel_size[0]  # the causal conv pads both ends: n + k - 1 outputs, n kept
        per_direction = (2 * k * di * (n + k - 1) / n + 2 * di * core.x_proj.out_features
                         + 2 * core.dt_rank * core.dt_proj.out_features + scan / n)
        return 2 * self.dim * 2 * di + self.num_directions * per_direction + 2 * di * self.dim

    def scan(self, n: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """(B, N, dim) row-major patches -> y (B, N, d_inner): the recurrence over every patch."""
        B, N, _ = n.shape
        x = F.linear(n, self.in_proj.weight[:self.d_inner]).view(B, *hw, self.d_inner)
        seqs = torch.cat([_to_order(x, i) for i in range(self.num_directions)])
        ys = [_from_order(y, i, hw) for i, y in enumerate(self.core(seqs).chunk(self.num_directions))]
        if len(ys) == 2:  # the mean of two, without stacking them first (the same values)
            return torch.add(ys[0], ys[1]).div_(2)
        return torch.stack(ys).mean(0)

    def gate(self, y: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """y (..., d_inner), n (..., dim) of the same patches -> out_proj(y * SiLU(z))."""
        z = F.linear(n, self.in_proj.weight[self.d_inner:])
        return self.out_proj(y * F.silu(z))

    def forward(self, n: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        return self.gate(self.scan(n, hw), n)
