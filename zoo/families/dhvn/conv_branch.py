"""DHVN's conv branch: depthwise-separable residual blocks (3x3 dw, norm, ReLU, 1x1, norm).

The norm is BatchNorm by default (`ConvBranchSpec.norm`): at eval it is a per-channel affine
map from running statistics, so a sample's output never depends on its batch mates, which
per-sample routing needs (a gathered sub-batch must give the same result as the full one).
GroupNorm ("group") and per-pixel LayerNorm ("layer") keep that property in training too, but
trained clearly worse on mnist5k under the same recipe (docs/DESIGN.md, "Measured architecture choices").

Being an affine map at eval, a BatchNorm right after a conv folds into that conv's weights and
bias. `reparameterize()` does it in place, in timm's convention (RepVGG, MobileOne), and
`zoo.reparameterize_model(model)` calls it on every block; a folded block is for inference only.

In training a fixed-capacity route runs the branch on the whole batch, some of whose samples
do not use it (`HybridBlock`'s static path): `keep` then names the samples whose statistics a
training BatchNorm takes (`norm_over`), the batch sparse execution would have given it.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ...specs import ConvBranchSpec

__all__ = ["group_norm", "fold_norm", "norm_over", "PointwiseConv2d", "ConvNormAct", "DepthwiseSeparableBlock",
           "ConvBranch"]


# a property of the torch build; `torch.backends.mkldnn.enabled` is a switch a user may flip at any time
_ONEDNN_BUILT = torch.backends.mkldnn.is_available()


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 conv that at CPU fp32 inference calls oneDNN's conv kernel itself.

    torch's dispatcher sends a 1x1 conv with batch < 16 at 1 thread to its native kernel
    ("THNN is faster when single-threaded"). For the channels-last maps here it is not: at
    8 x 64 x 112² oneDNN is 2.8x faster, 1.9-2.8x over the shapes measured, with outputs equal to
    fp32 rounding (`experiments/archive/issue12_pointwise_conv.py`). Everywhere else the two paths are
    the same kernel. With a graph to record it stays an nn.Conv2d call, whose backward torch knows."""

    def __init__(self, in_chs: int, out_chs: int, bias: bool = False):
        super().__init__(in_chs, out_chs, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not torch.is_grad_enabled() and _ONEDNN_BUILT and torch.backends.mkldnn.enabled
                and not torch.compiler.is_compiling()):  # a traced graph chooses its own conv kernel
            return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride,
                                            self.dilation, self.groups)
        return super().forward(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= `groups` that divides `channels`."""
    return nn.GroupNorm(math.gcd(channels, groups), channels)


def conv_norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    if kind == "group":
        return group_norm(channels, groups)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        from timm.layers import LayerNorm2d
        return LayerNorm2d(channels)
    raise ValueError(f"conv norm must be 'group', 'batch' or 'layer', got {kind!r}")


def norm_over(norm: nn.Module, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """norm(x); a BatchNorm in training with `keep` ((B,) 0/1 per sample) normalises every sample
    by the statistics of the kept samples alone, and moves its running statistics by them: what
    it computes on the kept samples as a batch of their own (the other samples' outputs are
    meant to be dropped). Any other norm is per sample, and `keep` changes nothing."""
    if keep is None or not (isinstance(norm, nn.BatchNorm2d) and norm.training):
        return norm(x)
    w = keep.to(x.dtype).view(-1, 1, 1, 1)
    count = keep.to(x.dtype).sum() * (x.shape[2] * x.shape[3])
    mean = (x * w).sum(dim=(0, 2, 3)) / count
    centred = x - mean.view(1, -1, 1, 1)
    var = (centred.square() * w).sum(dim=(0, 2, 3)) / count   # biased, as BatchNorm normalises
    if norm.track_running_stats:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            m = norm.momentum if norm.momentum is not None else 1.0 / norm.num_batches_tracked
            norm.running_mean.mul_(1 - m).add_(m * mean.detach())
            norm.running_var.mul_(1 - m).add_(m * var.detach() * count / (count - 1))  # unbiased, as BatchNorm
    y = centred * torch.rsqrt(var + norm.eps).view(1, -1, 1, 1)
    return y * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1) if norm.affine else y


def fold_norm(conv: nn.Conv2d, norm: nn.Module) -> Tuple[nn.Module, nn.Module]:
    """(conv, norm) with an eval BatchNorm folded into the conv (which gains a bias) and replaced
    by Identity; any other norm depends on its input and is returned as it was."""
    if not isinstance(norm, nn.BatchNorm2d):
        return conv, norm
    if conv.training or norm.training:
        # folding freezes the running statistics; a training BN would go on updating them
        raise RuntimeError("reparameterize folds BatchNorm's running statistics into the conv and is for "
                           "inference: call model.eval() first")
    return fuse_conv_bn_eval(conv, norm), nn.Identity()


class ConvNormAct(nn.Sequential):
    """conv, norm, activation (keys 0, 1, 2, as the nn.Sequential it replaces)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, norm: str, groups: int = 8):
        conv = PointwiseConv2d(in_chs, out_chs) if kernel_size == 1 else \
            nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False)
        super().__init__(conv, conv_norm(norm, out_chs, groups), nn.ReLU(inplace=True))

    def reparameterize(self) -> None:
        self[0], self[1] = fold_norm(self[0], self[1])


class DepthwiseSeparableBlock(nn.Module):
    """x -> ReLU(GN(pw(ReLU(GN(dw(x))))) + shortcut(x)); the dw conv carries the stride."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, kernel_size: int = 3,
                 groups: int = 8, norm: str = "group"):
        super().__init__()
        self.dw = nn.Conv2d(in_chs, in_chs, kernel_size, stride, kernel_size // 2, groups=in_chs,
                            bias=False)
        self.norm1 = conv_norm(norm, in_chs, groups)
        self.act = nn.ReLU(inplace=True)
        self.pw = PointwiseConv2d(in_chs, out_chs)
        self.norm2 = conv_norm(norm, out_chs, groups)
        self.drop_path = nn.Identity()  # DHVN sets timm's DropPath here (drop_path_rate)
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Identity()
        else:
            # average-pool before the projection so the shortcut sees every pixel, not every s-th
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                PointwiseConv2d(in_chs, out_chs),
                conv_norm(norm, out_chs, groups),
            )

    def flops(self, hw: Tuple[int, int]) -> Tuple[int, Tuple[int, int]]:
        """(FLOPs per sample, output size) at input size hw: the convolutions' 2 x MACs."""
        k, s = self.dw.kernel_size[0], self.dw.stride[0]
        h, w = (hw[0] + 2 * (k // 2) - k) // s + 1, (hw[1] + 2 * (k // 2) - k) // s + 1
        cin, cout = self.dw.in_channels, self.pw.out_channels
        total = 2 * h * w * (k * k * cin + cin * cout)
        if not isinstance(self.shortcut, nn.Identity):
            total += 2 * h * w * cin * cout
        return total, (h, w)

    def reparameterize(self) -> None:
        """Fold each BatchNorm into the conv before it (inference only; see the module docstring)."""
        self.dw, self.norm1 = fold_norm(self.dw, self.norm1)
        self.pw, self.norm2 = fold_norm(self.pw, self.norm2)
        if not isinstance(self.shortcut, nn.Identity):
            self.shortcut[1], self.shortcut[2] = fold_norm(self.shortcut[1], self.shortcut[2])

    def forward(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """keep: the samples whose statistics a training BatchNorm takes (`norm_over`)."""
        y = self.act(norm_over(self.norm1, self.dw(x), keep))
        y = norm_over(self.norm2, self.pw(y), keep)
        if keep is None or isinstance(self.shortcut, nn.Identity):
            short = self.shortcut(x)
        else:
            pool, proj, norm = self.shortcut
            short = norm_over(norm, proj(pool(x)), keep)
        return self.act(self.drop_path(y) + short)


class ConvBranch(nn.Sequential):
    """`spec.num_blocks` depthwise-separable blocks; the first changes width and stride."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1,
                 spec: ConvBranchSpec = ConvBranchSpec()):
        if spec.num_blocks < 1:
            raise ValueError(f"conv branch needs num_blocks >= 1, got {spec.num_blocks}")
        blocks = [DepthwiseSeparableBlock(in_chs, out_chs, stride, spec.kernel_size, spec.groups, spec.norm)]
        blocks += [DepthwiseSeparableBlock(out_chs, out_chs, 1, spec.kernel_size, spec.groups, spec.norm)
                   for _ in range(spec.num_blocks - 1)]
        super().__init__(*blocks)

    def forward(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """keep: the samples whose statistics a training BatchNorm takes (`norm_over`)."""
        for block in self:
            x = block(x, keep)
        return x

    def flops(self, hw: Tuple[int, int]) -> int:
        """FLOPs per sample at input size hw."""
        total = 0
        for block in self:
            f, hw = block.flops(hw)
            total += f
        return total
