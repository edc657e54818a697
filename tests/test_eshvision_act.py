"""ESH-Vision's ACT pondering: halting weights, steps and cost, which patches ponder, and that
training (dense) and eval (sparse) forwards agree with pondering on."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from esh_testutils import images, mix_routers, tiny
from zoo import routing
from zoo.families.eshvision.act import ACTPonder
from zoo.specs import ACTSpec

def _constant_halting(act, h):
    with torch.no_grad():
        act.halt.weight.zero_()
        act.halt.bias.fill_(math.log(h / (1 - h)))


class CountingStep:
    """A ponder step that adds 1 to each pondering patch and records what it was given."""

    def __init__(self):
        self.items = []

    def __call__(self, states, packed):
        self.items.append((int(packed.valid.sum()), packed.index.shape[1], states.shape[0]))
        return torch.gather(states, 1, packed.index.unsqueeze(-1).expand(-1, -1, states.shape[-1])) + 1


@pytest.mark.parametrize("h, steps, weights, cost", [
    (0.4, 2, (0.4, 0.4, 0.2), 3.2),     # truncated at the last allowed step, remainder 0.2
    (0.6, 1, (0.6, 0.4, 0.0), 2.4),     # 0.6 + 0.6 passes 1 - eps at step 1
    (0.995, 0, (1.0, 0.0, 0.0), 1.005),  # halts at once: 1 + (1 - h0)
])
def test_act_halting_weights_steps_and_cost(h, steps, weights, cost):
    act = ACTPonder(4, ACTSpec(max_extra_steps=2, eps=0.01))
    _constant_halting(act, h)
    x = torch.randn(2, 5, 4)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3] = True
    res = act(x, mask, CountingStep())
    assert torch.equal(res.steps[mask], torch.full((2,), steps))
    assert torch.equal(res.steps[~mask], torch.zeros(8, dtype=torch.long))
    assert torch.allclose(res.halting_mass, torch.ones(2, 5), atol=1e-6)
    expected = x + (weights[1] * 1 + weights[2] * 2)
    assert torch.allclose(res.output[mask], expected[mask], atol=1e-5)
    assert torch.equal(res.output[~mask], x[~mask])
    assert torch.allclose(res.ponder_cost[mask], torch.full((2,), cost), atol=1e-5)
    assert torch.allclose(res.ponder_cost[~mask], torch.full((8,), 2 - h), atol=1e-5)


@given(st.integers(0, 2**16), st.integers(0, 3))
@settings(max_examples=15)
def test_act_recomputes_only_running_patches(seed, max_steps):
    g = torch.Generator().manual_seed(seed)
    act = ACTPonder(6, ACTSpec(max_extra_steps=max_steps))
    with torch.no_grad():
        act.halt.weight.normal_(0, 1, generator=g)
        act.halt.bias.fill_(-0.5)
    x = torch.randn(3, 7, 6, generator=g)
    mask = torch.rand(3, 7, generator=g) < 0.4
    step = CountingStep()
    res = act(x, mask, step)
    assert int(res.steps.max()) <= max_steps
    assert not res.steps[~mask].any()
    assert torch.allclose(res.halting_mass, torch.ones(3, 7), atol=1e-5)
    for k, (items, width, imgs) in enumerate(step.items, start=1):
        assert items == int((res.steps >= k).sum())     # exactly the patches still running
        assert width == int((res.steps >= k).sum(1).max())
        assert imgs == int((res.steps >= 1).any(1).sum())  # images without ponderers are left out
    assert len(step.items) == int(res.steps.max())


def test_halting_unit_learns_before_anyone_ponders():
    act = ACTPonder(4)
    act.init_weights()
    x = torch.randn(2, 5, 4)
    res = act(x, torch.zeros(2, 5, dtype=torch.bool), CountingStep())
    res.ponder_cost.mean().backward()
    assert act.halt.weight.grad.abs().sum() > 0 and act.halt.bias.grad.abs() > 0


def test_model_ponder_step_gets_only_pondering_patches(monkeypatch):
    from zoo.families.eshvision import esh_block as eshvision
    calls = []
    original = eshvision._PonderStep.__call__

    def counting(self, states, packed):
        calls.append((int(packed.valid.sum()), packed.index.shape[1], states.shape[0]))
        return original(self, states, packed)

    monkeypatch.setattr(eshvision._PonderStep, "__call__", counting)
    model = mix_routers(tiny(act=dict(max_extra_steps=1)), 2).eval()
    with torch.no_grad():
        out = model.forward_dict(images(4))
    # hard mode: alpha > 0.7 implies the attention route, so these are the pondering patches
    ponder = [a > 0.7 for a in out["alphas"] if (a > 0.7).any()]
    assert len(ponder) >= 2
    expected = [(int(m.sum()), int(m.sum(1).max()), int(m.any(1).sum())) for m in ponder]
    assert calls == expected       # one step per block with ponderers, given only those


@pytest.mark.parametrize("forced", [None, "attention", "checkerboard"])
def test_train_dense_forward_equals_eval_sparse_forward(forced):
    """Same ACT and same routing in training and at eval: hard mode is noise-free (without
    exploration, which is what sends a share of the training items elsewhere on purpose)."""
    import contextlib

    def checkerboard(router, shape):
        d = torch.zeros(shape, dtype=torch.long)
        d[:, ::2] = 1
        return d
    model = mix_routers(tiny(router=dict(explore=0.0)), 4)
    x = images(3, seed=4)
    policy = checkerboard if forced == "checkerboard" else forced
    ctx = (lambda: routing.force(model, policy)) if forced else contextlib.nullcontext
    model.train()
    with ctx():
        train_out = model.forward_dict(x)
    assert not any(r.is_sparse() for r in routing.routers(model))
    model.eval()
    with torch.no_grad(), ctx():
        assert all(r.is_sparse() for r in routing.routers(model))
        eval_out = model.forward_dict(x)
    assert torch.allclose(train_out["logits"], eval_out["logits"], atol=1e-5)
    assert torch.allclose(train_out["ponder_cost"], eval_out["ponder_cost"], atol=1e-5)


def test_soft_variant_is_the_seed_merge_and_agrees_in_train_and_eval():
    model = mix_routers(tiny("eshvision_xs_soft"), 5)
    x = images(2, seed=5)
    model.train()
    a = model(x)
    model.eval()
    with torch.no_grad():
        b = model(x)
    assert torch.allclose(a, b, atol=1e-5)
    blk = model.stages[0].blocks[0]
    n = blk.norm1(torch.randn(2, 16, 16))
    route = blk.router(torch.cat([n, torch.rand(2, 16, 1)], -1))
    assert not route.sparse and torch.allclose(route.weights[..., 1], route.probs[..., 1])
