"""The static always-full reference a routed model's sparse run is timed against
(docs/DESIGN.md, "Performance targets").

A routed model in dense execution is a flattering reference: it carries the weighted mix over
full activations (and Exp11's masks), which a plain static model never pays. The reference here
is a model without routing that computes everything the full path computes: the dearest static
plan, not the one a user would pick (the leaderboard holds a routed model to its cheapest trained
static plan of equal quality, `leaderboard.static_plans`):

  * DHVN: its registered static form (`dhvn_*_static`, the always-both hybrid, no router);
  * ESH-Vision: its registered static form (`eshvision_*_soft`: attention and SSM on every
    patch, mixed by the soft gate);
  * Exp11: the same model with each routed layer's mixers as plain modules: GDN and softmax
    attention over every token, summed (the softmax choice under mix="add"; attention alone
    under "replace"/"hide"), with no router, mask or packing. Its registered static form,
    exp11_baseline, is the accuracy comparator (those layers GDN only), not an always-full one.

The reference gets the routed model's weights wherever a name and shape match, so trained rows
time trained weights on both sides.
"""
from __future__ import annotations

import copy
from typing import Callable, Tuple

import torch
import torch.nn as nn

__all__ = ["PlainBoth", "static_reference", "exp11_plain_both"]


class PlainBoth(nn.Module):
    """A routed Exp11 layer's full choice as plain modules: gdn(h) + attn(h) on every token
    (mix="add"), or attn(h) alone (mix="replace"/"hide")."""

    def __init__(self, mixer: nn.Module):
        super().__init__()
        self.add = mixer.mix == "add"
        self.gdn = mixer.gdn if self.add else None
        self.attn = mixer.attn

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.attn(h)
        return self.gdn(h) + a if self.add else a


def exp11_plain_both(net: nn.Module) -> nn.Module:
    """A copy of an Exp11 model whose routed layers are `PlainBoth` and which has no routers."""
    ref = copy.deepcopy(net)
    for i in ref.routed:
        block = ref.layers[i]
        block.mixer = PlainBoth(block.mixer)
        block.kind = "both"  # any kind but "routed": the block calls its mixer on h alone
    ref.routed = []
    del ref.routers, ref.router_norm
    return ref


def static_reference(arch: str, net: nn.Module, build: Callable[[str], nn.Module]) -> Tuple[str, nn.Module]:
    """(description, module) of `arch`'s always-full static reference. `build(name)` builds a
    registered model at the routed model's input shapes (same suite and overrides)."""
    import zoo
    info = zoo.model_info(arch)
    if info["family"] == "exp11":
        ref = exp11_plain_both(net)
        return f"{arch} with plain GDN + attention layers", ref.eval()
    name = info.get("static_form")
    if not name:
        raise ValueError(f"{arch} has no registered static form")
    ref = build(name)
    own = ref.state_dict()
    shared = {k: v for k, v in net.state_dict().items() if k in own and own[k].shape == v.shape}
    ref.load_state_dict(shared, strict=False)
    return name, ref.eval()
