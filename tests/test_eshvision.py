"""ESH-Vision: sparse == dense routing, gradients, losses, sizes (ACT: test_eshvision_act.py; entropy
prior: test_entropy_prior.py)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import zoo
from zoo import routing
from zoo.families.eshvision.model import ESHVision
from zoo.ops.gating import alpha_variance_loss
from zoo.ops.dispatch import pack_rows


from esh_testutils import images, mix_routers, tiny


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
    for no_budget in (tiny(router=dict(compute_target=None)), tiny("eshvision_xs_soft")):
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
    from zoo.families.eshvision.rel_attention import relative_position_index
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
