"""Pixel-entropy prior of ESH-Vision: how busy each patch of an image is.

For pixels in [0, 1]: grey = mean over channels, quantised to `bins` levels; each patch's
histogram gives a Shannon entropy, divided by log(bins) so it lies in [0, 1]. A constant
patch scores 0; a patch whose pixels spread evenly over all levels scores 1.

The prior must see raw pixels: the seed computed it on ImageNet-normalised inputs, which
shifts and stretches every histogram. Models undo their own normalisation first
(`unnormalize`), then call `patch_entropy`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["unnormalize", "patch_entropy", "patch_entropy_reference", "pool_entropy"]


def unnormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x * std + mean), clamped to [0, 1]: back to pixel values before quantising."""
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * std_t + mean_t).clamp(0.0, 1.0)


def _quantise(pixels: torch.Tensor, bins: int) -> torch.Tensor:
    grey = pixels.float().mean(dim=1)
    return (grey * bins).floor().clamp(0, bins - 1).long()


def patch_entropy(pixels: torch.Tensor, patch_size: int, bins: int = 32) -> torch.Tensor:
    """(B, C, H, W) pixels in [0, 1] -> (B, H // p, W // p) normalised entropy in [0, 1].

    One bincount over (patch, level) pairs: memory O(B * patches * bins), not O(pixels * bins).
    """
    if pixels.dim() != 4:
        raise ValueError(f"patch_entropy expects (B, C, H, W) pixels, got shape {tuple(pixels.shape)}")
    B, _, H, W = pixels.shape
    p = int(patch_size)
    if H % p or W % p:
        raise ValueError(f"patch_entropy needs sides divisible by patch_size={p}, got {H}x{W}")
    h, w = H // p, W // p
    q = _quantise(pixels, bins)                                              # (B, H, W)
    patch_id = (torch.arange(h, device=q.device).repeat_interleave(p).view(h * p, 1) * w
                + torch.arange(w, device=q.device).repeat_interleave(p).view(1, w * p))
    image_id = torch.arange(B, device=q.device).view(B, 1, 1) * (h * w)
    key = ((image_id + patch_id) * bins + q).reshape(-1)
    n = B * h * w * bins
    if torch.compiler.is_compiling():
        # bincount's length depends on the data (its largest key), so a traced graph would break
        # there; every key is below n, and a scatter-add of ones gives the same exact counts
        counts = torch.zeros(n, device=q.device).index_add_(0, key, torch.ones(key.shape, device=q.device))
    else:
        counts = torch.bincount(key, minlength=n).float()
    counts = counts.view(B, h, w, bins)
    prob = counts / float(p * p)
    ent = -(prob * torch.log(prob.clamp_min(1e-12))).sum(-1)
    return (ent / math.log(bins)).clamp(0.0, 1.0)


def patch_entropy_reference(pixels: torch.Tensor, patch_size: int, bins: int = 32) -> torch.Tensor:
    """Patch-by-patch loop: the definition in code, for tests."""
    B, _, H, W = pixels.shape
    p = int(patch_size)
    q = _quantise(pixels, bins)
    out = torch.zeros(B, H // p, W // p)
    for b in range(B):
        for i in range(H // p):
            for j in range(W // p):
                hist = torch.bincount(q[b, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(-1), minlength=bins)
                prob = hist[hist > 0].float() / hist.sum()
                out[b, i, j] = float(-(prob * prob.log()).sum()) / math.log(bins)
    return out


def pool_entropy(ent: torch.Tensor) -> torch.Tensor:
    """(B, h, w) -> (B, ceil(h/2), ceil(w/2)): the 2x2 average matching a patch merge.

    An odd side is padded like the merge pads it, but padding does not count towards the
    mean (ceil_mode averages only the real patches of an edge window).
    """
    return F.avg_pool2d(ent.unsqueeze(1), kernel_size=2, stride=2, ceil_mode=True).squeeze(1)
