"""Exp11's token mixers: the routed layer (`RoutedMixer`), the static GDN + softmax layer of the
"both" plans (`BothMixer`) and the routed layer's full choice as plain modules (`PlainBoth`, the
static reference's layers). `zoo.families.exp11.model` builds the LM from these."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...layers.routed import (
    dense_mix, dense_under_compile, fixed_rows, scaled, single_choice, taken_weight, unselected, weight_of,
)
from ...layers.routed_block import RoutedBlock
from ...layers.router import Route
from ...ops.dispatch import Packed, gather_rows, pack_rows, unpack_rows
from .causal_attention import CausalSelfAttention
from .gdn import GatedDeltaNet

__all__ = ["CHOICES", "RoutedMixer", "BothMixer", "PlainBoth"]

CHOICES = ("gdn", "softmax")


class RoutedMixer(RoutedBlock):
    """Per token, what the route decides, read through `spec.mix`: under "add" (the default) a
    softmax token runs the GDN and a causal softmax read, a gdn token the GDN alone.

    `spec.mix` fixes what the two choices mean:
      * "add":     the GDN runs over every token; a softmax-routed token adds a softmax
                   attention read to its GDN output (the choices are nested).
      * "replace": the GDN runs over every token; a softmax-routed token takes the attention
                   output instead of the GDN's.
      * "hide":    a softmax-routed token is invisible to the GDN (g = beta = 0, outside the
                   short-conv window) and takes the attention output.

    Its routed part takes (h,), the normalised layer input; the route comes from the model's
    routers, which all read layer 0's output.
    """
    choices = CHOICES

    def __init__(self, dim: int, spec: "Exp11Spec"):
        super().__init__()
        self.mix = spec.mix
        self.capacity = spec.router.capacity
        self.gdn = GatedDeltaNet(dim, spec.gdn)
        self.attn = CausalSelfAttention(dim, spec.attn)
        # the router's cheap choice (`Router.cheap_choice` on these costs, which the model declares:
        # the dearer is the full choice, softmax of equals), given to a fixed-capacity route's
        # unselected tokens: gdn, but under "hide" attention alone may cost less than the GDN
        costs = self.choice_costs(spec.max_seq_len)
        self.cheap = "softmax" if costs["softmax"] < costs["gdn"] else "gdn"

    def choice_costs(self, seq_len: int) -> dict:
        gdn, attn = self.gdn.flops_per_token(seq_len), self.attn.flops_per_token(seq_len)
        return dict(gdn=gdn, softmax=attn if self.mix == "hide" else gdn + attn)

    def forward(self, x: torch.Tensor, route: Route) -> torch.Tensor:
        return self.dispatch((x,), route)

    def static_choice(self, choice: str, inputs: tuple) -> torch.Tensor:
        (x,) = inputs
        if choice == "gdn":
            return self.gdn(x)
        a = self.attn(x)
        return self.gdn(x) + a if self.mix == "add" else a

    def run_routed(self, inputs: tuple, route: Route) -> torch.Tensor:
        (x,) = inputs
        if self.mix == "hide":
            return self._hide(x, route)
        y = self.gdn(x)  # every token writes the state and is in the conv window
        if not route.sparse or dense_under_compile(route, self.capacity):
            a = self.attn(x)
            if self.mix == "add":
                return y + weight_of(route, "softmax", a) * a
            return dense_mix(route, {"gdn": y, "softmax": a})
        w = taken_weight(route, x.dtype)  # None at eval: the multiply by an exact 1 is skipped
        fixed = route.selected is not None  # fixed capacity in training: k softmax tokens per row
        only = None if fixed else single_choice(route)
        if only == "gdn":
            return scaled(y, w) if self.mix == "replace" else y
        if only == "softmax":
            # every query asks: the plain causal kernel over the whole sequence, with no packing,
            # no per-block masks and no scatter (those cost 7-19 % of the layer at T=1024)
            a = scaled(self.attn(x), w)
            return a + y if self.mix == "add" else a
        if self.mix == "replace":
            y = scaled(y, w)
        # a fixed-capacity route's k tokens per row are its packing (docs/DESIGN.md, "Compiled execution")
        packed = fixed_rows(route.selected) if fixed else pack_rows(route.mask("softmax"))
        a = self.attn(x, queries=packed, fixed=fixed)
        if w is not None:
            a = scaled(a, gather_rows(w, packed.index))
        if self.mix == "add":
            a = a + gather_rows(y, packed.index)
        return unpack_rows(y, packed, a)

    def _hide(self, x: torch.Tensor, route: Route) -> torch.Tensor:
        to_gdn = route.mask("gdn")
        if not route.sparse:
            return dense_mix(route, {"gdn": self.gdn(x, visible=to_gdn), "softmax": self.attn(x)})
        w = taken_weight(route, x.dtype)  # None at eval: the multiply by an exact 1 is skipped
        fixed = route.selected is not None
        only = None if fixed else single_choice(route)
        if only is not None:
            # every token on one branch: that mixer on the whole batch, no packing or scatter
            return scaled((self.gdn if only == "gdn" else self.attn)(x), w)
        # Every token is in exactly one branch, so the two scatters fill the whole output.
        out = x.new_empty(x.shape)
        if fixed:  # the k selected tokens of each row on the dearer branch, the other T - k on the cheap one
            selected, rest = fixed_rows(route.selected), fixed_rows(unselected(route.selected, x.shape[1]))
            packings = (rest, selected) if self.cheap == "gdn" else (selected, rest)
        else:
            packings = (pack_rows(to_gdn), pack_rows(~to_gdn))
        for packed, branch in zip(packings, ("gdn", "softmax")):
            y = self._gdn_packed(x, packed) if branch == "gdn" else self.attn(x, queries=packed, fixed=fixed)
            if w is not None:
                y = scaled(y, gather_rows(w, packed.index))
            out = unpack_rows(out, packed, y)
        return out

    def _gdn_packed(self, x: torch.Tensor, packed: Packed) -> torch.Tensor:
        # padding at the end of a short row runs after all of its real tokens: causal, harmless
        return self.gdn(gather_rows(x, packed.index))


class BothMixer(nn.Module):
    """A static layer with GDN and causal softmax attention on every token, summed: what a
    routed layer computes under mix="add" with every token routed to softmax (same parameter
    names as `RoutedMixer`), as a plain layer with no router, mask or packing."""

    def __init__(self, dim: int, spec: "Exp11Spec"):
        super().__init__()
        self.gdn = GatedDeltaNet(dim, spec.gdn)
        self.attn = CausalSelfAttention(dim, spec.attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gdn(x) + self.attn(x)


class PlainBoth(nn.Module):
    """A routed layer's full choice as plain modules, on every token: gdn(h) + attn(h) under
    mix="add", attn(h) alone under "replace" and "hide" (the routed layer's own modules, so its
    weights and parameter names)."""

    def __init__(self, mixer: RoutedMixer):
        super().__init__()
        self.add = mixer.mix == "add"
        self.gdn = mixer.gdn if self.add else None
        self.attn = mixer.attn

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.attn(h)
        return self.gdn(h) + a if self.add else a
