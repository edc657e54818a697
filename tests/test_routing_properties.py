"""Sparse execution equals dense execution on routes that hypothesis draws, item by item.

The older property tests drew a seed and let an untrained router decide, so the routes they
saw were few and a quarter of Exp11's examples did not mix in both routed layers. Here the
decisions themselves are the drawn data, forced with `zoo.routing.force(model, policy)`:
DHVN per sample over conv / transformer / both, ESH-Vision per patch over ssm / attention,
Exp11 per token over gdn / softmax with both routed layers mixed. The test models carry
randomised learned scalars (`learned_scalars`), so a branch swapped for another shows.
Tolerances are those of the existing sparse == dense tests (1e-5, fp32).
"""
from __future__ import annotations

import functools

import torch
from hypothesis import given, settings, strategies as st

import dhvn_testutils
import esh_testutils
import exp11_testutils
from zoo import routing


def _policy(decisions):
    """Each router takes its drawn decisions (checked against the shape it asks for)."""
    def policy(router, shape):
        d = decisions[router.layer]
        assert tuple(d.shape) == tuple(shape), (router.layer, tuple(d.shape), tuple(shape))
        return d
    return policy


def _forced_run(model, x, decisions, mode, forward=None):
    with torch.no_grad(), routing.execution(model, mode), routing.force(model, _policy(decisions)):
        out = (forward or model)(x)
        taken = {rec.layer: rec.decisions.clone() for rec in routing.trace(model)}
    for layer, d in decisions.items():  # the forward really ran the drawn routes
        assert torch.equal(taken[layer], d), layer
    return out


def _draw_decisions(draw, shape, n_choices, mixed):
    """A (shape) LongTensor of choices; `mixed`: at least two different choices in it."""
    numel = int(torch.Size(shape).numel())
    flat = draw(st.lists(st.integers(0, n_choices - 1), min_size=numel, max_size=numel))
    if mixed and numel >= 2 and len(set(flat)) == 1:
        # one drawn position takes another choice: the draw stays shrinkable towards "first two differ"
        at = draw(st.integers(0, numel - 1))
        flat[at] = (flat[at] + 1 + draw(st.integers(0, n_choices - 2))) % n_choices
    return torch.tensor(flat, dtype=torch.long).reshape(shape)


# ----------------------------------------------------------------------------- DHVN, per sample

@functools.lru_cache(maxsize=None)
def _dhvn():
    return dhvn_testutils.make()   # routers forced here, so their own weights do not matter


@settings(max_examples=10)
@given(st.data(), st.integers(1, 6), st.integers(0, 2**16))
def test_dhvn_sparse_equals_dense_on_drawn_sample_routes(data, batch, seed):
    model = _dhvn()
    layers = [r.layer for r in routing.routers(model)]
    decisions = {layer: _draw_decisions(data.draw, (batch,), 3, mixed=False) for layer in layers}
    x = dhvn_testutils.images(batch, seed)
    dense = _forced_run(model, x, decisions, "dense")
    sparse = _forced_run(model, x, decisions, "sparse")
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- ESH, per patch

@functools.lru_cache(maxsize=None)
def _esh(branch_norm):
    # mixed router weights: ACT ponders attention patches whose alpha passes the threshold, and
    # alpha still comes from the router's logits when decisions are forced. branch_norm=True
    # gives each branch's update its own LayerNorm (randomised apart), so a branch's update
    # function applied to the other branch's rows shows
    model = esh_testutils.mix_routers(esh_testutils.tiny(branch_norm=branch_norm), seed=2).eval()
    with torch.no_grad():
        model(esh_testutils.images(1))
    return model, {rec.layer: tuple(rec.decisions.shape[1:]) for rec in routing.trace(model)}


@settings(max_examples=10)
@given(st.data(), st.integers(1, 3), st.integers(0, 2**16), st.booleans())
def test_esh_sparse_equals_dense_on_drawn_patch_routes(data, batch, seed, branch_norm):
    model, item_shapes = _esh(branch_norm)
    decisions = {layer: _draw_decisions(data.draw, (batch,) + shape, 2, mixed=True)
                 for layer, shape in item_shapes.items()}
    x = esh_testutils.images(batch, seed=seed)
    dense = _forced_run(model, x, decisions, "dense", model.forward_dict)
    sparse = _forced_run(model, x, decisions, "sparse", model.forward_dict)
    for key in ("logits", "features", "ponder_cost"):
        torch.testing.assert_close(sparse[key], dense[key], atol=1e-5, rtol=0, msg=key)


# ----------------------------------------------------------------------------- Exp11, per token

@functools.lru_cache(maxsize=None)
def _exp11(mix):
    return exp11_testutils.make(mix=mix).eval()


@settings(max_examples=12)
@given(st.data(), st.sampled_from(exp11_testutils.MIXES), st.integers(1, 3), st.integers(2, 40),
       st.integers(0, 2**16))
def test_exp11_sparse_equals_dense_on_drawn_token_routes(data, mix, batch, length, seed):
    model = _exp11(mix)
    layers = [r.layer for r in routing.routers(model)]
    assert len(layers) == 2
    # every routed layer mixed: each holds gdn and softmax tokens (T >= 2 makes that possible)
    decisions = {layer: _draw_decisions(data.draw, (batch, length), 2, mixed=True) for layer in layers}
    assert all(d.unique().numel() == 2 for d in decisions.values())
    x = torch.randint(0, exp11_testutils.TINY["vocab_size"], (batch, length),
                      generator=torch.Generator().manual_seed(seed))
    dense = _forced_run(model, x, decisions, "dense")
    sparse = _forced_run(model, x, decisions, "sparse")
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
