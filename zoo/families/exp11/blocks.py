"""Exp11's layers: the pre-norm block every layer plan is made of (`Exp11Block`) and the routed
read layer (`ReadBlock`, layer kind "read"). `zoo.families.exp11.model` builds the LM from these.

A "read" layer is a Mixture-of-Depths-style sparse attention read (Raposo et al. 2024, "Mixture-of-
Depths"): per token, its own router picks "softmax" (a causal softmax attention read: the query
at t over the keys/values of every token <= t) or "skip" (mixer output 0). Its static plans are a
plain "softmax" layer (every token reads) and a "none" layer (no mixer: the block's MLP alone),
so it routes between two static layers that each stand alone, and can cost less than the full
plan (docs/DESIGN.md, "Static plans").
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Mlp, SwiGLU

from ...layers.routed import (
    dense_under_compile, fixed_rows, rows_with, scaled, single_choice, taken_weight, weight_of,
)
from ...layers.routed_block import RoutedBlock
from ...layers.router import Route, Router
from ...ops.dispatch import gather_rows, pack_rows, packed_rows_index, unpack_rows
from .causal_attention import CausalSelfAttention
from .gdn import GatedDeltaNet
from .mixers import BothMixer, RoutedMixer

__all__ = ["Exp11Block", "ReadBlock", "READ_CHOICES"]

READ_CHOICES = ("skip", "softmax")


class Exp11Block(nn.Module):
    """x + mixer(RMSNorm(x)), then x + MLP(RMSNorm(x)). The mixer by `kind`: "gdn", "softmax",
    "both" (GDN + softmax summed), "routed" (`RoutedMixer`, its route given by the model), or
    "none": no mixer and no first norm, the MLP alone (a "read" layer on which every token skips)."""

    def __init__(self, kind: str, spec: "Exp11Spec"):
        super().__init__()
        dim = spec.hidden
        self.kind = kind
        if kind != "none":
            self.norm1 = nn.RMSNorm(dim, eps=spec.norm_eps)
        if kind == "gdn":
            self.mixer = GatedDeltaNet(dim, spec.gdn)
        elif kind in ("softmax", "read"):  # a read layer's attention has a softmax layer's names
            self.mixer = CausalSelfAttention(dim, spec.attn)
        elif kind == "both":
            self.mixer = BothMixer(dim, spec)
        elif kind == "routed":
            self.mixer = RoutedMixer(dim, spec)
        self.norm2 = nn.RMSNorm(dim, eps=spec.norm_eps)
        hidden = spec.mlp.hidden or int(spec.mlp.ratio * dim)
        if spec.mlp.act == "swiglu":
            self.mlp = SwiGLU(dim, hidden, bias=False)
        else:
            self.mlp = Mlp(dim, hidden, bias=False)

    def mix(self, h: torch.Tensor, route=None) -> torch.Tensor:
        """The mixer's output for the normalised input h."""
        return self.mixer(h, route) if self.kind == "routed" else self.mixer(h)

    def forward(self, x: torch.Tensor, route=None) -> torch.Tensor:
        if self.kind != "none":
            x = x + self.mix(self.norm1(x), route)
        return x + self.mlp(self.norm2(x))


class ReadBlock(Exp11Block, RoutedBlock):
    """Layer kind "read": an Exp11 block whose attention read each token takes or skips, as its
    own router decides from the layer's own normalised input h (docs/DESIGN.md, "Routed blocks":
    its routed part takes (h,)).

    * softmax: a causal softmax read, the query at t over keys/values of every token <= t. Keys
      and values come from every token of the sequence, skipping or not: the memory stays whole,
      so a recall query finds a key written by a token that skipped.
    * skip: mixer output 0.
    The MLP runs on every token, as in the layer's two static plans ("softmax" and "none"): the
    choice is only whether a token reads the sequence, the question routing is asked in Exp11
    (GDN state against exact recall); the MLP is token-local and costs the same at every length,
    while the read's cost grows with T, which is what routing can save at long contexts.

    The router reads h, not layer 0's output as the seed's routers do: Mixture-of-Depths routes
    on the block's own input, and a router with no softmax layer before it was found blind on
    MQAR (arXiv 2603.20997: 1.2 % routing precision). A decision at token t sees h_t, which
    depends on tokens <= t only.

    Sparse execution (eval default): queries packed for the reading tokens only, the rows with no
    reader run no attention at all (no keys or values), output 0 elsewhere. Dense execution
    (training default): the read on every token times the straight-through weight of softmax, so
    the router learns through the path taken (Mixture-of-Depths: the router weight multiplies
    the block's output). They agree at eval to float rounding.
    """
    choices = READ_CHOICES

    def __init__(self, spec: "Exp11Spec", layer: str):
        super().__init__("read", spec)
        self.spec = spec
        self.router = Router(spec.hidden, self.choices, "token", spec.router, layer=layer, full="softmax")
        self.router.set_costs(self.choice_costs(spec.max_seq_len))

    def choice_costs(self, seq_len: int) -> dict:
        """Per token, what each choice executes in the layer's mixer (docs/DESIGN.md, "Declared
        costs"): softmax, the whole read (key/value and query projections, scores and values
        over the causal prefix, output projection: `CausalSelfAttention.flops_per_token`); skip,
        what a skipping token still costs when its sequence has readers, its key/value
        projection. (A sequence with no reader computes none, so it costs less than declared.)"""
        return dict(skip=self.mixer.flops_per_token(seq_len, keys_only=True),
                    softmax=self.mixer.flops_per_token(seq_len))

    def mix(self, h: torch.Tensor, route=None) -> torch.Tensor:
        return self.dispatch((h,), self.router(h))

    def static_choice(self, choice: str, inputs: tuple) -> torch.Tensor:
        (h,) = inputs
        return self.mixer(h) if choice == "softmax" else torch.zeros_like(h)

    def run_routed(self, inputs: tuple, route: Route) -> torch.Tensor:
        (h,) = inputs
        if not route.sparse or dense_under_compile(route, self.spec.router.capacity):
            a = self.mixer(h)
            return weight_of(route, "softmax", a) * a
        w = taken_weight(route, h.dtype)  # None at eval: the multiply by an exact 1 is skipped
        if route.selected is not None:
            return self._fixed_read(h, route.selected, w)
        only = single_choice(route)
        if only is not None:
            # one choice everywhere: no reader (no keys/values either) or the plain causal kernel
            return scaled(self.static_choice(only, inputs), w)
        rows, reads = rows_with(route.mask("softmax"))  # rows None: every sequence has a reader
        x = h if rows is None else h.index_select(0, rows)
        packed = pack_rows(reads)
        a = self.mixer(x, queries=packed)
        if w is not None:
            a = scaled(a, gather_rows(w if rows is None else w.index_select(0, rows), packed.index))
        B, T, C = h.shape
        # one write of the packed reads into a zero output; padding goes to scratch rows past the end
        out = h.new_zeros(B * T + a.shape[0] * a.shape[1], C)
        out.index_copy_(0, packed_rows_index(packed, T, rows, B * T), a.reshape(-1, C).to(out.dtype))
        return out[:B * T].view(B, T, C)

    def _fixed_read(self, h: torch.Tensor, selected: torch.Tensor, w) -> torch.Tensor:
        """The sparse read of a fixed-capacity route in training, in shapes known before the data
        (docs/DESIGN.md, "Compiled execution"): the k `selected` readers of every sequence (each
        has readers, so keys and values span every sequence, as the packed read computes them
        then), their queries in one causal kernel, written into a zero output."""
        packed = fixed_rows(selected)
        a = self.mixer(h, queries=packed, fixed=True)
        if w is not None:
            a = scaled(a, gather_rows(w, selected))
        return unpack_rows(torch.zeros_like(h), packed, a)

    def plain(self) -> Exp11Block:
        """This layer on its full choice as a plain "softmax" layer with no router: this layer's
        own norms, attention and MLP (the same parameters, under the same names)."""
        with torch.device("meta"):
            block = Exp11Block("softmax", self.spec)
        own = {k: v for k, v in self.state_dict(keep_vars=True).items() if not k.startswith("router.")}
        block.load_state_dict(own, assign=True)
        return block
