"""Sparse training (`RouterSpec.train_execution="sparse"`, docs/DESIGN.md, "Training execution and
fixed capacity"): in training, with no execution context, each branch runs only on the items
that chose it, an unchosen branch on none, and every router still gets a gradient."""
import pytest
import torch

import dhvn_testutils
import esh_testutils
import exp11_testutils
from zoo import routing
from zoo.families.dhvn.model import HybridBlock
from zoo.families.eshvision.esh_block import ESHBlock
from zoo.families.exp11.mixers import RoutedMixer

SPARSE = dict(train_execution="sparse")


def _wrap(obj, name, calls, shape_of):
    """Record shape_of(args) on every call of obj.name (a method or a module), undo with .remove()."""
    original = getattr(obj, name)

    def wrapped(*args, **kwargs):
        calls.append(shape_of(*args, **kwargs))
        return original(*args, **kwargs)
    setattr(obj, name, wrapped)

    class Undo:
        def remove(self):
            delattr(obj, name)
    return Undo()


def _dhvn(**router):
    return dhvn_testutils.make(router=dict(SPARSE, **router)).train()


def _esh(**router):
    model = esh_testutils.tiny(act=dict(enabled=False), router=dict(SPARSE, **router))
    return esh_testutils.mix_routers(model).train()


def _exp11(**router):
    return exp11_testutils.make(router=dict(exp11_testutils.TINY["router"], **SPARSE, **router)).train()


# ----------------------------------------------------------------------------- DHVN


def _forward_hooked(model, x, undo, ctx=None):
    """model(x) under `ctx` (else with gradients on), then every hook or wrapper in `undo` removed."""
    try:
        with ctx if ctx is not None else torch.enable_grad():
            return model(x)
    finally:
        for u in undo:
            u.remove()


def _dhvn_calls(model, x, ctx=None):
    seen = {"conv": [], "transformer": []}
    undo = []
    for block in model.modules():
        if isinstance(block, HybridBlock):
            undo.append(block.conv.register_forward_hook(lambda m, i, o: seen["conv"].append(i[0].shape[0])))
            undo.append(block.trans.register_forward_hook(lambda m, i, o: seen["transformer"].append(i[0].shape[0])))
    out = _forward_hooked(model, x, undo, ctx)
    return out, seen, routing.trace(model)


def test_dhvn_sparse_training_runs_each_branch_on_its_own_samples():
    model = _dhvn()
    _, seen, records = _dhvn_calls(model, dhvn_testutils.images(12))
    want_conv = [int(((r.decisions == 0) | (r.decisions == 2)).sum()) for r in records]
    want_trans = [int(((r.decisions == 1) | (r.decisions == 2)).sum()) for r in records]
    assert sum(want_conv) < 12 * len(records) and sum(want_trans) < 12 * len(records), "routes should be mixed"
    assert seen["conv"] == [n for n in want_conv if n]
    assert seen["transformer"] == [n for n in want_trans if n]


def test_dhvn_sparse_training_never_runs_an_unchosen_branch():
    model = _dhvn()
    _, seen, records = _dhvn_calls(model, dhvn_testutils.images(6), routing.force(model, "conv"))
    assert seen == {"conv": [6] * len(records), "transformer": []}
    # the default (dense) training runs both on every sample: the spec field makes the difference
    dense = dhvn_testutils.make().train()
    _, seen, records = _dhvn_calls(dense, dhvn_testutils.images(6), routing.force(dense, "conv"))
    assert seen == {"conv": [6] * len(records), "transformer": [6] * len(records)}


# ----------------------------------------------------------------------------- ESH-Vision


def _esh_calls(model, x, ctx=None):
    """Per routed block: the images its attention keys/values ran on, and the patches its SSM gating ran on."""
    kv, gated = [], []
    undo = []
    for block in model.modules():
        if isinstance(block, ESHBlock) and block.router is not None:
            undo.append(_wrap(block.attn, "kv", kv, lambda x: x.shape[0]))
            undo.append(_wrap(block.ssm, "gate", gated, lambda y, n: n.shape[:-1].numel()))
    out = _forward_hooked(model, x, undo, ctx)
    return out, kv, gated, routing.trace(model)


def test_esh_sparse_training_runs_attention_only_on_images_with_attention_patches():
    model = _esh()
    x = esh_testutils.images(6)
    _, kv, gated, records = _esh_calls(model, x)
    attn = [r.decisions == 1 for r in records]
    want_kv = [int(a.any(dim=1).sum()) for a in attn]
    want_gated = [int((~a).sum()) for a in attn]
    assert any(0 < int(a.sum()) < a.numel() for a in attn), "routes should be mixed"
    assert kv == [n for n in want_kv if n]
    # the SSM's gating and output projection run on exactly its own patches
    assert gated == [n for n in want_gated if n]


def test_esh_sparse_training_never_runs_an_unchosen_branch():
    model = _esh()
    _, kv, gated, records = _esh_calls(model, esh_testutils.images(3), routing.force(model, "ssm"))
    assert kv == [] and gated == [r.decisions.numel() for r in records]

    def attention_in_image_0_only(router, shape):
        d = torch.zeros(shape, dtype=torch.long)
        d[0] = 1
        return d
    _, kv, gated, records = _esh_calls(model, esh_testutils.images(3), routing.force(model, attention_in_image_0_only))
    assert kv == [1] * len(records)  # keys/values of image 0 only
    assert gated == [2 * r.decisions.shape[1] for r in records]


# ----------------------------------------------------------------------------- Exp11


def _exp11_calls(model, x, ctx=None):
    """Per routed layer: the number of real (unpadded) attention queries, or the whole batch's tokens."""
    queries = []

    def count(x, queries_=None, **kw):
        packed = kw.get("queries", queries_)
        return int(packed.valid.sum()) if packed is not None else x.shape[0] * x.shape[1]
    undo = [_wrap(m.attn, "forward", queries, count) for m in model.modules() if isinstance(m, RoutedMixer)]
    out = _forward_hooked(model, x, undo, ctx)
    return out, queries, routing.trace(model)


def test_exp11_sparse_training_reads_softmax_only_for_its_tokens():
    model = _exp11()
    x = torch.randint(0, 64, (3, 29), generator=torch.Generator().manual_seed(2))
    _, queries, records = _exp11_calls(model, x)
    want = [int((r.decisions == 1).sum()) for r in records]
    assert all(0 < n < x.numel() for n in want), "routes should be mixed"
    assert queries == want


def test_exp11_sparse_training_never_runs_an_unchosen_branch():
    model = _exp11()
    x = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(3))
    _, queries, _ = _exp11_calls(model, x, routing.force(model, "gdn"))
    assert queries == []


# ----------------------------------------------------------------------------- all three


FAMILIES = {"dhvn": (_dhvn, lambda: dhvn_testutils.images(8)),
            "eshvision": (_esh, lambda: esh_testutils.images(4)),
            "exp11": (_exp11, lambda: torch.randint(0, 64, (2, 23), generator=torch.Generator().manual_seed(1)))}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("router", [{}, dict(capacity=0.5), dict(capacity=0.25, explore=0.0)],
                         ids=["sparse", "sparse+capacity", "sparse+capacity-no-explore"])
def test_every_router_gets_a_gradient_in_sparse_training(family, router):
    build, inputs = FAMILIES[family]
    model = build(**router)
    assert all(r.is_sparse() for r in routing.routers(model))
    out = model(inputs())
    loss = out.float().square().mean() + sum(model.aux_losses().values()) * 0
    loss.backward()
    for r in routing.routers(model):
        grad = r.net[-1].weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, r.layer


@pytest.mark.parametrize("family", ["eshvision", "exp11", "dhvn"])
def test_sparse_training_computes_what_dense_training_computes(family):
    """Same decisions (the same exploration draws), same output: only what is executed differs.
    DHVN with GroupNorm, since BatchNorm's training statistics cover the samples a branch ran on."""
    build, inputs = FAMILIES[family]
    model = dhvn_testutils.make(conv=dict(norm="group"), router=SPARSE).train() if family == "dhvn" else build()
    x = inputs()
    outs = {}
    for mode in ("sparse", "dense"):
        torch.manual_seed(7)
        with routing.execution(model, mode):
            outs[mode] = (model(x), [r.decisions for r in routing.trace(model)])
    for a, b in zip(outs["sparse"][1], outs["dense"][1]):
        assert torch.equal(a, b)
    torch.testing.assert_close(outs["sparse"][0], outs["dense"][0], atol=1e-5, rtol=0)


def test_an_execution_context_still_wins_and_soft_routers_stay_dense():
    model = _dhvn()
    with routing.execution(model, "dense"):
        assert not any(r.is_sparse() for r in routing.routers(model))
    assert all(r.is_sparse() for r in routing.routers(model))
    soft = esh_testutils.tiny("eshvision_xs_soft", router=SPARSE).train()
    assert routing.routers(soft) and not any(r.is_sparse() for r in routing.routers(soft))
    assert routing.training_mode(soft) == {"train_execution": "dense", "capacity": None}
