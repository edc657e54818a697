"""DHVN's sparse execution: each branch runs only on its own samples and computes what dense
execution computes, on every path (mixed groups, empty groups, one branch covering the batch)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from dhvn_testutils import assert_sparse_equals_dense, images, make, run
from zoo import routing
from zoo.families.dhvn.model import CHOICES, HybridBlock


# ----------------------------------------------------------------------------- sparse == dense

@settings(max_examples=6)
@given(batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_sparse_equals_dense_with_mixed_routes(batch, seed):
    model = make(seed=seed % 7)
    assert_sparse_equals_dense(model, images(batch, seed))


def test_random_routes_really_are_mixed():
    model = make()
    decisions = assert_sparse_equals_dense(model, images(24))
    taken = torch.cat(decisions)
    assert set(taken.tolist()) == {0, 1, 2}, "the test model should exercise all three choices"


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize("batch", [1, 4])
def test_sparse_equals_dense_forced(choice, batch):
    model = make()
    with routing.force(model, choice):
        decisions = assert_sparse_equals_dense(model, images(batch))
    assert all((d == CHOICES.index(choice)).all() for d in decisions)


@pytest.mark.parametrize("shares", [
    {"conv": 0.5, "both": 0.5},            # no transformer-only samples: conv runs on x as it is
    {"transformer": 0.5, "both": 0.5},     # no conv-only samples: the transformer runs on x as it is
    {"transformer": 0.5, "conv": 0.5},     # no "both": the fusion never runs
    {"conv": 0.3, "transformer": 0.3, "both": 0.4},
])
def test_sparse_equals_dense_with_empty_groups(shares):
    model = make()
    x = images(7)
    gen_seed = 3
    with routing.force(model, routing.random_policy(shares, torch.Generator().manual_seed(gen_seed))):
        dense, _ = run(model, x, "dense")
    with routing.force(model, routing.random_policy(shares, torch.Generator().manual_seed(gen_seed))):
        sparse, _ = run(model, x, "sparse")
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


def _branch_batches(model):
    seen = {"conv": [], "transformer": [], "fuse": [], "out": []}
    hooks = []
    for block in model.modules():
        if isinstance(block, HybridBlock):
            hooks.append(block.conv.register_forward_hook(lambda m, i, o: seen["conv"].append(i[0].shape[0])))
            hooks.append(block.trans.register_forward_hook(lambda m, i, o: seen["transformer"].append(i[0].shape[0])))
            hooks.append(block.fuse_norm.register_forward_hook(lambda m, i, o: seen["out"].append(i[0].shape[0])))
            hooks.append(_record_mix(block, seen["fuse"]))
    return seen, hooks


def _record_mix(block, calls):
    """Wrap the block's "both" mixing (a method, not a module) to record its batch sizes."""
    original = block.mix

    def mix(c, t):
        calls.append(c.shape[0])
        return original(c, t)
    block.mix = mix

    class Undo:
        def remove(self):
            del block.mix
    return Undo()


def test_sparse_runs_each_branch_only_on_its_samples():
    model = make()
    x = images(10)
    seen, hooks = _branch_batches(model)
    with routing.execution(model, "sparse"), torch.no_grad():
        model(x)
    records = routing.trace(model)
    for h in hooks:
        h.remove()
    want_conv = [int(((r.decisions == 0) | (r.decisions == 2)).sum()) for r in records]
    want_trans = [int(((r.decisions == 1) | (r.decisions == 2)).sum()) for r in records]
    want_fuse = [int((r.decisions == 2).sum()) for r in records]
    assert seen["conv"] == [n for n in want_conv if n]
    assert seen["transformer"] == [n for n in want_trans if n]
    assert seen["fuse"] == [n for n in want_fuse if n]
    # every choice ends in the block's one output norm: once per block, over the whole batch
    assert seen["out"] == [10] * len(records)

    seen, hooks = _branch_batches(model)
    with routing.force(model, "conv"), torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert seen["transformer"] == [] and seen["fuse"] == [] and seen["conv"] == [10] * len(records)


def test_dense_runs_every_branch_on_every_sample():
    model = make()
    seen, hooks = _branch_batches(model)
    with routing.execution(model, "dense"), torch.no_grad():
        model(images(6))
    for h in hooks:
        h.remove()
    n = len(routing.trace(model))
    assert seen == {"conv": [6] * n, "transformer": [6] * n, "fuse": [6] * n, "out": [6] * n}


@pytest.mark.parametrize("shares", [{"conv": 0.5, "both": 0.5}, {"transformer": 0.5, "both": 0.5}])
def test_one_branch_for_all_trains_like_dense(shares):
    """The path where one branch covers the batch overwrites the "both" rows of its output;
    with gradients on, that must not disturb the graph of the branch it overwrites."""
    model = make(conv=dict(norm="group")).train()
    x = images(6)
    outs, grads = [], []
    for mode in ("dense", "sparse"):
        model.zero_grad()
        policy = routing.random_policy(shares, torch.Generator().manual_seed(5))
        with routing.force(model, policy), routing.execution(model, mode):
            out = model(x)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None and "router" not in n})
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=0)
    assert grads[0].keys() == grads[1].keys() and any(".conv." in n for n in grads[0])
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-5, rtol=1e-4, msg=n)
