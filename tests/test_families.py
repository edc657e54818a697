"""Each family owns itself (docs/DESIGN.md, "Families"): its descriptor, its static reference and
the routed-block protocol, and a new family registered from one place."""
import pytest
import timm
import torch

import zoo
from toy_family import register_toy
from zoo.layers.family import UnknownFamilyError
from zoo.layers.routed_block import routed_calls

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
        assert all(timm.is_model(peer) for peer in family.bench.peers)
        for case in family.bench.overhead:
            router = zoo.routing.routers(zoo.create_model(case.model, **case.kwargs, device="meta"))[0]
            assert set(case.branches) <= set(router.choices)
    assert zoo.get_family("eshvision").bench.key == "esh" and zoo.get_family("exp11").suite == "pydocs"
    assert zoo.get_family("dhvn").bench.peers[0] == "resnet10t" and not zoo.get_family("exp11").bench.peers
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

@pytest.fixture
def toy_family(monkeypatch):
    """The toy family (tests/toy_family.py), registered for one test."""
    return register_toy(monkeypatch)


def test_a_new_family_is_one_package_that_registers_its_models_and_descriptor(toy_family):
    assert zoo.list_families()[-1] == "toy" and zoo.family_of("toy_routed") is toy_family
    assert zoo.list_models(tags={"family": "toy"}) == ["toy_routed", "toy_static", "toy_wide", "toy_wide_static"]
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
