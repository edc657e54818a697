"""DHVN: Dynamic Hybrid Vision Network, one Conv / Transformer / Both choice per sample per block.

A U-Net used as a classifier (seed 000). A 3x3 stem, then encoder hybrid blocks that halve the
resolution each, then decoder stages (upsample 2x, concat the encoder skip, 1x1 merge, hybrid
block at stride 1) back to the first encoder resolution (stride 2), mean pool, linear head.

Each hybrid block has one per-sample Router over ("conv", "transformer", "both"), fed the
globally pooled block input:
  * conv:        two depthwise-separable residual blocks (`zoo.families.dhvn.conv_branch`);
  * transformer: 2x2 patchify (down blocks) + pre-norm layers whose attention is *global*:
                 keys/values are average-pooled to a 7x7 grid (`zoo.families.dhvn.pooled_attention`),
                 so every position sees the whole image at linear cost. (The seed's branch was
                 4x4 window attention only.)
  * both:        a * conv + (1 - a) * trans, a = 0.1 + 0.8 * sigmoid(p) per channel.
Every choice then ends in the block's one output: norm(ReLU(pre-activation)), the seed's fusion,
with conv and transformer as the cases a = 1 and a = 0. The next block sees one output space
whatever a sample took; with each choice emitting its own branch's output it saw three, and
routed nano settled on whole-block choices and lost accuracy (docs/DESIGN.md, "Measured architecture choices").

Norms are BatchNorm (`ConvBranchSpec.norm`; "group" and "layer" stay available). At eval BN
uses its running statistics, so a sample's output still never depends on its batch mates and
sparse execution equals dense; in training dense execution runs every branch on the whole
batch, so each branch's statistics cover every sample. (GroupNorm before the mean-pooled head
left little for the head to read: per group the normalised channels average to a constant.)

Routing is hard straight-through with the compute-aware objective (`RouterSpec.compute_target`): "both"
is a strict superset of the other two, so without a charge for compute it always wins, and a
balance loss would pin every choice at 1/3.

Dense execution (training default) runs both branches for every sample and mixes the choices'
pre-activations with the straight-through weights, so every branch and the gate get a gradient.
Sparse execution (eval default) runs the conv branch only on samples that chose conv or both,
the transformer branch only on transformer or both, gathered with index_select and written
back with index_copy; an empty group runs nothing.

`policy` makes a static model with no routers: "both" is the traditional always-both hybrid;
"conv" / "transformer" build that branch alone; a tuple gives each hybrid block its own fixed
choice (encoder blocks first, then decoder blocks, the order of `hybrid_blocks()`): a static
per-layer plan, the fixed architecture a user would pick instead of routing (docs/DESIGN.md,
"Static plans").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import DropPath

from ...layers.base import VisionSpec, ZooVisionModel, drop_path_rates, init_linear, take_indices
from ...layers.objectives import BUDGET, GATE_ENTROPY, LOAD_BALANCE
from ...registry import build_model, register_model
from ...specs import AttentionSpec, ConvBranchSpec, MlpSpec, RouterSpec
from .conv_branch import ConvNormAct, DepthwiseSeparableBlock
from .hybrid_block import CHOICES, DecoderStage, HybridBlock
from .pooled_attention import PooledTransformerLayer

__all__ = ["DHVN", "DHVNSpec", "HybridBlock", "DecoderStage", "CHOICES"]


@dataclass(frozen=True)
class DHVNSpec(VisionSpec):
    """The number of stages is len(widths): stride 2**len(widths), features at stride 2."""
    stem_width: int = 64
    widths: Tuple[int, ...] = (128, 256, 512)   # encoder block outputs, each at half resolution
    depths: Tuple[int, ...] = (4, 6, 9)         # transformer layers per encoder block
    decoder_depth: int = 2                       # transformer layers per decoder block
    conv: ConvBranchSpec = ConvBranchSpec(norm="batch")
    attn: AttentionSpec = AttentionSpec(head_dim=16, kv_pool=7)
    mlp: MlpSpec = MlpSpec(ratio=2.0)
    router: RouterSpec = RouterSpec(mode="hard", compute_target=0.5, explore=0.1)
    # None: routed; "conv" / "transformer" / "both": every block static on that choice; a tuple:
    # one fixed choice per hybrid block (encoder, then decoder), a static per-layer plan
    policy: Optional[Union[str, Tuple[str, ...]]] = None

    def __post_init__(self):
        super().__post_init__()
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(f"widths and depths need one entry per stage, got {self.widths} and {self.depths}")
        if isinstance(self.policy, (tuple, list)):
            object.__setattr__(self, "policy", tuple(self.policy))
            blocks = 2 * len(self.widths) - 1
            if len(self.policy) != blocks or any(p not in CHOICES for p in self.policy):
                raise ValueError(f"a per-block policy needs {blocks} choices from {CHOICES} (encoder blocks, "
                                 f"then decoder blocks), got {self.policy!r}")
        elif self.policy is not None and self.policy not in CHOICES:
            raise ValueError(f"policy must be None, one of {CHOICES} or a tuple of them, got {self.policy!r}")
        stride = 2 ** len(self.widths)
        if self.img_size % stride:
            # the skips line up only if every encoder halving is exact (forward refuses such images)
            raise ValueError(f"img_size {self.img_size} must be divisible by the model's stride {stride}")

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def block_policy(self, index: int) -> Optional[str]:
        """The fixed choice of hybrid block `index` (encoder blocks, then decoder), None if routed."""
        return self.policy[index] if isinstance(self.policy, tuple) else self.policy


class DHVN(ZooVisionModel):
    family = "dhvn"
    objectives = (GATE_ENTROPY, LOAD_BALANCE, BUDGET)
    first_conv = "stem.0"
    feature_stride = 2   # forward_features ends at the first encoder block's resolution

    def __init__(self, spec: DHVNSpec):
        super().__init__(spec)
        # inputs must survive len(widths) halvings exactly for the skips to line up
        self.stride = 2 ** spec.num_stages
        self.stem = ConvNormAct(spec.in_chans, spec.stem_width, 3, spec.conv.norm, spec.conv.groups)
        chs = (spec.stem_width,) + tuple(spec.widths)
        size = [(spec.img_size >> i,) * 2 for i in range(spec.num_stages + 1)]  # encoder.i input
        self.encoder = nn.ModuleList([
            HybridBlock(chs[i], chs[i + 1], 2, spec.depths[i], spec, f"encoder.{i}", size[i], spec.block_policy(i))
            for i in range(spec.num_stages)])
        # decoder.j climbs from the bottleneck towards widths[0]
        self.decoder = nn.ModuleList([
            DecoderStage(spec.widths[i + 1], spec.widths[i], spec.widths[i], spec.decoder_depth,
                         spec, f"decoder.{j}", size[i + 1], spec.block_policy(spec.num_stages + j))
            for j, i in enumerate(reversed(range(spec.num_stages - 1)))])
        # the full-resolution stem, then each encoder stage (a U-Net's levels)
        self.feature_info = [dict(num_chs=spec.stem_width, reduction=1, module="stem")] + [
            dict(num_chs=w, reduction=2 ** (i + 1), module=f"encoder.{i}") for i, w in enumerate(spec.widths)]
        self._build_head(spec.widths[0])
        self._init_weights()
        # stochastic depth: one rate per hybrid block (encoder, then decoder), rising linearly;
        # every residual layer of both branches of a block drops at its block's rate
        hybrids = self.hybrid_blocks()
        for rate, block in zip(drop_path_rates(spec.drop_path_rate, len(hybrids)), hybrids):
            for m in block.modules() if rate > 0 else ():
                if isinstance(m, (DepthwiseSeparableBlock, PooledTransformerLayer)):
                    m.drop_path = DropPath(rate)

    @classmethod
    def routing_of(cls, spec: DHVNSpec) -> str:
        return "static" if spec.policy is not None else "sample"

    def pool_size(self) -> Optional[tuple]:
        s = self.spec.img_size // self.feature_stride
        return (s, s)

    def hybrid_blocks(self) -> List[HybridBlock]:
        return [m for m in self.modules() if isinstance(m, HybridBlock)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._intermediates(x)[1]

    def _intermediates(self, x: torch.Tensor):
        self.check_input(x)
        # channels-last end to end: the transformer branches' (B, N, C) tokens are then views of
        # the feature maps both ways (no transpose copies), and GN / depthwise convs keep NHWC
        # (the stem's output is converted too: with in_chans=1 an NCHW input already counts as
        # channels-last, so the stem conv kept NCHW and the whole network ran in NCHW)
        cl = torch.channels_last
        x = self.stem(x.contiguous(memory_format=cl)).contiguous(memory_format=cl)
        stem, skips = x, []
        for block in self.encoder:
            x = self.run_block(block, x)
            skips.append(x)
        stages = [stem] + skips  # the backbone's levels
        if skips:  # (none after pruning to the stem level)
            skips.pop()  # the bottleneck output is x itself
        for stage in self.decoder:
            x = self.run_block(stage, x, skips.pop())
        return stages, x

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """timm's backbone pruning: keep the levels up to the deepest one `indices` takes (0 the
        stem, i encoder.{i-1}). The decoder, which only the classifier reads, goes with the
        later encoder blocks and the head, so a features_only model holds no parameter its
        features do not use. forward_features then ends at the deepest kept level. prune_norm:
        accepted for timm's signature (DHVN has no final norm). Returns the kept indices."""
        take = take_indices(len(self.feature_info), indices)
        keep = max(take)
        self.encoder = self.encoder[:keep]
        self.decoder = nn.ModuleList()
        self.num_features = self.head_hidden_size = self.feature_info[keep]["num_chs"]
        self.feature_stride = self.feature_info[keep]["reduction"]
        self.reset_classifier(0, "")  # the head was sized for the decoder's output, which is gone
        return take

    def _init_weights(self) -> None:
        # routers keep their own (zero) init: a fresh gate is uniform over the three choices
        for m in self.non_router_modules():
            if isinstance(m, nn.Linear):
                init_linear(m)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def _nano(**kw) -> DHVNSpec:
    return DHVNSpec(stem_width=16, widths=(32, 64), depths=(1, 2), decoder_depth=1, **kw)


def _tiny(**kw) -> DHVNSpec:
    return DHVNSpec(stem_width=32, widths=(64, 128, 256), depths=(2, 4, 6), decoder_depth=2, **kw)


def _small(**kw) -> DHVNSpec:
    return DHVNSpec(stem_width=48, widths=(96, 192, 384), depths=(3, 5, 7), decoder_depth=2, **kw)


# The original's widths with encoder depths 4,6,8 come to 23.8M here (our decoder fuses the skip
# with a 1x1 conv instead of running its hybrid block on the concatenation). One more bottleneck
# layer, where a layer is cheapest (28x28 at 224), lands at 25.9M: +1.3% of the original 25.6M.
def _base(**kw) -> DHVNSpec:
    return DHVNSpec(stem_width=64, widths=(128, 256, 512), depths=(4, 6, 9), decoder_depth=2, **kw)


@register_model(static_form="dhvn_nano_static", static_plans=("dhvn_nano_ccc", "dhvn_nano_cbc", "dhvn_nano_static"))
def dhvn_nano(pretrained=False, **kwargs):
    return build_model(DHVN, _nano(), pretrained, **kwargs)


@register_model
def dhvn_nano_static(pretrained=False, **kwargs):
    """The full static plan: every block on "both" (the traditional always-both hybrid)."""
    return build_model(DHVN, _nano(policy="both"), pretrained, **kwargs)


# Static per-layer plans of dhvn_nano (blocks encoder.0, encoder.1, decoder.0; c = conv, b = both).
# ccc is the cheapest; cbc is the plan of the routed model's majority choices on mnist5k
# (encoder.0 conv 100 %, encoder.1 both 70 %, decoder.0 conv 96 %, the committed records).
@register_model
def dhvn_nano_ccc(pretrained=False, **kwargs):
    return build_model(DHVN, _nano(policy=("conv", "conv", "conv")), pretrained, **kwargs)


@register_model
def dhvn_nano_cbc(pretrained=False, **kwargs):
    return build_model(DHVN, _nano(policy=("conv", "both", "conv")), pretrained, **kwargs)


@register_model(static_form="dhvn_tiny_static")
def dhvn_tiny(pretrained=False, **kwargs):
    return build_model(DHVN, _tiny(), pretrained, **kwargs)


@register_model
def dhvn_tiny_static(pretrained=False, **kwargs):
    return build_model(DHVN, _tiny(policy="both"), pretrained, **kwargs)


@register_model(static_form="dhvn_small_static")
def dhvn_small(pretrained=False, **kwargs):
    return build_model(DHVN, _small(), pretrained, **kwargs)


@register_model
def dhvn_small_static(pretrained=False, **kwargs):
    return build_model(DHVN, _small(policy="both"), pretrained, **kwargs)


@register_model(static_form="dhvn_base_static")
def dhvn_base(pretrained=False, **kwargs):
    return build_model(DHVN, _base(), pretrained, **kwargs)


@register_model
def dhvn_base_static(pretrained=False, **kwargs):
    return build_model(DHVN, _base(policy="both"), pretrained, **kwargs)
