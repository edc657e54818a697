"""The patch embedding of a ViT-style model: one patch conv, or a stem of strided 3x3 convs."""
from __future__ import annotations

import torch.nn as nn
from timm.layers import LayerNorm2d

__all__ = ["patch_stem"]


def patch_stem(in_chans: int, dim: int, patch_size: int, kind: str = "patch") -> nn.Sequential:
    """(B, in_chans, H, W) -> (B, dim, H / patch_size, W / patch_size).

    kind "patch": one patch_size x patch_size conv of stride patch_size (the ViT embedding).
    kind "conv": log2(patch_size) 3x3 stride-2 convs, LayerNorm2d + GELU between, widths doubling
    up to dim; early convolutions make small ViT-style models train much faster (Xiao et al., 2021).
    """
    if kind == "patch":
        return nn.Sequential(nn.Conv2d(in_chans, dim, patch_size, stride=patch_size))
    n = patch_size.bit_length() - 1
    widths = [in_chans] + [max(dim >> (n - 1 - i), 8) for i in range(n - 1)] + [dim]
    layers = []
    for i in range(n):
        # replicate padding: zero padding is a bright frame around a normalised image (MNIST's
        # background is -0.42), which told every later layer where the border was; the routers
        # then routed border patches by position, not content (the alpha-map artefact)
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1, bias=i == n - 1,
                                padding_mode="replicate"))
        if i < n - 1:
            # a per-sample norm: train and eval run the same network (no batch statistics)
            layers += [LayerNorm2d(widths[i + 1]), nn.GELU()]
    return nn.Sequential(*layers)
