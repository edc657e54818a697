"""Compute-aware routing: the costs routers declare, the budget objective, the inference knob."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import zoo
import zoo.flops as zf
from zoo import routing
from zoo.ops.gating import budget_loss, expected_compute_share


# ----------------------------------------------------------------------------- declared costs

def _count_forced(model, x, choice):
    with routing.force(model, choice):
        return zf.count_flops(model, x)


def test_dhvn_costs_are_what_the_counter_counts():
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28).eval()
    x = torch.randn(4, 1, 28, 28)
    flops = {c: _count_forced(model, x, c) / 4 for c in ("conv", "transformer", "both")}
    rs = routing.routers(model)
    # what every router adds when it takes "both" instead of "conv" (and instead of "transformer")
    assert flops["both"] - flops["conv"] == pytest.approx(sum(float(r.costs[1]) for r in rs))
    assert flops["both"] - flops["transformer"] == pytest.approx(sum(float(r.costs[0]) for r in rs))
    assert all(float(r.costs[2]) == float(r.costs[0] + r.costs[1]) for r in rs)
    assert {(r.cheap_choice, r.full_choice) for r in rs} == {("conv", "both")}


def test_esh_costs_are_what_the_counter_counts_without_pondering():
    model = zoo.create_model("eshvision_xs", act=dict(enabled=False)).eval()
    x = torch.randn(4, 1, 28, 28)
    diff = (_count_forced(model, x, "ssm") - _count_forced(model, x, "attention")) / 4
    patches = {"stages.0": 49, "stages.1": 16}
    predicted = sum((float(r.costs[0]) - float(r.costs[1])) * patches[r.layer[:8]] for r in routing.routers(model))
    assert diff == pytest.approx(predicted, rel=1e-6)


def test_esh_costs_are_what_the_counter_counts_with_pondering():
    """The declared choice costs plus the declared ponder costs of the steps ACT took are the
    counted FLOPs, on the shipped weights (whose halting units ponder on real digits). The
    attention choice holds no ponder step: at 49 patches attention alone is the cheaper choice."""
    from harness.suites.mnist5k import Mnist5k
    model = zoo.create_model("eshvision_xs.mnist5k", pretrained=True).eval()
    x = Mnist5k("test", limit=32).images
    ssm = _count_forced(model, x, "ssm")
    with routing.force(model, "attention"):
        attention = zf.count_flops(model, x)
        steps = model.forward_dict(x)["ponder_steps"]
    blocks = [m for m in model.modules() if type(m).__name__ == "ESHBlock"]
    assert sum(int(s.sum()) for s in steps) > 0, "the shipped weights should ponder on some digits"
    predicted = sum((b.choice_costs(s.shape[1])["attention"] - b.choice_costs(s.shape[1])["ssm"]) * s.numel()
                    + b.ponder_flops(s) for b, s in zip(blocks, steps))
    assert attention - ssm == pytest.approx(predicted, rel=1e-6)
    assert all(float(r.costs[1]) < float(r.costs[0]) for r in routing.routers(model))


@pytest.mark.parametrize("mix", ["add", "replace", "hide"])
def test_exp11_costs_are_what_the_counter_counts(mix):
    T = 64
    model = zoo.create_model("exp11_dynamic_tiny", mix=mix, max_seq_len=T).eval()
    x = torch.randint(0, 256, (2, T))
    diff = (_count_forced(model, x, "softmax") - _count_forced(model, x, "gdn")) / x.numel()
    predicted = sum(float(r.costs[1] - r.costs[0]) for r in routing.routers(model))
    assert diff == pytest.approx(predicted, rel=1e-6)
    full = {r.full_choice for r in routing.routers(model)}
    assert full == ({"gdn"} if mix == "hide" else {"softmax"})  # at T=64 a GDN token is dearer


def test_set_costs_refuses_bad_tables():
    r = routing.Router(4, ("a", "b"), "sample")
    with pytest.raises(ValueError, match="exactly"):
        r.set_costs(dict(a=1.0))
    with pytest.raises(ValueError, match="finite"):
        r.set_costs(dict(a=1.0, b=float("nan")))
    with pytest.raises(ValueError, match="finite"):
        r.set_costs(dict(a=0.0, b=0.0))


# ----------------------------------------------------------------------------- the objective

@given(st.integers(1, 6), st.integers(2, 4), st.integers(0, 2**16), st.floats(0.05, 1.0))
@settings(max_examples=40, deadline=None)
def test_budget_gradient_moves_routing_towards_the_budget(n, c, seed, target):
    """One gradient step on the budget loss lowers the expected compute when it is above the
    target, and raises it when it is below (and does nothing at the target)."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * 2).requires_grad_()
    costs = torch.rand(c, generator=g) + 0.05
    share = lambda lg: expected_compute_share([torch.softmax(lg, -1)], [costs])  # noqa: E731
    before = share(logits)
    if abs(float(before) - target) < 1e-3 or float(costs.max() - costs.min()) < 1e-3:
        return  # at the target or nothing to trade: no direction to test
    budget_loss(before, target).backward()
    g = logits.grad
    # the share moves by about 0.05 * |d share / d logits| along a unit step; skip saturated
    # draws where that is below what float32 resolves
    if float(g.norm()) / (2 * abs(float(before) - target)) < 1e-3:
        return
    with torch.no_grad():
        after = share(logits - 0.05 * g / g.norm())
    if before > target:
        assert after < before
    else:
        assert after > before


def test_budget_share_is_one_at_the_dearest_choice_and_weights_routers_by_their_cost():
    costs = [torch.tensor([1.0, 4.0]), torch.tensor([1.0, 1.0, 9.0])]
    dearest = [torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0]])]
    assert float(expected_compute_share(dearest, costs)) == pytest.approx(1.0)
    cheapest = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])]
    assert float(expected_compute_share(cheapest, costs)) == pytest.approx(2.0 / 13.0)


def test_budget_objective_only_for_routed_models_with_a_target():
    x = torch.randn(2, 1, 28, 28)
    for name, expected in (("dhvn_nano", True), ("dhvn_nano_static", False), ("eshvision_xs", True),
                           ("eshvision_xs_soft", False)):
        model = zoo.create_model(name, num_classes=10, in_chans=1, img_size=28).train()
        model(x)
        assert ("budget" in model.aux_losses()) is expected, name
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28, router=dict(compute_target=None)).train()
    model(x)
    assert "budget" not in model.aux_losses()
    with pytest.raises(ValueError, match="budget"):
        zoo.create_model("dhvn_nano", router=dict(compute_target=1.5))


# ----------------------------------------------------------------------------- the knob

def _mixed_dhvn(seed=0):
    torch.manual_seed(seed)
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=16).eval()
    for r in routing.routers(model):
        torch.nn.init.normal_(r.net[-1].weight, std=3.0)
        torch.nn.init.normal_(r.net[-1].bias, std=0.5)
    return model


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9, 1.0])
def test_budget_knob_hits_its_target_on_the_calibration_set(fraction):
    model = _mixed_dhvn()
    calib = torch.randn(96, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with routing.flops_budget(model, fraction, calib) as fit:
        report = zf.flops_report(model, calib)
    achieved = report["executed"] / report["dense"]
    assert abs(achieved - fraction) <= 0.05
    assert achieved == pytest.approx(fit.fraction)
    assert fit.reachable[0] < 0.35 and fit.reachable[1] == pytest.approx(1.0)
    assert all(r.cost_shift == 0.0 for r in routing.routers(model))  # restored on exit


def test_budget_knob_is_deterministic_per_item_and_leaves_training_alone():
    model = _mixed_dhvn()
    calib = torch.randn(64, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    fit = routing.fit_budget(model, 0.5, calib)
    x = calib[:5]
    with torch.no_grad(), routing.flops_budget(model, fit):
        a, b = model(x), model(x)
        alone = model(x[2:3])
        decisions = [r.decisions.clone() for r in routing.trace(model)]
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(alone, a[2:3], atol=1e-5, rtol=0)
    with torch.no_grad():
        model(x[2:3])
        plain = [r.decisions for r in routing.trace(model)]
    assert any(not torch.equal(d, p) for d, p in zip(decisions, plain))  # the knob moved something
    model.train()
    with routing.flops_budget(model, fit):
        model(x)
        trained = [r.last.decisions for r in routing.routers(model)]
    model.train()
    model(x)  # training decisions do not depend on the knob: hard routing is noise-free
    assert all(torch.equal(t, r.last.decisions) for t, r in zip(trained, routing.routers(model)))


def test_budget_knob_refuses_what_it_cannot_do():
    calib = torch.randn(16, 1, 16, 16)
    model = _mixed_dhvn()
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            routing.fit_budget(model, bad, calib)
    with pytest.raises(ValueError, match="out of reach"):
        routing.fit_budget(model, 0.05, calib)   # below every sample on conv
    static = zoo.create_model("dhvn_nano_static", num_classes=10, in_chans=1, img_size=16).eval()
    with pytest.raises(ValueError, match="no routers"):
        routing.fit_budget(static, 0.5, calib)
    soft = zoo.create_model("eshvision_xs_soft", img_size=16, embed_dim=16, num_heads=(2, 2)).eval()
    with pytest.raises(ValueError, match="softly"):
        routing.fit_budget(soft, 0.9, torch.randn(4, 1, 16, 16))
    with pytest.raises(ValueError, match="calibration"):
        with routing.flops_budget(model, 0.5):
            pass


def test_budget_knob_on_tokens_keeps_causality():
    torch.manual_seed(0)
    model = zoo.create_model("exp11_dynamic_tiny", max_seq_len=48).eval()
    for r in routing.routers(model):
        torch.nn.init.normal_(r.net[-1].weight, std=3.0)
    calib = torch.randint(0, 256, (4, 48), generator=torch.Generator().manual_seed(3))
    lo, hi = routing.budget_range(model, calib)
    with torch.no_grad(), routing.flops_budget(model, (lo + hi) / 2, calib):
        full = model(calib)
        prefix = model(calib[:, :30])
    torch.testing.assert_close(prefix, full[:, :30], atol=1e-4, rtol=0)


def test_a_model_without_routers_is_refused():
    with pytest.raises(ValueError, match="no routers"):
        with routing.flops_budget(torch.nn.Linear(2, 2), 0.5, torch.randn(1, 2)):
            pass


def test_a_training_budget_below_the_reachable_floor_is_refused_naming_the_floor():
    from zoo.layers.router import budget_floor
    floor = budget_floor(routing.routers(zoo.create_model("eshvision_xs")))
    assert 0.3 < floor < 0.6  # at 49 patches attention is the cheaper choice, at about half the SSM's cost
    with pytest.raises(ValueError, match=rf"below what ESHVision can reach.*{floor:.3f}"):
        zoo.create_model("eshvision_xs", router=dict(compute_target=floor - 0.01))
    zoo.create_model("eshvision_xs", router=dict(compute_target=round(floor + 0.01, 3)))  # reachable: builds
    with pytest.raises(ValueError, match="below what DHVN can reach"):
        zoo.create_model("dhvn_nano", router=dict(compute_target=0.01))
