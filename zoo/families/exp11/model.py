"""Exp11: a small causal LM that routes each token, per layer, to Gated DeltaNet alone or (mix="add",
the default) to GDN plus a causal softmax attention read.

Every layer is pre-norm: x + mixer(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)). The mixer plan is
`spec.layers`: "gdn", "softmax", "both" (GDN + softmax summed, on every token), "routed", "read"
(a routed sparse attention read, `ReadBlock`) or "none" (no mixer, the MLP alone). The baseline is
gdn, gdn, gdn, softmax; the dynamic model routes layers 1 and 2. Token embedding and
LM head are tied (`tie_embeddings`). Its static plans (docs/DESIGN.md, "Static plans") fix each
routed layer on one choice: exp11_baseline_tiny (both on gdn, the cheapest), exp11_ggbs_tiny
(the routed model's majority choices on pydocs) and exp11_gbbs_tiny (both on softmax, which under
mix="add" is GDN + softmax: the full plan); exp11_gggg_tiny, exp11_ggss_tiny and exp11_ssss_tiny
are other layer plans of the same width. The read models route "read" layers, whose static plans
are "softmax" and "none" layers (below, "Read layers").

Routing. One zoo `Router` per routed layer (choices gdn/softmax, token granularity), all reading
the RMS-normalised output of layer 0, so every decision is made after layer 0 (the seed's
Linear(768 -> 2 layers x 2 choices) is exactly these routers side by side). A decision at token t
depends only on tokens <= t. Training: hard straight-through on the noise-free probabilities with
the compute-aware budget objective; eval: argmax, no noise.

What a routed layer computes for a token (`spec.mix`, see `RoutedMixer`):
  * "add" (default): the GDN runs over every token, so its state and short conv see the whole
    sequence; a softmax-routed token adds a causal softmax read, a query at its own position over
    keys/values of every token <= t. The choices are nested, the GDN is the cheap path, and
    routing every token to gdn is exactly a GDN layer.
  * "replace": as "add", but a softmax-routed token takes the attention output instead.
  * "hide" (the earlier semantics): a softmax-routed token is invisible to the GDN (outside the
    short-conv window, g = beta = 0) and takes the attention output. A zero-initialised router
    sent a random half of the tokens away, so the GDN state saw half of the sequence; this form
    trailed the baseline by 0.2 bits/byte at 300 steps where "add" matched it.
Sparse execution (default at eval) runs the attention queries only on their packed positions
(in causal key blocks, `sorted_query_attention`); "hide" also packs the GDN's tokens. Keys and
values are still computed for every token of a sequence with any softmax token, and packed
queries are padded to the longest row (docs/DESIGN.md, "What sparse execution still computes"). Dense
execution (default in training) computes both branches for every token under the same
semantics and combines them with the straight-through weights. The two agree to float rounding.

Read layers (`ReadBlock`, docs/DESIGN.md, "Static plans"). Under mix="add" a routed layer's
softmax choice is GDN + attention on top of the GDN every token runs, so the dynamic model costs
at least its baseline plan whatever it routes. A "read" layer chooses between a causal softmax
read and nothing (the MLP runs either way): every token on softmax is exactly a "softmax" layer,
every token skipping a "none" layer, and a share of readers costs less than the softmax plan
once the read outweighs its key/value projection. Its router is its own, inside the block, and
reads the layer's own normalised input (`spec.mix` does not apply to it).

`aux_losses()` gives the budget term (with `RouterSpec.compute_target`) and the Switch load-balance loss
N * sum_i f_i P_i, averaged over routed layers, with f from the routes actually taken. `forward`
returns logits only and never adds either.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from ...layers.base import LMSpec, ZooCausalLM
from ...layers.objectives import BUDGET, LOAD_BALANCE
from ...layers.router import Route, Router
from ...registry import build_model, register_model
from ...specs import AttentionSpec, GDNSpec, MlpSpec, RouterSpec
from .blocks import Exp11Block, ReadBlock
from .mixers import CHOICES, PlainBoth, RoutedMixer

__all__ = ["Exp11", "Exp11Spec", "Exp11Block", "ReadBlock", "RoutedMixer", "PlainBoth"]

MIXERS = ("gdn", "softmax", "both", "routed", "read", "none")
ROUTED_KINDS = ("routed", "read")


@dataclass(frozen=True)
class Exp11Spec(LMSpec):
    hidden: int = 768
    layers: Tuple[str, ...] = ("gdn", "gdn", "gdn", "softmax")
    # chunk 32: the delta rule's C^2 work halves against 64 and the layer runs ~20% faster on CPU
    gdn: GDNSpec = GDNSpec(num_heads=12, chunk_size=32)
    attn: AttentionSpec = AttentionSpec(num_heads=12, qkv_bias=False, rope=True)
    mlp: MlpSpec = MlpSpec(act="swiglu", hidden=3072)
    router: RouterSpec = RouterSpec(mode="hard", compute_target=0.75, explore=0.1)
    tie_embeddings: bool = True
    norm_eps: float = 1e-6
    mix: str = "add"    # what a routed token's choice means (see RoutedMixer)

    def __post_init__(self):
        super().__post_init__()
        bad = [m for m in self.layers if m not in MIXERS]
        if bad or not self.layers:
            raise ValueError(f"layers must be a non-empty plan of {MIXERS}, got {self.layers}")
        if self.layers[0] == "routed":
            raise ValueError("layer 0 cannot be routed: the routers read its output")
        if self.mix not in ("add", "replace", "hide"):
            raise ValueError(f"mix must be 'add', 'replace' or 'hide', got {self.mix!r}")
        if self.mlp.act not in ("swiglu", "gelu"):
            raise ValueError(f"mlp.act must be 'swiglu' or 'gelu', got {self.mlp.act!r}")


class Exp11(ZooCausalLM):
    family = "exp11"
    objectives = (LOAD_BALANCE, BUDGET)

    def __init__(self, spec: Exp11Spec = Exp11Spec()):
        super().__init__(spec)
        dim = spec.hidden
        self.num_features = dim
        self.embed = nn.Embedding(spec.vocab_size, dim)
        # a read layer holds its own router (layer f"layers.{i}"), which reads the layer's own input
        self.layers = nn.ModuleList([ReadBlock(spec, f"layers.{i}") if kind == "read" else Exp11Block(kind, spec)
                                     for i, kind in enumerate(spec.layers)])
        self.routed = [i for i, kind in enumerate(spec.layers) if kind == "routed"]
        if self.routed:
            self.router_norm = nn.RMSNorm(dim, eps=spec.norm_eps)
            self.routers = nn.ModuleList([
                Router(dim, CHOICES, "token", spec.router, layer=f"layers.{i}") for i in self.routed])
            for i, router in zip(self.routed, self.routers):
                router.set_costs(self.layers[i].mixer.choice_costs(spec.max_seq_len))
        self.norm = nn.RMSNorm(dim, eps=spec.norm_eps)
        self.lm_head = nn.Linear(dim, spec.vocab_size, bias=False)
        if spec.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self._init_weights()

    @classmethod
    def routing_of(cls, spec: Exp11Spec) -> str:
        return "token" if set(ROUTED_KINDS) & set(spec.layers) else "static"

    # its registered static form (the baseline plan) is the accuracy comparator, not an always-full model
    static_reference_label = "{arch} with plain GDN + attention layers"

    def static_reference(self, build_static_form=None) -> "Exp11":
        """A copy of this model whose routed layers are their full choice as plain modules
        (`PlainBoth`: GDN and softmax attention over every token, summed under mix="add"; a read
        layer a plain softmax layer, `ReadBlock.plain`), with no routers, masks or packing; this
        model is left as it is."""
        ref = copy.deepcopy(self)
        for i, block in enumerate(ref.layers):
            if isinstance(block, ReadBlock):
                ref.layers[i] = block.plain()
        for i in ref.routed:
            block = ref.layers[i]
            block.mixer = PlainBoth(block.mixer)
            block.kind = "both"  # any kind but "routed": the block calls its mixer on h alone
        ref.routed = []
        if hasattr(ref, "routers"):
            del ref.routers, ref.router_norm
        return ref

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) logits. Auxiliary losses: `aux_losses()`."""
        self.check_input(input_ids)
        if input_ids.shape[1] == 0:
            raise ValueError(f"{type(self).__name__} needs at least one token per sequence, got shape "
                             f"{tuple(input_ids.shape)}")
        x = self.embed(input_ids)
        routes: Dict[int, Route] = {}
        for i, block in enumerate(self.layers):
            x = self.run_block(block, x, routes.get(i))
            if i == 0 and self.routed:
                feats = self.router_norm(x)
                routes = {j: router(feats) for j, router in zip(self.routed, self.routers)}
        return self.lm_head(self.norm(x))

    def _init_weights(self) -> None:
        """GPT-2 style normal(0.02) init, residual projections scaled by 1/sqrt(2 * depth).
        Routers keep their own (zero) init; GDN decay parameters keep theirs. Fine on meta."""
        keep = set(map(id, self.non_router_modules()))
        residual_std = 0.02 / (2 * len(self.layers)) ** 0.5
        for name, m in self.named_modules():
            if id(m) not in keep:
                continue
            if isinstance(m, nn.Linear):
                last = name.rsplit(".", 1)[-1]
                nn.init.normal_(m.weight, std=residual_std if last in ("o_proj", "fc2") else 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)


# ----------------------------------------------------------------------------- variants

G, S, R = "gdn", "softmax", "routed"
_BASELINE = (G, G, G, S)
_DYNAMIC = (G, R, R, S)
_TINY = dict(vocab_size=256, max_seq_len=256, hidden=128, gdn=GDNSpec(num_heads=4, chunk_size=32),
             attn=AttentionSpec(num_heads=4, qkv_bias=False, rope=True),
             mlp=MlpSpec(act="swiglu", hidden=384))


@register_model
def exp11_baseline(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=_BASELINE), pretrained, **kwargs)


@register_model(static_form="exp11_baseline")
def exp11_dynamic(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=_DYNAMIC), pretrained, **kwargs)


@register_model
def exp11_baseline_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=_BASELINE, **_TINY), pretrained, **kwargs)


@register_model(static_form="exp11_baseline_tiny",
                static_plans=("exp11_baseline_tiny", "exp11_ggbs_tiny", "exp11_gbbs_tiny", "exp11_gggg_tiny",
                              "exp11_ggss_tiny", "exp11_ssss_tiny"))
def exp11_dynamic_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=_DYNAMIC, **_TINY), pretrained, **kwargs)


# static layer plans that bracket the dynamic model's FLOPs per token: does routing each token
# beat fixing which layers are softmax?
@register_model
def exp11_gggg_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, G, G), **_TINY), pretrained, **kwargs)


@register_model
def exp11_ggss_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, S, S), **_TINY), pretrained, **kwargs)


@register_model
def exp11_ssss_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(S, S, S, S), **_TINY), pretrained, **kwargs)


# the routed layers fixed on softmax ("both" under mix="add": GDN + softmax on every token), and
# the routed model's majority plan on pydocs (layers.1 gdn 69 %, layers.2 softmax 52 %, the
# committed records)
@register_model
def exp11_gbbs_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, "both", "both", S), **_TINY), pretrained, **kwargs)


@register_model
def exp11_ggbs_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, "both", S), **_TINY), pretrained, **kwargs)


# Read layers (docs/DESIGN.md, "Static plans"): a routed sparse attention read whose static plans
# are a "softmax" and a "none" layer, so routing can cost less than the full plan (the dynamic
# model above cannot: under mix="add" its softmax choice is GDN + attention).
READ, N = "read", "none"
# compute_target is a share of the full routed compute (docs/DESIGN.md, glossary), under the
# declared costs (skip = the read's key/value projection, softmax = the whole read), so a share p of
# reading tokens spends kv/read + p (1 - kv/read). At the tiny width and the registered T = 256,
# kv/read = 65,536 / 196,864 = 1/3, and 0.5 is p = 25 % (the MQAR aim: fewer than 25 % of
# tokens read). The read grows with T and kv does not: at T = 1,024, kv/read = 1/6 and 25 % is
# 0.375 (0.5 there is 40 %), so a run at that length sets router.compute_target=0.375. A target
# below 0.5 is not the default because the floor kv/read rises towards 1/2 at short T (0.48 at
# T = 24) and a target under it is refused (`zoo.layers.router.check_budget_target`).
_READ_ROUTER = RouterSpec(mode="hard", compute_target=0.5, explore=0.1)


@register_model(static_form="exp11_baseline_tiny",
                static_plans=("exp11_baseline_tiny", "exp11_gggn_tiny", "exp11_gggg_tiny"))
def exp11_read_tiny(pretrained=False, **kwargs):
    """The baseline's softmax layer read by the tokens its router picks: all read is
    exp11_baseline_tiny, none exp11_gggn_tiny."""
    return build_model(Exp11, Exp11Spec(layers=(G, G, G, READ), router=_READ_ROUTER, **_TINY), pretrained, **kwargs)


# Two read layers, the last two: each router reads after at least two GDN layers, and the second
# after the first read (a router with a softmax layer before it found the queries, arXiv
# 2603.20997); at (G, read, G, read) the first router would read after one GDN layer, where that
# analysis found it blind. Its all-read plan is exp11_ggss_tiny, already trained beside the
# dynamic model; all-skip exp11_ggnn_tiny; exp11_ggns_tiny keeps one softmax layer, as the baseline.
@register_model(static_form="exp11_ggss_tiny",
                static_plans=("exp11_ggss_tiny", "exp11_ggns_tiny", "exp11_ggnn_tiny", "exp11_baseline_tiny"))
def exp11_read2_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, READ, READ), router=_READ_ROUTER, **_TINY), pretrained,
                       **kwargs)


@register_model
def exp11_gggn_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, G, N), **_TINY), pretrained, **kwargs)


@register_model
def exp11_ggns_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, N, S), **_TINY), pretrained, **kwargs)


@register_model
def exp11_ggnn_tiny(pretrained=False, **kwargs):
    return build_model(Exp11, Exp11Spec(layers=(G, G, N, N), **_TINY), pretrained, **kwargs)
