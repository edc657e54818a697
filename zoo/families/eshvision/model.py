"""ESH-Vision: per-patch routing between a bidirectional SSM and global attention, with ACT.

Seed 001, rebuilt. Each stage starts with a residual 3x3 depthwise conv (conditional position
encoding, `pos_conv`); each hybrid block:

    n = LN(x);  alpha = sigmoid(router([n; H]))          H: pixel-entropy prior of the patch
    a = MHSA(n);  s = VSSM(n)                            (branch_norm=True: the seed's LN(. + n))
    hard (default): out = x + [alpha > 0.5] a + [alpha <= 0.5] s   (straight-through on alpha)
    soft (seed):    out = x + alpha a + (1 - alpha) s
    out = out + FFN(LN(out));  then ACT: attention patches with alpha > 0.7 ponder

Deviations from the seed, each measured on mnist5k (docs/DESIGN.md, "Measured architecture choices"): pre-norm
branch updates instead of LN(branch(n) + n), which gives every block's update unit scale and
trained worse, more so with depth; the position conv; and, in the conv stem, replicate
padding. Zero padding put a bright frame around every normalised image (MNIST's background
is -0.42), so the first patch row and column differed from all others whatever the content,
and the routers learned to route them by position: the alpha-map artefact, in which column 0
went to the SSM and every blank patch elsewhere to attention, where it pondered.

Each router declares what each choice executes (`ESHBlock.choice_costs`, docs/DESIGN.md
"Declared costs"): attention alone costs less per patch than the SSM at every router of
eshvision_xs and eshvision_s (14.5 k against 29.2 k FLOPs at eshvision_xs stage 0, 49 patches).
Pondering, which only attention patches with alpha above the threshold do, is a cost of its own
(`ESHBlock.ponder_costs`), charged by the ponder objective; with `RouterSpec.compute_target` the budget
objective charges for the choices.

Sparse execution (eval default, hard mode) skips part of the work a patch did not choose (per
patch: queries, output projection, SSM gating; the rest runs per image):

* attention: queries and the output projection are computed only for attention
  patches (packed per image); keys and values come from every patch of the image, so an
  attention patch still sees the whole image.
* SSM: the scan runs over every patch of an image that has at least one SSM patch, because
  the recurrence needs the whole sequence: the x half of in_proj, the conv, x_proj, dt_proj
  and the scan itself. The z half of in_proj, the gating and out_proj run only for SSM
  patches. An attention patch receives nothing from the SSM at its own position; its pixels
  still feed the SSM state that the SSM patches after it read.
* images without any attention (or SSM) patch skip that branch altogether.
* router, FFN and the patch merges run for every patch.

ACT (same rule in training and at eval): a ponder step re-applies the block's attention path
and FFN (shared weights, no new parameters besides the halting unit) to the pondering patches
only, as queries over the current states of every patch of their image; images without
pondering patches are left out, and after the first step only the changed rows get new
keys/values. See `zoo.families.eshvision.act` for the halting rule and ponder cost.

Dense execution (training default) computes both branches for every patch and combines them
with the route weights; for the same weights it equals sparse execution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ...layers.base import VisionSpec, ZooVisionModel, drop_path_rates, init_linear
from ...layers.objectives import ALPHA_VARIANCE, BUDGET, PONDER
from ...ops.entropy import patch_entropy, pool_entropy, unnormalize
from ...registry import build_model, register_model
from ...specs import ACTSpec, AttentionSpec, MlpSpec, RouterSpec, SSMSpec
from .esh_block import ESHBlock
from .patch_merging import PatchMerging
from .patch_stem import patch_stem

__all__ = ["ESHVision", "ESHVisionSpec"]


@dataclass(frozen=True)
class ESHVisionSpec(VisionSpec):
    patch_size: int = 16
    embed_dim: int = 128
    depths: Tuple[int, ...] = (2, 3, 3)
    num_heads: Tuple[int, ...] = (2, 4, 4)
    entropy_bins: int = 32
    # "patch": the seed's single patch_size x patch_size conv. "conv": a convolutional stem of
    # log2(patch_size) 3x3 stride-2 convs (LayerNorm2d + GELU between), same output grid and width;
    # early convolutions make small ViT-style models train much faster (Xiao et al., 2021)
    stem: str = "patch"
    # a residual 3x3 depthwise conv at the start of each stage (conditional position encoding):
    # the blocks have no absolute positions otherwise, and it is the local prior a 4,000-image
    # training set needs
    pos_conv: bool = True
    # True: the seed's branch update LN(branch(n) + n); False: pre-norm, the branch output is
    # added to the residual as it is (the update no longer has unit scale in every block)
    branch_norm: bool = False
    # hidden=None: the seed's MLP router, max(dim / 4, 32) wide
    router: RouterSpec = RouterSpec(mode="hard", explore=0.1)
    attention: AttentionSpec = AttentionSpec(rel_pos_bias=True)
    ssm: SSMSpec = SSMSpec()
    mlp: MlpSpec = MlpSpec()
    act: ACTSpec = ACTSpec()
    # None: routed per patch; "ssm" / "attention": every block static on that branch, with no
    # router (a static per-layer plan, docs/DESIGN.md "Static plans"); an attention block lets
    # every patch ponder
    policy: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        if self.policy not in (None, "ssm", "attention"):
            raise ValueError(f"policy must be None, 'ssm' or 'attention', got {self.policy!r}")
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} need one entry per stage")
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim << i) % heads:
                raise ValueError(f"stage {i} dim {self.embed_dim << i} is not divisible by {heads} heads")
        if self.stem not in ("patch", "conv"):
            raise ValueError(f"stem must be 'patch' or 'conv', got {self.stem!r}")
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"stem='conv' needs a power-of-two patch_size >= 2, got {self.patch_size}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be divisible by patch_size {self.patch_size}")
        att = self.attention
        if att.rope or att.kv_pool or att.num_heads or att.head_dim or not att.rel_pos_bias:
            raise ValueError("ESH-Vision attention is global with a relative position bias; heads come "
                             "from num_heads per stage (set only attention.qkv_bias)")


class ESHVision(ZooVisionModel):
    family = "eshvision"
    objectives = (ALPHA_VARIANCE, PONDER, BUDGET)
    first_conv = "patch_embed.0"

    def __init__(self, spec: ESHVisionSpec = ESHVisionSpec()):
        super().__init__(spec)
        # merges pad odd grids, so only the patch size constrains the input
        self.stride = spec.patch_size
        self.patch_embed = patch_stem(spec.in_chans, spec.embed_dim, spec.patch_size, spec.stem)
        self.embed_norm = nn.LayerNorm(spec.embed_dim)
        grid = spec.img_size // spec.patch_size
        rates = iter(drop_path_rates(spec.drop_path_rate, sum(spec.depths)))
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(spec.depths, spec.num_heads)):
            dim = spec.embed_dim << i
            if i > 0:
                grid = (grid + 1) // 2
            stage = nn.Module()
            stage.downsample = PatchMerging(dim // 2) if i > 0 else nn.Identity()
            if spec.pos_conv:
                stage.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
            stage.blocks = nn.ModuleList(
                ESHBlock(dim, heads, (grid, grid), spec, layer=f"stages.{i}.blocks.{j}", drop_path=next(rates),
                         policy=spec.policy)
                for j in range(depth))
            self.stages.append(stage)
        self.final_grid = grid
        self.feature_info = [dict(num_chs=spec.embed_dim << i, reduction=spec.patch_size << i, module=f"stages.{i}")
                             for i in range(len(spec.depths))]
        # a convolutional stem's first stride-2 conv (after its norm and GELU) is a finer level
        self.stem_level = 2 if len(self.patch_embed) > 3 else None
        if self.stem_level is not None:
            self.feature_info.insert(0, dict(num_chs=self.patch_embed[0].out_channels, reduction=2,
                                             module=f"patch_embed.{self.stem_level}"))
        self.norm = nn.LayerNorm(dim)
        self._build_head(dim)
        self._init_weights()

    @classmethod
    def routing_of(cls, spec: ESHVisionSpec) -> str:
        return "patch" if spec.policy is None else "static"

    def pool_size(self):
        return (self.final_grid, self.final_grid)

    def entropy_prior(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> (B, h, w) stage-0 pixel-entropy prior of the raw pixels."""
        pixels = unnormalize(x.float(), self.spec.mean, self.spec.std)
        return patch_entropy(pixels, self.spec.patch_size, self.spec.entropy_bins)

    def forward_dict(self, x: torch.Tensor) -> dict:
        """Everything one forward computes that a caller may want, by name:

        features (B, C, h, w), logits (B, classes), ponder_cost (the mean ACT cost, 0-d);
        per block, in order: alphas (B, N) = P(attention), block_entropy (B, N) the entropy
        prior its router read, ponder_steps (B, N) extra ACT steps (None without ACT);
        entropy (B, h0, w0) the stage-0 prior; stages, each stage's output (B, D, h, w); stem,
        a convolutional stem's stride-2 level (None for a patch stem).
        """
        self.check_input(x)
        entropy = ent = self.entropy_prior(x)
        if self.stem_level is None:
            stem, t = None, self.patch_embed(x)
        else:
            stem = self.patch_embed[:self.stem_level + 1](x)
            t = self.patch_embed[self.stem_level + 1:](stem)
        t = self.embed_norm(t.permute(0, 2, 3, 1))
        alphas, costs, routes, priors, steps, stage_maps = [], [], [], [], [], []
        for i, stage in enumerate(self.stages):
            if i > 0:
                t, ent = stage.downsample(t), pool_entropy(ent)
            if hasattr(stage, "pos"):
                g = t.permute(0, 3, 1, 2)
                t = t + stage.pos(g).permute(0, 2, 3, 1)
            B, h, w, D = t.shape
            seq, e = t.reshape(B, h * w, D), ent.reshape(B, h * w)
            for blk in stage.blocks:
                seq, route, act = self.run_block(blk, seq, e, (h, w))
                if route is not None:
                    routes.append(route)
                    alphas.append(route.probs[..., route.index("attention")])
                else:  # a static block: alpha is its fixed choice
                    alphas.append(seq.new_full(seq.shape[:2], float(blk.policy == "attention")))
                priors.append(e)
                if act is not None:
                    costs.append(act.ponder_cost.mean())
                    steps.append(act.steps)
            t = seq.view(B, h, w, D)
            stage_maps.append(t.permute(0, 3, 1, 2))
        features = self.norm(t).permute(0, 3, 1, 2)
        ponder = torch.stack(costs).mean() if costs else features.new_zeros(())
        # what the objectives read (`aux_losses`): the routed blocks' alphas, the ACT ponder cost
        self._last.alphas = alphas if routes else None
        self._last.ponder = ponder if costs else None
        return dict(features=features, logits=self.forward_head(features), ponder_cost=ponder,
                    alphas=alphas, entropy=entropy, block_entropy=priors, ponder_steps=steps or None,
                    stages=stage_maps, stem=stem)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dict(x)["features"]

    def _intermediates(self, x: torch.Tensor):
        out = self.forward_dict(x)
        return ([out["stem"]] if out["stem"] is not None else []) + out["stages"], out["features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dict(x)["logits"]

    @torch.no_grad()
    def _init_weights(self) -> None:
        # routers keep their own (zero) init: alpha starts at 0.5 for every patch
        for m in self.non_router_modules():
            if isinstance(m, nn.Linear):
                init_linear(m)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if hasattr(m, "init_weights") and m is not self:
                m.init_weights()


# The scan: every eshvision_* variant defaults to the per-head ("ssd") selective scan; the
# seed's per-channel Mamba-1 form stays available as ssm=dict(kind="mamba1"). A per-channel
# decay has no matmul form, so its scan stays an elementwise recurrence that barely beats its
# token loop on CPU; one decay per head turns it into chunked matmuls, for ~1% fewer
# parameters and no accuracy effect beyond seed noise (figures in the leaderboard's notes).
_SSD = SSMSpec(kind="ssd")

# MNIST on 2 CPU cores: 4x4 patches (7x7, merged to 4x4) and d_state 8, which halves the scan.
# The stem is convolutional (two 3x3 stride-2 convs, LayerNorm2d between, same 7x7 grid): early
# convolutions train small ViT-style models much faster than the seed's one patch conv. The
# stem norm is per sample, so train and eval run the same network.
_MNIST = dict(img_size=28, in_chans=1, num_classes=10, mean=(0.1307,), std=(0.3081,), patch_size=4,
              embed_dim=32, depths=(1, 2), num_heads=(1, 2), ssm=SSMSpec(d_state=8, kind="ssd"), stem="conv")


# The training budget is the midpoint of what the routers can reach under the true costs: from
# 0.48 (every patch on attention, the cheaper choice at 49 patches) to 1 (every patch on the SSM).
# 0.55 was set for the old cost table, which charged attention a ponder step (docs/DESIGN.md,
# "Declared costs"); kept under the true costs it pushed routing to 75-100 % attention, and one seed
# of three collapsed (95.0 / 21.8 / 94.3 % top-1 at 04ec139).
@register_model(static_form="eshvision_xs_soft", static_plans=("eshvision_xs_ssm", "eshvision_xs_attn"))
def eshvision_xs(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(**_MNIST, router=RouterSpec(mode="hard", compute_target=0.75, explore=0.1)),
                       pretrained, **kwargs)


@register_model
def eshvision_xs_soft(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(**_MNIST, router=RouterSpec(mode="soft")), pretrained, **kwargs)


# eshvision_xs's static plans: every block on the SSM, or on attention (with ACT on every patch)
@register_model
def eshvision_xs_ssm(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(**_MNIST, policy="ssm"), pretrained, **kwargs)


@register_model
def eshvision_xs_attn(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(**_MNIST, policy="attention"), pretrained, **kwargs)


@register_model(static_form="eshvision_s_soft")
def eshvision_s(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(embed_dim=128, depths=(2, 3, 3), num_heads=(2, 4, 4), ssm=_SSD),
                       pretrained, **kwargs)


@register_model
def eshvision_s_soft(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(embed_dim=128, depths=(2, 3, 3), num_heads=(2, 4, 4), ssm=_SSD,
                                                router=RouterSpec(mode="soft")), pretrained, **kwargs)


@register_model
def eshvision_m(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(embed_dim=256, depths=(3, 6, 6), num_heads=(4, 8, 8), ssm=_SSD),
                       pretrained, **kwargs)


@register_model
def eshvision_l(pretrained=False, **kwargs):
    return build_model(ESHVision, ESHVisionSpec(embed_dim=384, depths=(4, 8, 10), num_heads=(6, 12, 12), ssm=_SSD),
                       pretrained, **kwargs)
