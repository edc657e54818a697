"""A toy fourth family, declared the way a family package declares itself (docs/DESIGN.md,
"Families"): its spec, its routed block (the `RoutedBlock` protocol), its model class, two
registered variants and its `Family` descriptor. `register_toy(monkeypatch)` registers it for one
test and takes it out again afterwards; timm and mmengine never see its models.

    def test_something(monkeypatch):
        family = register_toy(monkeypatch)          # zoo.family_of("toy_routed") is family
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from zoo import bridges, registry
from zoo.layers.base import LMSpec, ZooCausalLM
from zoo.layers.family import FAMILIES, Bench, Display, Family, Sweep, register_family, token_case
from zoo.layers.routed import dense_mix
from zoo.layers.routed_block import RoutedBlock
from zoo.layers.router import Router
from zoo.specs import RouterSpec

__all__ = ["ToySpec", "Doubling", "ToyBlock", "ToyLM", "register_toy", "TOY_DISPLAY"]

TOY_DISPLAY = Display("Toy", "#000000", 3)


@dataclass(frozen=True)
class ToySpec(LMSpec):
    hidden: int = 8
    router: RouterSpec = RouterSpec(mode="hard")
    static: bool = False


class Doubling(nn.Module):
    """Elementwise, so the FLOP counter needs the family's rule to see it."""

    def forward(self, x):
        return 2 * x


class ToyBlock(RoutedBlock):
    choices = ("cheap", "dear")

    def __init__(self, dim):
        super().__init__()
        self.cheap, self.dear = Doubling(), nn.Linear(dim, dim, bias=False)

    def static_choice(self, choice, inputs):
        return (self.cheap if choice == "cheap" else self.dear)(inputs[0])

    def run_routed(self, inputs, route):
        if not route.sparse:
            return dense_mix(route, {c: self.static_choice(c, inputs) for c in self.choices})
        out, dear = self.cheap(inputs[0]), route.mask("dear")
        out[dear] = self.dear(inputs[0][dear])
        return out


class ToyLM(ZooCausalLM):
    family = "toy"

    def __init__(self, spec=ToySpec()):
        super().__init__(spec)
        self.embed = nn.Embedding(spec.vocab_size, spec.hidden)
        self.block = ToyBlock(spec.hidden)
        if not spec.static:
            self.router = Router(spec.hidden, ToyBlock.choices, "token", spec.router, layer="block")
            self.router.set_costs(dict(cheap=1.0, dear=2.0 * spec.hidden))
        self.head = nn.Linear(spec.hidden, spec.vocab_size, bias=False)

    @classmethod
    def routing_of(cls, spec):
        return "static" if spec.static else "token"

    def forward(self, ids):
        x = self.embed(ids)
        if self.spec.static:
            return self.head(self.block.static_choice("dear", (x,)))
        return self.head(self.block.dispatch((x,), self.router(x)))


def toy_static(pretrained=False, **kwargs):
    return registry.build_model(ToyLM, ToySpec(vocab_size=32, max_seq_len=16, static=True), pretrained, **kwargs)


def toy_routed(pretrained=False, **kwargs):
    return registry.build_model(ToyLM, ToySpec(vocab_size=32, max_seq_len=16), pretrained, **kwargs)


def toy_wide_static(pretrained=False, **kwargs):
    return registry.build_model(ToyLM, ToySpec(vocab_size=32, max_seq_len=16, hidden=16, static=True), pretrained,
                                **kwargs)


def toy_wide(pretrained=False, **kwargs):   # the benchmarks' larger configuration
    return registry.build_model(ToyLM, ToySpec(vocab_size=32, max_seq_len=16, hidden=16), pretrained, **kwargs)


def register_toy(monkeypatch, display: Display = TOY_DISPLAY) -> Family:
    """The toy family's one package, as a test: its models and its descriptor, registered (and
    taken out again when the test ends: the registry's tables and the family table are restored)."""
    for table in ("_ENTRYPOINTS", "_INFO_CACHE", "_STATIC_FORMS", "_STATIC_PLANS"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    monkeypatch.setattr(bridges, "register_everywhere", lambda fn, timm_cfgs=None: None)
    monkeypatch.setitem(FAMILIES, "toy", None)   # so that the teardown removes it again
    registry.register_model(toy_static)
    registry.register_model(toy_routed, static_form="toy_static", static_plans=("toy_static",))
    registry.register_model(toy_wide_static)
    registry.register_model(toy_wide, static_form="toy_wide_static", static_plans=("toy_wide_static",))
    del FAMILIES["toy"]
    return register_family(Family(
        name="toy", model_class=ToyLM, display=display, suite="pydocs", embedded=("toy_routed", "toy_static"),
        budget_curves={"toy_routed": (0.5, 1.0)},
        bench=Bench(key="toy", small=("toy_routed", ("--batch-size", "2", "--seq-len", "16")),
                    large=("toy_wide", ("--batch-size", "2", "--seq-len", "16")),
                    overhead=(token_case("toy_routed", 2, 16, ToyBlock.choices, vocab=32),),
                    sweep=Sweep("toy_routed", "pydocs", "--seq-len", {16: 2})),
        module_flops={Doubling: lambda module, args, kwargs, out: out.numel()}))
