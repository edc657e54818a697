"""Fixed-capacity routing (`RouterSpec.capacity`, `zoo.layers.capacity`, docs/DESIGN.md, "Training
execution and fixed capacity"): exactly k items per row on the expensive path in training, chosen
by top-k, with straight-through weights; at eval a calibrated threshold that reads each item
alone; the spec's checks, old checkpoints, the budget knob and a graph that compiles whole."""
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import dhvn_testutils
import esh_testutils
import exp11_testutils
import zoo
from zoo import routing
from zoo.layers import capacity
from zoo.layers.router import Router
from zoo.specs import RouterSpec

KINDS = {  # (choices, granularity, binary, costs): DHVN-, ESH- and Exp11-like routers
    "sample": (("conv", "transformer", "both"), "sample", False, dict(conv=1.0, transformer=3.0, both=4.0)),
    "patch": (("ssm", "attention"), "patch", True, dict(ssm=5.0, attention=4.0)),
    "token": (("gdn", "softmax"), "token", False, dict(gdn=2.0, softmax=3.0)),
}


def _router(kind, cap, full=None, **spec):
    choices, granularity, binary, costs = KINDS[kind]
    if kind == "patch":
        full = "attention"  # ESH declares its full choice (the one that ponders)
    r = Router(6, choices, granularity, RouterSpec(mode="hard", capacity=cap, zero_init=False, **spec),
               binary=binary, full=full)
    r.set_costs(costs)
    return r


def _feats(kind, b, n, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (b, 6) if kind == "sample" else (b, n, 6)
    return torch.randn(shape, generator=g) * 3


def _cheap(r):
    return r.choices.index(r.cheap_choice)


# ----------------------------------------------------------------------------- the spec


@pytest.mark.parametrize("bad", [
    dict(train_execution="fast"), dict(train_execution=None), dict(capacity=0.0), dict(capacity=1.0),
    dict(capacity=-0.2), dict(capacity=1.5), dict(capacity=float("nan")), dict(capacity=True),
    dict(capacity="0.5"), dict(capacity=0.5, mode="soft"),
])
def test_bad_fields_are_one_line_value_errors(bad):
    with pytest.raises(ValueError) as err:
        RouterSpec(**bad)
    assert "\n" not in str(err.value) and ("train_execution" in str(err.value) or "capacity" in str(err.value))
    with pytest.raises(ValueError):
        zoo.create_model("dhvn_nano", router=bad, img_size=16)


def test_models_take_the_fields_through_the_router_override():
    for name in ("dhvn_nano", "eshvision_xs", "exp11_dynamic_tiny", "exp11_read_tiny"):
        model = zoo.create_model(name, router=dict(train_execution="sparse", capacity=0.5))
        assert routing.training_mode(model) == {"train_execution": "sparse", "capacity": 0.5}
        assert all(r.spec.capacity == 0.5 for r in routing.routers(model))
        assert routing.training_mode(zoo.create_model(name)) == {"train_execution": "dense", "capacity": None}
    assert routing.training_mode(zoo.create_model("dhvn_nano_static")) == {"train_execution": None, "capacity": None}


def test_training_mode_refuses_routers_that_disagree():
    model = torch.nn.Sequential(_router("token", 0.5), _router("token", 0.25))
    with pytest.raises(ValueError, match="different modes") as err:
        routing.training_mode(model)
    assert "\n" not in str(err.value)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.data())  # small integers: ties
def test_cheap_index_follows_the_cheap_choice_rule(costs, data):
    choices = tuple(f"c{i}" for i in range(len(costs)))
    full = data.draw(st.sampled_from((None,) + choices))
    r = Router(3, choices, "token", RouterSpec(), full=full)
    r.set_costs(dict(zip(choices, costs)))
    dearest = full or choices[max(range(len(costs)), key=lambda i: (costs[i], i))]
    others = [i for i, c in enumerate(choices) if c != dearest]
    assert r.cheap_choice == choices[min(others, key=lambda i: costs[i])]


# ----------------------------------------------------------------------------- training: exactly k


@given(st.integers(1, 40))
def test_k_is_rounded_half_up_and_leaves_both_paths_items(n):
    for cap in (0.01, 0.25, 0.5, 0.75, 0.99):
        k = capacity.capacity_k(cap, n)
        assert k == (1 if n == 1 else min(max(math.floor(cap * n + 0.5), 1), n - 1))
        assert 1 <= k <= max(n - 1, 1)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(KINDS)), st.integers(1, 9), st.integers(1, 17), st.floats(0.01, 0.99),
       st.sampled_from([0.0, 0.3]), st.integers(0, 2**16))
def test_training_sends_exactly_k_items_per_row(kind, b, n, cap, explore, seed):
    r = _router(kind, cap, explore=explore).train()
    torch.manual_seed(seed)
    feats = _feats(kind, b, n, seed)
    route = r(feats)
    items = b if kind == "sample" else n
    k = capacity.capacity_k(cap, items)
    expensive = route.decisions != _cheap(r)
    assert (expensive.sum(dim=-1) == k).all()
    rows = () if kind == "sample" else (b,)
    assert route.selected.shape == rows + (k,) and route.selected.dtype == torch.long
    assert (route.selected.diff(dim=-1) > 0).all()  # sorted, distinct
    assert torch.equal(expensive, torch.zeros_like(expensive).scatter(-1, route.selected, True))
    # forward value exactly one-hot at the taken choice
    assert torch.equal(route.weights.detach(), F.one_hot(route.decisions, len(r.choices)).float())
    if explore == 0:
        full = r.logits(feats)
        score = capacity.scores(r, r._gate(feats))
        assert torch.allclose(score, torch.logsumexp(full.masked_fill(
            F.one_hot(torch.tensor(_cheap(r)), len(r.choices)).bool(), float("-inf")), -1) - full[..., _cheap(r)])
        taken = score.gather(-1, route.selected)
        if k < items:  # the taken items are the top-k scores of their row
            assert (taken.min(dim=-1).values >= score.masked_fill(expensive, -float("inf")).max(dim=-1).values).all()
        # a taken item takes its best non-cheap choice
        best = full.masked_fill(F.one_hot(torch.tensor(_cheap(r)), len(r.choices)).bool(), -float("inf")).argmax(-1)
        assert torch.equal(route.decisions.gather(-1, route.selected), best.gather(-1, route.selected))


def test_the_weights_carry_the_gradient_of_the_taken_probability():
    r = _router("sample", 0.5).train()
    feats = _feats("sample", 8, 1, 3).requires_grad_()
    route = r(feats)
    upstream = torch.randn(8, 3)
    (route.weights * upstream).sum().backward()
    grad_st = feats.grad.clone()
    feats.grad = None
    probs = torch.softmax(r.logits(feats), dim=-1)
    (probs * upstream).sum().backward()
    torch.testing.assert_close(grad_st, feats.grad, atol=1e-6, rtol=1e-5)


def test_selected_is_set_only_in_capacity_training():
    r = _router("token", 0.5)
    feats = _feats("token", 2, 6, 0)
    assert r.train()(feats).selected is not None
    assert r.eval()(feats).selected is None
    plain = Router(6, ("gdn", "softmax"), "token", RouterSpec(zero_init=False)).train()
    assert plain(feats).selected is None
    with routing.force(torch.nn.Sequential(r.train()), "softmax"):
        assert r(feats).selected is None and (r(feats).decisions == 1).all()


def test_compute_target_and_explore_keep_k():
    """With a compute target the budget objective still steers the probabilities (it chooses
    among the non-cheap choices too); exploration still leaves exactly k per row."""
    model = zoo.create_model("dhvn_nano", img_size=16, num_classes=5,
                             router=dict(capacity=0.25, explore=0.5, compute_target=0.5)).train()
    for r in routing.routers(model):
        torch.nn.init.normal_(r.net[-1].weight, std=2.0)
    model(dhvn_testutils.images(8))
    for rec in routing.trace(model):
        assert int((rec.decisions != 0).sum()) == capacity.capacity_k(0.25, 8)
    budget = model.aux_losses()["budget"]
    budget.backward()
    assert all(r.net[-1].weight.grad.abs().sum() > 0 for r in routing.routers(model))


# ----------------------------------------------------------------------------- the threshold


def test_the_threshold_is_a_moving_average_of_each_steps_boundary():
    r = _router("token", 0.5).train()
    assert math.isnan(float(r.capacity_threshold))
    expected = None
    for step in range(4):
        feats = _feats("token", 3, 8, step)
        score = capacity.scores(r, r._gate(feats)).detach()
        top = score.topk(5, dim=-1).values  # k = 4 of 8
        boundary = float(((top[:, 3] + top[:, 4]) / 2).mean())
        expected = boundary if expected is None else 0.99 * expected + 0.01 * boundary
        r(feats)
        assert float(r.capacity_threshold) == pytest.approx(expected, abs=1e-5)


def test_eval_decides_score_above_threshold_and_the_cost_shift_moves_it():
    r = _router("sample", 0.5).eval()
    feats = _feats("sample", 64, 1, 4)
    assert torch.equal(r(feats).decisions != 0, capacity.scores(r, r._gate(feats)) > 0)  # uncalibrated: 0
    r.capacity_threshold.fill_(0.7)
    score = capacity.scores(r, r._gate(feats))
    route = r(feats)
    assert torch.equal(route.decisions != _cheap(r), score > 0.7)
    assert route.selected is None and not route.carries_gradient
    shares = []
    for shift in (-4.0, 0.0, 4.0):  # dearer choices cost more: a larger shift sends fewer items
        r.cost_shift = shift
        shares.append(float((r(feats).decisions != 0).float().mean()))
    r.cost_shift = 0.0
    assert shares[0] > shares[1] > shares[2]


def test_the_flops_budget_moves_a_capacity_model_over_its_whole_range():
    model = exp11_testutils.make(router=dict(zero_init=False, capacity=0.5)).train()
    x = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for _ in range(3):
            model(x)  # calibrate the thresholds
    model.eval()
    full = zoo.flops.dense_flops(model, x)
    executed = []
    for shift in (-2.0, 0.0, 2.0):  # a fitted budget is such a shift (`zoo.budget.BudgetFit`)
        fit = zoo.budget.BudgetFit(target=0.5, shift=shift, fraction=0.5, reachable=(0.0, 1.0), full_flops=full)
        with routing.flops_budget(model, fit), routing.execution(model, "sparse"):
            executed.append(zoo.flops.count_flops(model, x) / full)
    assert executed[0] > executed[1] > executed[2]
    # the range's ends are every router on its cheapest choice and every one on its dearest, even
    # with thresholds far out in the scores' range: the knob's extreme shift moves every score past
    # and gates sharp enough that logits reach the clamp
    for r, t in zip(routing.routers(model), (-20.0, 20.0)):
        r.capacity_threshold.fill_(t)
        with torch.no_grad():
            r.net[-1].weight.mul_(100.0)
    lo, hi = routing.budget_range(model, x)
    for choice, end in (("gdn", lo), ("softmax", hi)):
        with routing.force(model, choice), routing.execution(model, "sparse"):
            assert end == pytest.approx(zoo.flops.count_flops(model, x) / full)


def test_an_old_state_dict_without_the_threshold_still_loads_and_a_new_one_carries_it():
    old = exp11_testutils.make()
    new = exp11_testutils.make(router=dict(zero_init=False, capacity=0.5))
    new.load_state_dict(old.state_dict())  # strict: the missing threshold is kept as it is
    assert all(math.isnan(float(r.capacity_threshold)) for r in routing.routers(new))
    new.train()
    new(torch.randint(0, 64, (2, 20)))
    thresholds = [float(r.capacity_threshold) for r in routing.routers(new)]
    assert all(math.isfinite(t) for t in thresholds)
    fresh = exp11_testutils.make(router=dict(zero_init=False, capacity=0.5))
    fresh.load_state_dict(new.state_dict())
    assert [float(r.capacity_threshold) for r in routing.routers(fresh)] == thresholds
    x = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(1))
    new.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), new(x), atol=0, rtol=0)
    assert all(k.endswith("capacity_threshold") for k in set(new.state_dict()) - set(old.state_dict()))


# ----------------------------------------------------------------------------- eval: each item alone


def _calibrated(model, x, steps=2):
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def _splitting_thresholds(model, x):
    """Each capacity router's threshold, router after router (each one's decisions change the
    next one's input), midway between its least and greatest eval score on x, so that eval
    decisions split the batch. (A few calibration steps are not enough for DHVN: its BatchNorm's
    running statistics, which eval uses, are still far from the batch statistics of training.)"""
    with torch.no_grad():
        for r in routing.routers(model):
            model.eval()(x)
            score = r._graph.capacity_scores  # what `capacity.decide` left for `capacity_agreement`
            r.capacity_threshold.fill_(float(score.min() + score.max()) / 2)
    return model


@functools.lru_cache(maxsize=None)
def _vision_models():
    """Capacity models whose eval decisions are mixed within a batch."""
    dhvn = _splitting_thresholds(dhvn_testutils.make(router=dict(capacity=0.5)), dhvn_testutils.images(8))
    esh = _splitting_thresholds(esh_testutils.mix_routers(esh_testutils.tiny(router=dict(capacity=0.5))),
                             esh_testutils.images(4))
    return ((dhvn, dhvn_testutils.images), (esh, esh_testutils.images))


def test_the_batch_mate_models_decide_mixed():
    for model, images in _vision_models():
        with torch.no_grad():
            model(images(8, seed=5))
        assert all(0 < int((rec.decisions != 0).sum()) < rec.decisions.numel() for rec in routing.trace(model))


@settings(max_examples=5, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**16))
def test_eval_decisions_do_not_depend_on_batch_mates(b, seed):
    """DHVN (per sample) and ESH-Vision (per patch): changing the other images of a batch leaves
    image 0's decisions as they were."""
    for model, images in _vision_models():
        x = images(b, seed=seed)
        y = torch.cat([x[:1], images(b - 1, seed=seed + 1)])
        with torch.no_grad():
            model(x)
            dx = [rec.decisions[:1].clone() for rec in routing.trace(model)]
            model(y)
            dy = [rec.decisions[:1].clone() for rec in routing.trace(model)]
        for a, c in zip(dx, dy):
            assert torch.equal(a, c)


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_eval_decisions_do_not_depend_on_future_tokens(data):
    model = _calibrated(exp11_testutils.make(router=dict(zero_init=False, capacity=0.5)),
                        torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(9)))
    exp11_testutils.check_causal(model, data, "sparse")


@pytest.mark.parametrize("family", ["dhvn", "eshvision", "exp11"])
def test_sparse_equals_dense_at_eval_with_capacity(family):
    if family == "dhvn":
        model = _calibrated(dhvn_testutils.make(router=dict(capacity=0.5)), dhvn_testutils.images(6))
        dhvn_testutils.assert_sparse_equals_dense(model, dhvn_testutils.images(7, seed=3))
        return
    if family == "eshvision":
        model = esh_testutils.mix_routers(esh_testutils.tiny(router=dict(capacity=0.5)))
        x = esh_testutils.images(5, seed=2)
    else:
        model = exp11_testutils.make(router=dict(zero_init=False, capacity=0.5))
        x = torch.randint(0, 64, (3, 33), generator=torch.Generator().manual_seed(2))
    _calibrated(model, x)
    sparse, dense = exp11_testutils.sparse_and_dense(model, x)  # any model(x); checks the decisions agree
    assert any(0 < int(rec.decisions.sum()) < rec.decisions.numel() for rec in routing.trace(model))
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


def test_esh_ponders_only_patches_the_capacity_sent_to_attention():
    model = esh_testutils.mix_routers(esh_testutils.tiny(router=dict(capacity=0.25))).train()
    out = model.forward_dict(esh_testutils.images(4))
    for steps, rec in zip(out["ponder_steps"], routing.trace(model)):
        assert not ((steps > 0) & (rec.decisions == 0)).any()
        assert ((rec.decisions == 1).sum(dim=1) == capacity.capacity_k(0.25, rec.decisions.shape[1])).all()


# ----------------------------------------------------------------------------- agreement, compile


def test_capacity_agreement_compares_the_threshold_with_the_top_k():
    r = _router("token", 0.25)
    feats = _feats("token", 4, 12, 5)
    model = torch.nn.Sequential(r)
    score = capacity.scores(r, r._gate(feats)).detach()
    r.capacity_threshold.fill_(float(score.median()))
    r.train()
    report = routing.capacity_agreement(model, feats)[""]
    assert r.training  # restored
    above = score > float(score.median())
    topk = torch.zeros_like(above).scatter(-1, score.topk(3, dim=-1).indices, True)
    assert report["above"] == pytest.approx(float(above.float().mean()))
    assert report["disagree"] == pytest.approx(float((above != topk).float().mean()))
    assert report["capacity"] == 0.25 and report["threshold"] == pytest.approx(float(score.median()))
    with pytest.raises(ValueError, match="no fixed-capacity routers"):
        routing.capacity_agreement(torch.nn.Sequential(Router(6, ("a", "b"), "token")), feats)


def test_training_on_one_sequence_calibrates_the_threshold_to_its_top_k():
    r = _router("token", 0.5).train()
    feats = _feats("token", 1, 16, 6)
    with torch.no_grad():
        for _ in range(3):  # the average of one boundary is that boundary
            r(feats)
    assert routing.capacity_agreement(torch.nn.Sequential(r), feats)[""]["disagree"] == 0.0


@pytest.mark.parametrize("explore", [0.0, 0.2])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_capacity_router_compiles_whole_in_training(kind, explore):
    """No host sync and no data-dependent shape: the router's training forward is one graph
    (backend="eager": traced, not code-generated), and computes what eager execution does."""
    routers = []
    for _ in range(2):
        torch.manual_seed(11)
        routers.append(_router(kind, 0.5, explore=explore).train())
    feats = _feats(kind, 3, 7, 8)

    def forward(r, x):
        route = r(x)
        return route.decisions, route.weights, route.selected

    compiled = torch.compile(forward, fullgraph=True, backend="eager")
    torch.manual_seed(12)  # the same exploration draws
    got = compiled(routers[0], feats)
    torch.manual_seed(12)
    want = forward(routers[1], feats)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert float(routers[0].capacity_threshold) == float(routers[1].capacity_threshold)
    routers[0].eval()
    torch.compile(lambda x: routers[0](x).decisions, fullgraph=True, backend="eager")(feats)
