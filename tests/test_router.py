"""Invariants of the one router: straight-through from one draw, deterministic eval, tau checks."""
import pytest
import torch
from hypothesis import given, strategies as st

from zoo import routing
from zoo.layers.router import Router
from zoo.ops.dispatch import pack_rows, unpack_rows
from zoo.ops.gating import gumbel_straight_through, load_balance_loss
from zoo.specs import RouterSpec


@given(st.integers(1, 6), st.integers(2, 4), st.floats(0.1, 10.0), st.integers(0, 2**16))
def test_gumbel_hard_is_one_hot_and_gradient_is_soft_from_same_draw(b, c, tau, seed):
    logits = (torch.randn(b, c, generator=torch.Generator().manual_seed(seed)) * 5).requires_grad_()
    g = torch.Generator().manual_seed(seed + 1)
    weights, decisions, soft = gumbel_straight_through(logits, tau, generator=g)
    # forward value is the hard one-hot; soft sums to one
    assert torch.equal(weights.detach(), torch.nn.functional.one_hot(decisions, c).float())
    assert torch.allclose(soft.sum(-1), torch.ones(b), atol=1e-6)
    assert torch.equal(decisions, soft.argmax(-1))  # hard comes from *this* soft draw
    # the gradient is the soft sample's gradient (same draw, replayed with the same generator)
    upstream = torch.randn(b, c)
    (weights * upstream).sum().backward()
    grad_st = logits.grad.clone()
    logits.grad = None
    _, _, soft2 = gumbel_straight_through(logits, tau, generator=torch.Generator().manual_seed(seed + 1))
    (soft2 * upstream).sum().backward()
    assert torch.allclose(grad_st, logits.grad, atol=1e-6)


@given(st.floats(0.1, 10.0))
def test_gumbel_is_finite_under_bf16_and_extreme_logits(tau):
    logits = torch.tensor([[1e4, -1e4, 0.0], [float("1e30"), 0.0, -1e30]]).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w, d, soft = gumbel_straight_through(logits, tau)
    assert torch.isfinite(w).all() and torch.isfinite(soft).all()
    assert w.dtype == torch.float32


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_tau_must_be_positive(tau):
    r = Router(4, ("a", "b"), "sample")
    with pytest.raises(ValueError, match="tau"):
        r.set_tau(tau)
    with pytest.raises(ValueError, match="tau"):
        routing.set_tau(torch.nn.Sequential(r), tau)
    with pytest.raises(ValueError, match="tau"):
        RouterSpec(tau=tau)
    with pytest.raises(ValueError, match="tau"):
        gumbel_straight_through(torch.zeros(2, 2), tau)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_a_state_dict_with_a_bad_tau_is_refused_by_every_loader(tau):
    from mmengine.runner.checkpoint import load_state_dict as mmengine_load
    model = torch.nn.Sequential(Router(4, ("a", "b"), "sample"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.tau"] = torch.tensor(tau)
    for load in (lambda: model.load_state_dict(state), lambda: model.load_state_dict(state, strict=False),
                 lambda: mmengine_load(model, state, strict=False)):   # mmengine's only warns on errors
        with pytest.raises(ValueError, match="the state dict's 0.tau is"):
            load()
        assert float(model[0].tau) == 1.0  # left as it was
    state["0.tau"] = torch.tensor(0.5)
    model.load_state_dict(state)
    assert float(model[0].tau) == 0.5


@given(st.integers(1, 8), st.integers(0, 1000))
def test_eval_decisions_are_deterministic_and_per_item(b, seed):
    torch.manual_seed(seed)
    r = Router(6, ("x", "y", "z"), "token", RouterSpec(zero_init=False)).eval()
    feats = torch.randn(b, 5, 6)
    d1 = r(feats).decisions
    d2 = r(feats).decisions
    assert torch.equal(d1, d2)
    perm = torch.randperm(b)
    assert torch.equal(r(feats[perm]).decisions, d1[perm])
    assert torch.equal(r(feats[:1]).decisions, d1[:1])
    rec = routing.trace(torch.nn.Sequential(r))[0]
    assert rec.granularity == "token" and rec.choices == ("x", "y", "z") and rec["decisions"].shape == (1, 5)


def test_binary_router_is_alpha_threshold():
    r = Router(3, ("ssm", "attention"), "patch", RouterSpec(mode="hard", zero_init=False)).eval()
    x = torch.randn(2, 7, 3)
    route = r(x)
    alpha = route.probs[..., 1]
    assert torch.equal(route.decisions, (alpha > 0.5).long())


def test_force_and_execution_restore_state():
    m = torch.nn.Sequential(Router(4, ("conv", "trans", "both"), "sample"))
    with routing.force(m, "both"), routing.execution(m, "dense"):
        route = m[0](torch.randn(3, 4))
        assert (route.decisions == 2).all() and route.sparse is False
    assert m[0].forced is None and m[0].execution is None
    with pytest.raises(ValueError, match="choices"):
        with routing.force(m, "nope"):
            pass
    with pytest.raises(ValueError, match="execution mode"):
        with routing.execution(m, "fast"):
            pass


def test_load_balance_minimal_at_uniform_and_follows_routes_taken():
    probs = torch.full((100, 2), 0.5)
    uniform = load_balance_loss(probs, torch.arange(100) % 2)
    collapsed = load_balance_loss(torch.tensor([[0.9, 0.1]]).repeat(100, 1), torch.zeros(100, dtype=torch.long))
    assert uniform == pytest.approx(1.0) and collapsed > uniform
    # same probabilities, different routes actually taken -> different f, different loss
    p = torch.tensor([[0.7, 0.3]]).repeat(100, 1)
    a = load_balance_loss(p, torch.zeros(100, dtype=torch.long))
    b = load_balance_loss(p, torch.ones(100, dtype=torch.long))
    assert a == pytest.approx(1.4) and b == pytest.approx(0.6)


@given(st.integers(1, 4), st.integers(1, 9), st.integers(0, 999))
def test_pack_unpack_round_trip_keeps_order(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, n, generator=g) < 0.5
    x = torch.randn(b, n, 3, generator=g)
    packed = pack_rows(mask)
    rows = torch.take_along_dim(x, packed.index.unsqueeze(-1), dim=1)
    for i in range(b):
        assert torch.equal(rows[i][packed.valid[i]], x[i][mask[i]])
    out = unpack_rows(torch.zeros_like(x), packed, rows)
    assert torch.equal(out, x * mask.unsqueeze(-1))


@given(st.floats(0.05, 0.6), st.integers(0, 2**16))
def test_exploration_takes_random_choices_in_training_only(rate, seed):
    torch.manual_seed(seed)
    r = Router(6, ("a", "b", "c"), "token", RouterSpec(mode="hard", explore=rate, zero_init=False))
    feats = torch.randn(4, 500, 6)
    greedy = r.eval()(feats).decisions
    r.train()
    route = r(feats)
    flipped = float((route.decisions != greedy).float().mean())
    # an explored item keeps its choice with probability 1/3: expected flip share 2/3 * rate
    assert abs(flipped - 2 / 3 * rate) < 0.06
    # the weights are the taken choice in the forward pass, the probabilities' in the backward
    assert torch.equal(route.weights.detach(), torch.nn.functional.one_hot(route.decisions, 3).float())
    assert torch.equal(r.eval()(feats).decisions, greedy)   # never at eval


def test_exploration_rate_is_checked():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="explore"):
            RouterSpec(explore=bad)


def _legacy_binary_route(r, feats, generator_seed=None):
    """The binary router before issue 12: logits [0, z] and a 2-wide softmax (and Gumbel on them)."""
    logits = r.logits(feats)
    if r.cost_shift and not r.training:
        logits = logits - r.cost_shift * (r.costs / r.costs.max())
    tau = float(r.tau)
    probs = torch.softmax(logits / tau, dim=-1)
    if r.spec.mode == "soft":
        return probs.argmax(-1), probs, probs
    if not r.training:
        return logits.argmax(-1), torch.nn.functional.one_hot(logits.argmax(-1), 2).float(), probs
    if r.spec.mode == "gumbel":
        torch.manual_seed(generator_seed)
        weights, decisions, _ = gumbel_straight_through(logits, tau, r.spec.logit_clamp)
        return decisions, weights, probs
    from zoo.ops.gating import straight_through
    weights, decisions = straight_through(probs)
    return decisions, weights, probs


@pytest.mark.parametrize("mode,train,shift", [("hard", False, 0.0), ("hard", False, 0.7), ("hard", True, 0.0),
                                              ("gumbel", True, 0.0), ("soft", True, 0.0), ("soft", False, 0.0)])
@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_binary_sigmoid_router_equals_the_softmax_over_zero_and_z(mode, train, shift, tau):
    # [1 - sigmoid, sigmoid] in place of softmax(cat([0, z])): same probabilities, decisions, forward
    # weights and gradients (straight-through and Gumbel from the same random stream)
    torch.manual_seed(0)
    r = Router(5, ("ssm", "attention"), "patch", RouterSpec(mode=mode, hidden=8, zero_init=False, tau=tau),
               binary=True).train(train)
    r.net[-1].weight.data.mul_(20)   # logits reach the clamp, ties and saturated probabilities
    r.set_costs(dict(ssm=1.0, attention=3.0))
    r.cost_shift = shift
    feats = torch.randn(3, 40, 5)
    feats[0, 0] = 0.0
    upstream = torch.randn(3, 40, 2)
    torch.manual_seed(7)
    route = r(feats)
    got = [route.decisions, route.weights, route.probs]
    grads_new = torch.autograd.grad(((route.weights + route.probs) * upstream).sum(), list(r.parameters()),
                                    allow_unused=True) if train else None
    want = _legacy_binary_route(r, feats, generator_seed=7)
    assert torch.equal(got[0], want[0])
    ulp2 = 2 * torch.finfo(torch.float32).eps   # two roundings apart near 1.0 (the shifted logits)
    torch.testing.assert_close(got[1], want[1], atol=ulp2, rtol=0)
    torch.testing.assert_close(got[2], want[2], atol=ulp2, rtol=0)
    if train:
        grads_old = torch.autograd.grad(((want[1] + want[2]) * upstream).sum(), list(r.parameters()),
                                        allow_unused=True)
        for gn, go in zip(grads_new, grads_old):   # sums over 120 items: compared at the tensor's scale
            assert (gn - go).abs().max() <= 1e-5 * go.abs().max()


@pytest.mark.parametrize("binary", [False, True])
def test_eval_probabilities_are_built_when_read_and_equal_the_eager_ones(binary):
    """At eval without a graph the probabilities wait to be read; read, they are exactly the
    softmax the router computes in training mode, and a temperature changed after the forward
    does not change them."""
    import copy
    import pickle

    from zoo.layers.router import EvalProbs

    torch.manual_seed(0)
    choices = ("a", "b") if binary else ("a", "b", "c")
    r = Router(6, choices, "patch", RouterSpec(mode="hard", zero_init=False), binary=binary)
    r.set_tau(0.37)
    feats = torch.randn(4, 9, 6) * 3
    with torch.no_grad():
        r.eval()
        route = r(feats)
        assert isinstance(route._probs, EvalProbs) and route._probs is r.last._probs
        record = copy.deepcopy(r.last)          # a model copy (EMA) carries the pending record
        pickle.loads(pickle.dumps(r))
        r.set_tau(2.0)                           # a schedule moves on before anyone reads them
        lazy = route.probs
        r.set_tau(0.37)
        r.train()
        eager = r(feats).probs
    assert torch.equal(lazy, eager)
    assert torch.equal(record.probs, eager)
    assert route.probs is lazy                   # computed once
    assert torch.equal(lazy.argmax(-1), route.decisions)
    # with a graph (eval under autograd) they are computed at once, as in training
    r.eval()
    assert isinstance(r(feats)._probs, torch.Tensor)
