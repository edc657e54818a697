"""ESH-Vision: sparse == dense routing, ACT semantics, gradients, losses, sizes (entropy prior:
test_entropy_prior.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import zoo
from zoo import routing
from zoo.blocks.act import ACTPonder
from zoo.models.eshvision import ESHVision
from zoo.ops.gating import alpha_variance_loss
from zoo.ops.dispatch import pack_rows
from zoo.specs import ACTSpec


def tiny(name="eshvision_xs", **kw):
    """A few-thousand-parameter ESH-Vision: 16x16x1 input, 4x4 then 2x2 patches."""
    args = dict(embed_dim=16, depths=(1, 2), num_heads=(2, 2), img_size=16)
    args.update(kw)
    torch.manual_seed(0)  # the same weights whatever ran before: tests that need mixed routes rely on it
    return zoo.create_model(name, **args)


def mix_routers(model, seed=0, scale=4.0, bias=0.0):
    """Non-zero router weights, so patches of one image take both routes (and some ponder)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for r in routing.routers(model):
            last = r.net[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=g) * scale / math.sqrt(last.in_features))
            last.bias.fill_(bias)
    return model


def images(b, c=1, s=16, seed=0):
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- sparse == dense

def _sparse_dense(model, x):
    model.eval()
    with torch.no_grad(), routing.execution(model, "sparse"):
        sparse = model.forward_dict(x)
    with torch.no_grad(), routing.execution(model, "dense"):
        dense = model.forward_dict(x)
    return sparse, dense


@given(st.integers(0, 2**16), st.integers(1, 4), st.sampled_from([2, 4]), st.sampled_from(["mamba1", "ssd"]))
@settings(max_examples=8)
def test_sparse_equals_dense_with_mixed_routes(seed, batch, directions, kind):
    model = mix_routers(tiny(ssm=dict(directions=directions, kind=kind, head_dim=8)), seed)
    sparse, dense = _sparse_dense(model, images(batch, seed=seed))
    assert torch.allclose(sparse["logits"], dense["logits"], atol=1e-5)
    assert torch.allclose(sparse["features"], dense["features"], atol=1e-5)
    assert torch.allclose(sparse["ponder_cost"], dense["ponder_cost"], atol=1e-5)


def test_mixed_routes_really_mix_and_ponder():
    model = mix_routers(tiny(), 2)
    model.eval()
    with torch.no_grad():
        out = model.forward_dict(images(4))
    shares = [rec.shares()["attention"] for rec in routing.trace(model)]
    assert all(0 < s < 1 for s in shares), shares
    assert any((a > 0.7).any() for a in out["alphas"])   # some patches ponder


@pytest.mark.parametrize("choice", ["ssm", "attention"])
@pytest.mark.parametrize("batch", [1, 3])
def test_sparse_equals_dense_when_one_branch_is_empty(choice, batch):
    model = mix_routers(tiny(), 1)
    with routing.force(model, choice):
        sparse, dense = _sparse_dense(model, images(batch, seed=batch))
    assert torch.allclose(sparse["logits"], dense["logits"], atol=1e-5)


def test_sparse_equals_dense_when_images_differ_in_routes():
    """Image 0 all attention, image 1 all SSM, image 2 a checkerboard: per-image subsets."""
    def policy(router, shape):
        d = torch.zeros(shape, dtype=torch.long)
        d[0] = 1
        d[2, ::2] = 1
        return d
    model = mix_routers(tiny(), 2)
    with routing.force(model, policy):
        sparse, dense = _sparse_dense(model, images(3, seed=5))
    assert torch.allclose(sparse["logits"], dense["logits"], atol=1e-5)


def test_eval_is_deterministic_and_per_sample():
    model = mix_routers(tiny(), 3).eval()
    x = images(4, seed=9)
    with torch.no_grad():
        full = model(x)
        assert torch.equal(full, model(x))
        for i in range(4):
            assert torch.allclose(model(x[i:i + 1]), full[i:i + 1], atol=1e-5)


# ----------------------------------------------------------------------------- ACT

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
    from zoo.blocks import esh_block as eshvision
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


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("name, mixed, kind", [("eshvision_xs", False, "mamba1"), ("eshvision_xs", True, "mamba1"),
                                               ("eshvision_xs_soft", False, "mamba1"), ("eshvision_xs", True, "ssd")])
def test_every_parameter_gets_a_finite_gradient(name, mixed, kind):
    model = tiny(name, ssm=dict(kind=kind, head_dim=8))
    if mixed:
        mix_routers(model, 6)
    model.train()
    out = model.forward_dict(images(3, seed=6))
    loss = F.cross_entropy(out["logits"], torch.tensor([1, 2, 3])) + sum(model.aux_losses().values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, bad
    # the routers learn from the task loss through the straight-through weights
    assert all(r.net[-1].weight.grad.abs().sum() > 0 for r in routing.routers(model))


def test_aux_losses_are_unweighted_scalars():
    model = mix_routers(tiny(), 7)
    out = model.forward_dict(images(2))
    aux = model.aux_losses()
    assert set(aux) == {"ponder", "alpha_variance", "budget"}
    assert all(v.dim() == 0 for v in aux.values())
    assert torch.allclose(aux["ponder"], out["ponder_cost"])
    static_act = tiny(act=dict(enabled=False))
    static_act.forward_dict(images(1))
    assert set(static_act.aux_losses()) == {"alpha_variance", "budget"}
    # no budget target, or soft routing (every branch runs anyway): no budget term
    for no_budget in (tiny(router=dict(budget=None)), tiny("eshvision_xs_soft")):
        no_budget.forward_dict(images(1))
        assert "budget" not in no_budget.aux_losses()


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4), st.integers(1, 3))
def test_variance_loss_earns_nothing_for_collapsed_blocks(levels, batch):
    alphas = [torch.full((batch, 9), v) for v in levels]   # each block all-0, all-1 or constant
    assert abs(float(alpha_variance_loss(alphas))) < 1e-12
    # even when the global variance over blocks is large
    mixed = [torch.zeros(batch, 9), torch.ones(batch, 9)]
    assert abs(float(alpha_variance_loss(mixed))) < 1e-12
    spread = [torch.tensor([[0.0, 1.0] * 4 + [0.0]]).expand(batch, 9)]
    assert float(alpha_variance_loss(spread)) < -0.2


def test_variance_loss_is_per_image():
    """Two images, each constant, but different: no reward (a batch-level variance would give one)."""
    a = torch.stack([torch.zeros(9), torch.ones(9)])
    assert float(alpha_variance_loss([a])) == 0.0


# ----------------------------------------------------------------------------- contract

def test_timm_contract_and_forward_dict_shapes():
    model = tiny(img_size=20, num_classes=5)     # 5x5 patches, merged (padded) to 3x3
    x = images(2, s=20)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 3, 3) and model.num_features == 32
    assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
    out = model.forward_dict(x)
    assert set(out) == {"features", "logits", "ponder_cost", "alphas", "entropy", "block_entropy",
                        "ponder_steps", "stages", "stem"}
    assert [s.shape for s in out["stages"]] == [(2, 16, 5, 5), (2, 32, 3, 3)]  # each stage's output
    assert out["stem"].shape == (2, 8, 10, 10)  # the conv stem's first stride-2 level (its width 8)
    assert out["logits"].shape == (2, 5) and out["entropy"].shape == (2, 5, 5)
    assert [a.shape for a in out["alphas"]] == [(2, 25), (2, 9), (2, 9)]
    assert [e.shape for e in out["block_entropy"]] == [(2, 25), (2, 9), (2, 9)]
    torch.testing.assert_close(out["block_entropy"][0], out["entropy"].reshape(2, 25))
    assert [s.shape for s in out["ponder_steps"]] == [(2, 25), (2, 9), (2, 9)]
    assert all(((s >= 0) & (s <= model.spec.act.max_extra_steps)).all() for s in out["ponder_steps"])
    assert tiny(act=dict(enabled=False)).forward_dict(x[:, :, :16, :16])["ponder_steps"] is None
    assert model.default_cfg["pool_size"] == (3, 3)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert ESHVision.routing_of(model.spec) == "patch"
    assert model.stride == 4


@pytest.mark.parametrize("shape, match", [
    ((1, 3, 16, 16), "channels"), ((1, 1, 18, 16), "divisible"), ((1, 16, 16), "expects"),
])
def test_bad_input_is_a_one_line_value_error(shape, match):
    with pytest.raises(ValueError, match=match) as err:
        tiny()(torch.zeros(shape))
    assert "\n" not in str(err.value)


def test_relative_offsets_clip_beyond_the_trained_grid():
    from zoo.blocks.rel_attention import relative_position_index
    big = relative_position_index(7, 7, (4, 4))            # offsets up to 6, table up to 3
    assert big.min() == 0 and big.max() == 7 * 7 - 1
    same = relative_position_index(4, 4, (4, 4))
    sub = torch.tensor([r * 7 + c for r in range(4) for c in range(4)])
    assert torch.equal(big[sub][:, sub], same)             # offsets within the table are unchanged
    model = tiny()                                         # img_size 16, fed 24x24 images
    assert model(images(2, s=24)).shape == (2, 10)


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="heads"):
        tiny(num_heads=(3, 2))
    with pytest.raises(ValueError, match="stage"):
        tiny(depths=(1, 1, 1))
    with pytest.raises(TypeError, match="valid keys"):
        tiny(not_a_field=1)


@pytest.mark.parametrize("name, params", [("eshvision_s", 19.9e6), ("eshvision_m", 153e6),
                                          ("eshvision_l", 545e6)])
def test_sizes_match_the_seed(name, params):
    info = zoo.model_info(name)
    assert abs(info["params"] - params) / params < 0.03, info["params"]
    assert info["routing"] == "patch" and info["family"] == "eshvision"


def test_xs_variants_are_registered_for_mnist():
    assert {"eshvision_xs", "eshvision_xs_soft"} <= set(zoo.list_models("eshvision_*"))
    model = zoo.create_model("eshvision_xs")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# ----------------------------------------------------------------------------- fast paths

@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_sparse_equals_dense_with_images_missing_a_branch(stem):
    """The single-buffer sparse combine: images with no attention patch, images with no SSM
    patch, and mixed images in one batch, against dense execution with the same decisions."""
    model = tiny(stem=stem).eval()
    x = images(4, seed=11)

    def policy(router, shape):
        g = torch.Generator().manual_seed(len(router.layer) + shape[1])
        d = torch.randint(0, 2, tuple(shape), generator=g)
        d[0] = 0  # image 0: SSM only
        d[1] = 1  # image 1: attention only
        return d

    with routing.force(model, policy):
        with routing.execution(model, "dense"):
            dense = model(x)
        with routing.execution(model, "sparse"):
            sparse = model(x)
    assert torch.allclose(sparse, dense, atol=1e-5)


def test_packed_bias_rows_equal_the_full_bias():
    attn = tiny().stages[0].blocks[0].attn
    torch.nn.init.normal_(attn.relative_position_bias_table)
    full = attn.bias((4, 4), None, "cpu")
    packed = pack_rows(torch.rand(3, 16, generator=torch.Generator().manual_seed(2)) > 0.5)
    rows = attn.bias((4, 4), packed.index, "cpu")
    assert torch.equal(rows, full.unsqueeze(0).expand(3, -1, -1, -1)[
        torch.arange(3)[:, None], :, packed.index].transpose(1, 2))


def test_conv_stem_keeps_the_grid_and_contract():
    model = tiny(stem="conv")
    assert model.patch_embed[0] is model.get_submodule(model.first_conv)
    feats = model.forward_features(images(2))
    assert feats.shape[-2:] == tiny().forward_features(images(2)).shape[-2:]
    with pytest.raises(ValueError, match="stem"):
        tiny(stem="nope")
    with pytest.raises(ValueError, match="power-of-two"):
        tiny(stem="conv", patch_size=3, img_size=12)
