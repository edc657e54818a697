"""Swin-style 2x2 patch merging between hierarchical stages (ESH-Vision)."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["PatchMerging"]


class PatchMerging(nn.Module):
    """Swin-style 2x2 merge: (B, h, w, C) -> (B, ceil(h/2), ceil(w/2), 2C); odd sides are zero-padded."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, h, w, C = x.shape
        x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))
