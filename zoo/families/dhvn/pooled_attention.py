"""Global attention at linear cost: keys/values average-pooled to a fixed small grid.

Every query attends over the whole image summarised on a `kv_pool` x `kv_pool` grid (the
spatial-reduction attention of PVT-v2's linear variant), so each position sees every other
one at cost O(N * kv_pool^2) instead of O(N^2). Grids no larger than `kv_pool` are not pooled
at all: there the attention is exact full self-attention.

DHVN's original "global" branch was 4x4 window attention, which never mixes distant windows;
`TransformerBranch` here is global in every layer.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp, SwiGLU
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...specs import AttentionSpec, MlpSpec

__all__ = ["PooledAttention", "PooledTransformerLayer", "TransformerBranch"]

# Routed blocks see a different sub-batch size on almost every call. cuDNN attention builds a
# graph per new shape (~1 ms each on an H100), which made a randomly routed dhvn_base 2.3x
# slower than dense; the flash / memory-efficient kernels run any shape at once and are as
# fast here. CUDA only: on CPU torch's own choice stands.
_CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _num_heads(dim: int, spec: AttentionSpec) -> int:
    heads = spec.num_heads or max(1, dim // (spec.head_dim or 32))
    if dim % heads:
        raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
    return heads


class PooledAttention(nn.Module):
    """Multi-head attention of (B, N, C) tokens on an H x W grid against pooled keys/values."""

    def __init__(self, dim: int, num_heads: int, kv_pool: Optional[int] = 7, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kv_pool = kv_pool
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        # pooled tokens are averages of normalised tokens, with a smaller spread: renormalise
        # them (as PVT-v2 does). Applied at every size so the layer is one function throughout.
        self.kv_norm = nn.LayerNorm(dim)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def flops(self, hw: Tuple[int, int]) -> int:
        """FLOPs per sample on an H x W grid: projections, QK^T and AV against the pooled grid."""
        H, W = hw
        N, C, p = H * W, self.q.in_features, self.kv_pool
        P = min(H, p) * min(W, p) if p is not None and (H > p or W > p) else N
        return 2 * N * C * C * 2 + 2 * P * C * 2 * C + 4 * N * P * C

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        H, W = hw
        kv_in = x
        p = self.kv_pool
        if p is not None and (H > p or W > p):
            grid = x.transpose(1, 2).reshape(B, C, H, W)
            kv_in = F.adaptive_avg_pool2d(grid, (min(H, p), min(W, p))).flatten(2).transpose(1, 2)
        q = self.q(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(self.kv_norm(kv_in)).view(B, -1, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        if q.is_cuda:
            with sdpa_kernel(_CUDA_BACKENDS):
                out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class PooledTransformerLayer(nn.Module):
    """Pre-norm layer: x + attn(LN(x)); x + mlp(LN(x))."""

    def __init__(self, dim: int, attn: AttentionSpec, mlp: MlpSpec):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = PooledAttention(dim, _num_heads(dim, attn), attn.kv_pool, attn.qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = nn.Identity()  # DHVN sets timm's DropPath here (drop_path_rate)
        hidden = mlp.hidden or int(dim * mlp.ratio)
        if mlp.act == "gelu":
            self.mlp = Mlp(dim, hidden)
        elif mlp.act == "swiglu":
            self.mlp = SwiGLU(dim, hidden)
        else:
            raise ValueError(f"mlp act must be 'gelu' or 'swiglu', got {mlp.act!r}")

    def flops(self, hw: Tuple[int, int]) -> int:
        n = hw[0] * hw[1]
        mlp = sum(2 * n * m.in_features * m.out_features for m in self.mlp.modules() if isinstance(m, nn.Linear))
        return self.attn.flops(hw) + mlp

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerBranch(nn.Module):
    """(B, Cin, H, W) -> (B, Cout, H/s, W/s): patchify, depthwise-conv position encoding, layers.

    stride 2 patchifies with a 2x2 stride-2 conv; stride 1 uses a 1x1 projection only when the
    width changes. The position encoding is a residual 3x3 depthwise conv (conditional position
    encoding), which works at any input size, unlike a learned table.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, depth: int,
                 attn: AttentionSpec = AttentionSpec(head_dim=16, kv_pool=7),
                 mlp: MlpSpec = MlpSpec(ratio=2.0)):
        super().__init__()
        if stride > 1:
            self.patchify = nn.Conv2d(in_chs, out_chs, stride, stride)
        elif in_chs != out_chs:
            self.patchify = nn.Conv2d(in_chs, out_chs, 1)
        else:
            self.patchify = nn.Identity()
        self.pos = nn.Conv2d(out_chs, out_chs, 3, padding=1, groups=out_chs)
        self.layers = nn.ModuleList([PooledTransformerLayer(out_chs, attn, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(out_chs)

    def flops(self, hw: Tuple[int, int]) -> int:
        """FLOPs per sample at input size hw (convolutions and linears, 2 x MACs)."""
        if isinstance(self.patchify, nn.Conv2d):
            s = self.patchify.stride[0]
            hw = (hw[0] // s, hw[1] // s)
            patchify = 2 * hw[0] * hw[1] * self.patchify.in_channels * s * s * self.patchify.out_channels
        else:
            patchify = 0
        pos = 2 * hw[0] * hw[1] * 9 * self.pos.out_channels
        return patchify + pos + sum(layer.flops(hw) for layer in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patchify(x)
        x = x + self.pos(x)
        B, C, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            t = layer(t, (H, W))
        return self.norm(t).transpose(1, 2).reshape(B, C, H, W)
