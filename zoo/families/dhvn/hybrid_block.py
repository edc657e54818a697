"""DHVN's routed block: conv / transformer / both per sample, and the decoder stage around it
(`zoo.families.dhvn.model` builds the U-Net from these)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.routed import (
    assemble, dense_mix, dense_under_compile, gather_samples, scaled, single_choice, taken_weight,
)
from ...layers.routed_block import RoutedBlock
from ...layers.router import Route, Router
from ...ops.dispatch import select_items
from .conv_branch import ConvBranch, ConvNormAct, conv_norm
from .pooled_attention import TransformerBranch

__all__ = ["CHOICES", "HybridBlock", "DecoderStage"]

CHOICES = ("conv", "transformer", "both")


class HybridBlock(RoutedBlock):
    """Conv / Transformer / Both, chosen per sample (or fixed by `policy`).

    Every choice ends in the same fusion, norm(ReLU(a * conv + (1 - a) * trans)), with a = 1
    for conv, a = 0 for transformer and the learned per-channel a = 0.1 + 0.8 * sigmoid(p) for
    both: whatever a sample took, the next block sees one normalised output space. (With each
    choice emitting its branch's own output, the next block saw three distributions; routed
    dhvn_nano then settled on whole-block choices and lost accuracy, see the module docstring.)
    """

    choices = CHOICES

    def __init__(self, in_chs: int, out_chs: int, stride: int, depth: int, spec: "DHVNSpec",
                 layer: str, in_hw: Tuple[int, int], policy: Optional[str] = None):
        super().__init__()
        self.policy = policy
        self.out_chs = out_chs
        self.stride = stride
        use_conv = policy in (None, "conv", "both")
        use_trans = policy in (None, "transformer", "both")
        self.conv = ConvBranch(in_chs, out_chs, stride, spec.conv) if use_conv else None
        self.trans = TransformerBranch(in_chs, out_chs, stride, depth, spec.attn, spec.mlp) if use_trans else None
        if policy in (None, "both"):
            self.mix_logit = nn.Parameter(torch.zeros(out_chs))
        self.fuse_norm = conv_norm(spec.conv.norm, out_chs, spec.conv.groups)
        self.capacity = spec.router.capacity
        self.router = Router(in_chs, CHOICES, "sample", spec.router, layer) if policy is None else None
        if self.router is not None:
            # what a sample spends on each choice at the model's img_size (the fusion is elementwise)
            c, t = self.conv.flops(in_hw), self.trans.flops(in_hw)
            self.router.set_costs(dict(conv=c, transformer=t, both=c + t))
        # the router's cheap choice (`Router.cheap_choice`: the cheapest but "both", the first of
        # equals), which a fixed-capacity route gives every unselected sample (`_fixed_pre`)
        self.cheap = "conv" if self.router is None or c <= t else "transformer"

    def mix(self, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The "both" pre-activation: a * conv + (1 - a) * trans, a per channel in (0.1, 0.9)."""
        a = (0.1 + 0.8 * torch.sigmoid(self.mix_logit)).to(c.dtype).view(1, -1, 1, 1)
        return a * c + (1 - a) * t

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        return self.fuse_norm(F.relu(pre))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.router is None:
            return self.static_choice(self.policy, (x,))
        return self.dispatch((x,), self.router(x.mean(dim=(2, 3))))

    def run_routed(self, inputs: tuple, route: Route) -> torch.Tensor:
        (x,) = inputs
        if not route.sparse or dense_under_compile(route, self.capacity):
            c, t = self.conv(x), self.trans(x)
            return self.finish(dense_mix(route, {"conv": c, "transformer": t, "both": self.mix(c, t)}))
        if route.selected is not None:
            return self.finish(self._fixed_pre(x, route))
        return self.finish(self._sparse_pre(x, route))

    def static_choice(self, choice: str, inputs: tuple) -> torch.Tensor:
        return self.finish(self._choice(choice, inputs[0]))

    def _choice(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One choice's pre-activation for samples x."""
        if name == "conv":
            return self.conv(x)
        if name == "transformer":
            return self.trans(x)
        return self.mix(self.conv(x), self.trans(x))

    def _sparse_pre(self, x: torch.Tensor, route: Route) -> torch.Tensor:
        """Each sample's pre-activation from the branches its choice needs, and only those."""
        w = taken_weight(route)   # None at eval: the multiply by an exact 1 is skipped
        only = single_choice(route)
        if only is not None:      # the whole batch on one choice: no gathering or scattering
            return scaled(self._choice(only, x), w)
        B = x.shape[0]
        only_c, only_t, both = (select_items(route.mask(n)) for n in CHOICES)
        n_c, n_t, n_b = only_c.numel(), only_t.numel(), both.numel()
        if not (n_c and n_t):
            return scaled(self._one_branch_for_all(x, both, conv_for_all=n_c > 0), w)
        # conv runs on [conv-only | both] samples, transformer on [transformer-only | both]
        c = self.conv(gather_samples(x, only_c, both)) if n_c + n_b else None
        t = self.trans(gather_samples(x, only_t, both)) if n_t + n_b else None
        parts = []
        if n_c:
            parts.append((only_c, c[:n_c]))
        if n_t:
            parts.append((only_t, t[:n_t]))
        if n_b:
            parts.append((both, self.mix(c[n_c:], t[n_t:])))
        # every sample took exactly one choice: each output row is written once
        return assemble([(items, scaled(v, None if w is None else w[items])) for items, v in parts], B)

    def _fixed_pre(self, x: torch.Tensor, route: Route) -> torch.Tensor:
        """Sparse execution of a fixed-capacity route in training, in shapes known before the data
        (docs/DESIGN.md, "Compiled execution"): the k `selected` samples took the other single
        branch or "both", every other sample the cheap branch. The other branch runs on the k
        selected samples; the cheap branch on the whole batch, since which selected samples also
        need it ("both") is only known from the data. So it also runs, and is dropped, on the
        selected samples that took the other branch alone: that is the extra compute. A training
        BatchNorm in the conv branch takes its statistics from the samples that use the conv only
        (`norm_over`), so each sample's values are those of `_sparse_pre` on the same route."""
        sel = route.selected                                   # (k,) sorted sample indices
        both = CHOICES.index("both")
        took = route.decisions.index_select(0, sel)            # the other branch, or both
        cheap_conv = self.cheap == "conv"
        other = (self.trans if cheap_conv else self.conv)(gather_samples(x, sel))
        if cheap_conv:
            # the conv's samples: all but the selected ones on the transformer alone
            alone = (took != both).to(x.dtype)
            keep = torch.ones(x.shape[0], dtype=x.dtype, device=x.device).index_copy(0, sel, 1 - alone)
            cheap = self.conv(x, keep)
        else:
            cheap = self.trans(x)   # per-sample norms: nothing depends on the batch
        cheap_sel = gather_samples(cheap, sel)
        mixed = self.mix(cheap_sel, other) if cheap_conv else self.mix(other, cheap_sel)
        pre_sel = torch.where((took == both).view(-1, 1, 1, 1), mixed, other)
        return scaled(cheap.index_copy(0, sel, pre_sel.to(cheap.dtype)), taken_weight(route))

    def _one_branch_for_all(self, x: torch.Tensor, both: torch.Tensor, conv_for_all: bool) -> torch.Tensor:
        """Every sample took "both" or one single branch (conv under a fixed skip mix): that branch
        runs on x as it is, the other on the "both" samples only, and their fusion overwrites those
        rows. Gathering the whole batch into [single | both] order first was a copy of x and a
        scatter of every output row: 65 % on top of the branches at skip 75 %
        (experiments/archive/issue12_efficiency_bound.py). Each sample's values are unchanged."""
        full = (self.conv if conv_for_all else self.trans)(x)
        part = (self.trans if conv_for_all else self.conv)(gather_samples(x, both))
        full_both = gather_samples(full, both)
        mixed = self.mix(full_both, part) if conv_for_all else self.mix(part, full_both)
        # in place when nothing records the graph; a clone keeps autograd's view of `full` intact
        out = full if not torch.is_grad_enabled() else full.clone()
        return out.index_copy_(0, both, mixed.to(out.dtype))


class DecoderStage(nn.Module):
    """Upsample 2x, concat the encoder skip, 1x1 merge conv, hybrid block at stride 1.

    The merge conv was named `fuse` until timm's `reparameterize_model`, which calls any child's
    `fuse` as a method, had to run on DHVN: weights with the old `fuse.*` keys still load (the
    pre-hook below renames them; `zoo.pretrained.LEGACY_KEYS` for code that compares keys first)."""

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int, depth: int, spec: "DHVNSpec",
                 layer: str, hw: Tuple[int, int], policy: Optional[str] = None):
        super().__init__()
        self.merge = ConvNormAct(in_chs + skip_chs, out_chs, 1, spec.conv.norm, spec.conv.groups)
        self.block = HybridBlock(out_chs, out_chs, 1, depth, spec, layer, hw, policy)
        self._register_load_state_dict_pre_hook(_legacy_merge_keys)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(self.merge(torch.cat([x, skip], dim=1)))


def _legacy_merge_keys(state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: `<prefix>fuse.*` (the merge conv's old name) -> `<prefix>merge.*`."""
    old = prefix + "fuse."
    for key in [k for k in state_dict if k.startswith(old)]:
        new = prefix + "merge." + key[len(old):]
        if new not in state_dict:
            state_dict[new] = state_dict.pop(key)
