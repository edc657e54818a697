"""Each family owns itself (docs/DESIGN.md, "Families"): its descriptor, its static reference and
the routed-block protocol, and a new family registered from one place."""
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

import zoo
from zoo import bridges, registry
from zoo.layers.base import LMSpec, ZooCausalLM
from zoo.layers.family import FAMILIES, Display, Family, UnknownFamilyError, register_family
from zoo.layers.routed import dense_mix
from zoo.layers.routed_block import RoutedBlock, routed_calls
from zoo.layers.router import Router
from zoo.specs import RouterSpec

SMALL = {  # the routed small variant of each family, its create kwargs and one input
    "dhvn_nano": (dict(num_classes=10, in_chans=1, img_size=28), lambda: torch.randn(3, 1, 28, 28)),
    "eshvision_xs": (dict(num_classes=10, in_chans=1, img_size=28), lambda: torch.randn(2, 1, 28, 28)),
    "exp11_dynamic_tiny": (dict(), lambda: torch.randint(0, 256, (2, 40))),
    "exp11_read_tiny": (dict(), lambda: torch.randint(0, 256, (2, 40))),   # a second Exp11 routed block
}


def test_every_family_declares_its_display_demo_curves_and_benchmarks():
    assert zoo.list_families() == ["dhvn", "eshvision", "exp11"]
    colours = {name: zoo.get_family(name).display.color for name in zoo.list_families()}
    assert colours == {"dhvn": "#4C72B0", "eshvision": "#55A868", "exp11": "#DD8452"}
    assert [zoo.get_family(n).display.order for n in zoo.list_families()] == [0, 1, 2]
    for name in zoo.list_families():
        family = zoo.get_family(name)
        assert family.model_class.family == name
        models = [family.demo.model, *family.demo.compare, *family.embedded, *family.budget_curves,
                  family.bench.small[0], family.bench.large[0], family.bench.sweep.model,
                  *(case.model for case in family.bench.overhead)]
        for model in models:
            assert zoo.family_of(model) is family, model
        assert all(0 < b <= 1 for curve in family.budget_curves.values() for b in curve)
        for case in family.bench.overhead:
            router = zoo.routing.routers(zoo.create_model(case.model, **case.kwargs, device="meta"))[0]
            assert set(case.branches) <= set(router.choices)
    assert zoo.get_family("eshvision").bench.key == "esh" and zoo.get_family("exp11").suite == "pydocs"
    with pytest.raises(UnknownFamilyError, match="unknown family 'esh'; the zoo has dhvn, eshvision, exp11"):
        zoo.get_family("esh")


def test_module_flop_rules_come_from_the_families():
    from zoo.families.exp11.gdn import ShortConv, short_conv_flops
    assert ShortConv in zoo.flops.MODULE_FLOPS and zoo.flops.MODULE_FLOPS[ShortConv] is short_conv_flops
    assert zoo.get_family("exp11").module_flops == {ShortConv: short_conv_flops}
    assert dict(zoo.flops.MODULE_FLOPS) == {ShortConv: short_conv_flops}


@pytest.mark.parametrize("model,full", [("dhvn_nano", "both"), ("exp11_dynamic_tiny", "softmax")])
def test_static_reference_is_the_full_path_without_routing(model, full):
    """Built at the routed model's shapes (the overrides its spec carries) with its weights, the
    reference gives the routed model's output with every item on the full choice."""
    kwargs, make = SMALL[model]
    net = zoo.create_model(model, **kwargs).eval()
    name, ref = zoo.static_reference(model, net)
    assert not zoo.routing.routers(ref) and not ref.training
    x = make()
    with torch.no_grad(), zoo.routing.execution(net, "sparse"), zoo.routing.force(net, full):
        expected = net(x)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), expected, atol=1e-6, rtol=0)
    if model == "dhvn_nano":
        assert name == "dhvn_nano_static"
    else:
        assert name == "exp11_dynamic_tiny with plain GDN + attention layers"
        assert len(zoo.routing.routers(net)) == 2  # the routed model is left as it was


def test_esh_static_reference_is_its_soft_form_at_the_routed_shapes_with_its_weights():
    kwargs, make = SMALL["eshvision_xs"]
    net = zoo.create_model("eshvision_xs", **kwargs).eval()
    built = []
    name, ref = zoo.static_reference("eshvision_xs", net, lambda n: built.append(n) or zoo.create_model(n, **kwargs))
    assert name == built[0] == "eshvision_xs_soft"
    assert all(r.spec.mode == "soft" for r in zoo.routing.routers(ref))
    torch.testing.assert_close(ref.stages[0].blocks[0].attn.qkv.weight, net.stages[0].blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match="dhvn_nano_static has no registered static form"):
        zoo.static_reference("dhvn_nano_static", zoo.create_model("dhvn_nano_static"))


@pytest.mark.parametrize("model", list(SMALL))
def test_each_routed_block_runs_one_choice_as_its_routed_mix_does(model):
    """The protocol the router-overhead benchmark times: on the inputs of a real forward, the
    router and the block's routed mix under a forced choice equal that choice run alone, and
    the choice run on some items equals the choice run on all, at those items."""
    kwargs, make = SMALL[model]
    net = zoo.create_model(model, **kwargs).eval()
    x = make()
    for choice in zoo.routing.routers(net)[0].choices:
        with zoo.routing.execution(net, "sparse"), zoo.routing.force(net, choice), torch.no_grad():
            calls = routed_calls(net, x)
            assert [c.router for c in calls] == zoo.routing.routers(net)
            for call in calls:
                assert call.block.choices == call.router.choices
                alone = call.block.run_choice(choice, call.inputs)
                torch.testing.assert_close(call.routed(), alone, atol=1e-5, rtol=0)
                items = torch.rand(call.route.decisions.shape, generator=torch.Generator().manual_seed(0)) < 0.5
                torch.testing.assert_close(call.block.run_choice(choice, call.inputs, items), alone[items],
                                           atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="has no choice 'nope'"):
        calls[0].block.run_choice("nope", calls[0].inputs)


# ------------------------------------------------------------------ a fourth family, from one place

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


@pytest.fixture
def toy_family(monkeypatch):
    """The toy family's one package, as a test: its models and its descriptor, registered (and
    taken out again afterwards; timm and mmengine never see them)."""
    for table in ("_ENTRYPOINTS", "_INFO_CACHE", "_STATIC_FORMS", "_STATIC_PLANS"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    monkeypatch.setattr(bridges, "register_everywhere", lambda fn, timm_cfgs=None: None)
    monkeypatch.setitem(FAMILIES, "toy", None)

    def toy_static(pretrained=False, **kwargs):
        return registry.build_model(ToyLM, ToySpec(vocab_size=32, max_seq_len=16, static=True), pretrained, **kwargs)

    def toy_routed(pretrained=False, **kwargs):
        return registry.build_model(ToyLM, ToySpec(vocab_size=32, max_seq_len=16), pretrained, **kwargs)
    registry.register_model(toy_static)
    registry.register_model(toy_routed, static_form="toy_static", static_plans=("toy_static",))
    del FAMILIES["toy"]
    return register_family(Family(name="toy", model_class=ToyLM, display=Display("Toy", "#000000", 3),
                                  suite="pydocs", budget_curves={"toy_routed": (0.5, 1.0)},
                                  module_flops={Doubling: lambda module, args, kwargs, out: out.numel()}))


def test_a_new_family_is_one_package_that_registers_its_models_and_descriptor(toy_family):
    assert zoo.list_families()[-1] == "toy" and zoo.family_of("toy_routed") is toy_family
    assert zoo.list_models(tags={"family": "toy"}) == ["toy_routed", "toy_static"]
    net = zoo.create_model("toy_routed", vocab_size=48).eval()
    ids = torch.randint(0, 48, (2, 5))
    # its module FLOP rule counts the elementwise branch: head, router and, per token, 8 doublings
    with zoo.routing.force(net, "cheap"):
        assert zoo.flops.count_flops(net, ids) == 10 * (2 * 8 * 48 + 2 * 8 * 2 + 8)
    with zoo.routing.execution(net, "sparse"), zoo.routing.force(net, "dear"):
        (call,) = routed_calls(net, ids)
        torch.testing.assert_close(call.routed(), call.block.run_choice("dear", call.inputs))
        with torch.no_grad():
            expected = net(ids)
    name, ref = zoo.static_reference("toy_routed", net)   # its registered static form, at vocab 48
    assert name == "toy_static" and ref.spec.vocab_size == 48 and not zoo.routing.routers(ref)
    with torch.no_grad():
        torch.testing.assert_close(ref(ids), expected)
