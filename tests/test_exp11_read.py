"""Exp11's read layer (`ReadBlock`, layer kind "read"): a token reads the sequence by causal softmax
attention or skips (mixer output 0), as its layer's own router decides (docs/DESIGN.md, "Static
plans"). Its static plans and their forced equivalence are in tests/test_static_plans.py."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from exp11_testutils import check_causal, decisions, make, sparse_and_dense

import zoo
import zoo.flops as zf
from zoo import routing
from zoo.families.exp11.blocks import ReadBlock
from zoo.layers.routed_block import routed_calls
from zoo.layers.router import budget_floor
from zoo.ops.gating import expected_compute_share

READS = ["exp11_read_tiny", "exp11_read2_tiny"]


def _policy(rows):
    """A `zoo.routing.force` policy: the tokens at rows[b] of sequence b read, the others skip."""
    def policy(router, shape):
        d = torch.zeros(tuple(shape), dtype=torch.long)
        for b, positions in enumerate(rows):
            d[b, list(positions)] = router.choices.index("softmax")
        return d
    return policy


def _read_blocks(model):
    return [m for m in model.layers if isinstance(m, ReadBlock)]


# ----------------------------------------------------------------------------- what it is

def test_read_models_route_their_read_layers_with_their_own_routers():
    for name, layers in (("exp11_read_tiny", ["layers.3"]), ("exp11_read2_tiny", ["layers.2", "layers.3"])):
        assert zoo.model_info(name)["routing"] == "token"
        model = make(name).eval()
        with torch.no_grad():
            model(torch.randint(0, 64, (2, 9)))
        recs = routing.trace(model)
        assert [r.layer for r in recs] == layers
        assert all(r.choices == ("skip", "softmax") and r.decisions.shape == (2, 9) for r in recs)
        assert {(r.cheap_choice, r.full_choice) for r in routing.routers(model)} == {("skip", "softmax")}
        assert not hasattr(model, "routers") and not hasattr(model, "router_norm")


def test_each_read_router_reads_its_own_layers_normalised_input():
    """Not layer 0's output, as the seed's routers do: the h its own attention sees."""
    model = make("exp11_read2_tiny").eval()
    seen = {}
    hooks = [b.norm1.register_forward_hook(lambda m, a, out, b=b: seen.__setitem__(b, out)) for b in _read_blocks(model)]
    calls = routed_calls(model, torch.randint(0, 64, (2, 17)))
    for h in hooks:
        h.remove()
    assert [c.block for c in calls] == _read_blocks(model) and [c.router for c in calls] == routing.routers(model)
    for call in calls:
        assert call.router is call.block.router
        assert call.features is call.inputs[0] and call.features is seen[call.block]


def test_the_registered_compute_target_asks_for_a_quarter_of_the_tokens_to_read():
    """compute_target is a share of the full routed compute: at the registered T = 256, a quarter
    of the tokens reading (the rest paying their keys/values) spends 0.5 of it."""
    for name in READS:
        model = zoo.create_model(name)
        routers = routing.routers(model)
        assert model.spec.router.compute_target == 0.5
        probs = [torch.tensor([[0.75, 0.25]]) for _ in routers]
        assert float(expected_compute_share(probs, [r.costs for r in routers])) == pytest.approx(0.5, abs=0.002)
        assert budget_floor(routers) == pytest.approx(1 / 3, abs=0.001)  # every token skipping


# ----------------------------------------------------------------------------- execution

@pytest.mark.parametrize("name", READS)
@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 48))
def test_sparse_equals_dense_on_mixed_routes(name, seed, B, T):
    model = make(name, seed=seed % 5)
    x = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(seed))
    sparse, dense = sparse_and_dense(model, x)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", READS)
@pytest.mark.parametrize("rows", [((),) * 3, ((0, 5, 19),) * 3, ((), (3, 4, 20), ()), ((), range(21), (7,)),
                                  (range(21),) * 3])
def test_sparse_equals_dense_forced(name, rows):
    """No reader, readers in every sequence, sequences without a reader, every token reading."""
    model = make(name)
    x = torch.randint(0, 64, (3, 21), generator=torch.Generator().manual_seed(4))
    with routing.force(model, _policy(rows)):
        sparse, dense = sparse_and_dense(model, x)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


def test_a_skip_token_gets_0_and_a_sequence_with_no_reader_runs_no_attention():
    model = make("exp11_read_tiny").eval()
    block = _read_blocks(model)[0]
    seen = []
    hook = block.mixer.register_forward_hook(
        lambda m, args, kwargs, out: seen.append((tuple(args[0].shape), kwargs.get("queries"))), with_kwargs=True)
    kv_rows = []
    kv_hook = block.mixer.kv_proj.register_forward_hook(lambda m, a, out: kv_rows.append(a[0].shape[:2]))
    x = torch.randint(0, 64, (3, 30), generator=torch.Generator().manual_seed(1))
    try:
        with routing.execution(model, "sparse"), routing.force(model, _policy(((), (4, 17), ()))):
            (call,) = routed_calls(model, x)
            seen.clear(), kv_rows.clear()
            out = call.block.run_routed(call.inputs, call.route)
        # one attention call: sequence 1 alone, its keys/values for all 30 tokens, 2 queries
        assert len(seen) == 1 and seen[0][0] == (1, 30, 32) and kv_rows == [(1, 30)]
        assert seen[0][1].index.tolist() == [[4, 17]]
        skip = torch.ones(3, 30, dtype=torch.bool)
        skip[1, [4, 17]] = False
        assert torch.equal(out[skip], torch.zeros_like(out[skip]))
        with torch.no_grad():
            full = block.mixer(call.inputs[0])
        torch.testing.assert_close(out[1, [4, 17]], full[1, [4, 17]], atol=1e-5, rtol=0)
        # no reader anywhere: no attention at all, and the output is 0
        with routing.execution(model, "sparse"), routing.force(model, "skip"):
            seen.clear(), kv_rows.clear()
            (call,) = routed_calls(model, x)
            assert not seen and not kv_rows
            assert torch.equal(call.routed(), torch.zeros_like(call.inputs[0]))
    finally:
        hook.remove(), kv_hook.remove()


@pytest.mark.parametrize("name", READS)
def test_eval_is_deterministic_and_independent_of_batch_mates(name):
    model = make(name).eval()
    x = torch.randint(0, 64, (4, 33), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, da = model(x), decisions(model)
        assert all(0 < float(d.float().mean()) < 1 for d in da)  # mixed routes
        for i in range(4):
            alone, d1 = model(x[i:i + 1]), decisions(model)
            torch.testing.assert_close(alone[0], a[i], atol=1e-5, rtol=0)
            assert all(torch.equal(p[0], q[i]) for p, q in zip(d1, da))


@pytest.mark.parametrize("name", READS)
@pytest.mark.parametrize("mode", ["train", "sparse", "dense"])
@settings(max_examples=6)
@given(data=st.data())
def test_causal_in_every_mode(name, mode, data):
    """Logits and routes at t are unchanged when tokens after t change."""
    model = make(name)
    check_causal(model, data, mode)


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("zero_init", [True, False])
def test_the_router_learns_through_the_read_in_dense_training(zero_init):
    """Dense execution (the training default) weighs the read by the straight-through weight of
    softmax, so the task loss reaches the router, even a fresh one that sends every token to skip."""
    model = make("exp11_read_tiny", router=dict(zero_init=zero_init, explore=0.0)).train()
    x = torch.randint(0, 64, (2, 24))
    logits = model(x)
    (router,) = routing.routers(model)
    assert not router.last_route.sparse
    if zero_init:
        assert routing.trace(model)[0].shares()["skip"] == 1.0
    logits.square().mean().backward()  # no aux term: the gradient comes through the read only
    assert router.net[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", READS)
@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_every_parameter_gets_a_finite_gradient(name, mode):
    model = make(name).train()
    x = torch.randint(0, 64, (3, 40))
    with routing.execution(model, mode):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten())
    loss = loss + 0.1 * sum(model.aux_losses().values(), torch.zeros(()))
    assert "budget" in model.aux_losses()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


# ----------------------------------------------------------------------------- costs and references

@pytest.mark.parametrize("name", READS)
@pytest.mark.parametrize("k", [1, 8, 32])
def test_declared_costs_are_what_the_counter_counts(name, k):
    """Against every token skipping (no attention at all), the first and last k tokens of each
    sequence reading cost their declared softmax cost, every other token its key/value projection.
    (A read at t costs its t + 1 keys; these readers' mean is the declared mean, (T + 1) / 2.)"""
    T = 64
    model = zoo.create_model(name, max_seq_len=T).eval()
    x = torch.randint(0, 256, (2, T))
    readers = [*range(k), *range(T - k, T)]
    with routing.force(model, "skip"):
        base = zf.count_flops(model, x)
    with routing.force(model, _policy([readers] * 2)):
        counted = zf.count_flops(model, x) - base
    n_read = 2 * len(set(readers))
    declared = sum(n_read * float(r.costs[1]) + (x.numel() - n_read) * float(r.costs[0])
                   for r in routing.routers(model))
    assert counted == pytest.approx(declared, rel=1e-9)


@pytest.mark.parametrize("name", READS)
def test_static_reference_is_the_read_on_every_token_without_routers(name):
    net = make(name).eval()
    label, ref = zoo.static_reference(name, net)
    assert label == f"{name} with plain GDN + attention layers"
    assert not routing.routers(ref) and routing.routers(net)  # the routed model is left as it was
    assert [b.kind for b in ref.layers] == ["softmax" if k == "read" else k for k in net.spec.layers]
    x = torch.randint(0, 64, (2, 30))
    with torch.no_grad(), routing.force(net, "softmax"):
        expected = net(x)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), expected, atol=0, rtol=0)
