"""DHVN: per-sample Conv / Transformer / Both routing that really skips the unchosen branch."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import zoo
from zoo import routing
from zoo.families.dhvn.pooled_attention import TransformerBranch
from dhvn_testutils import IMG, images, make, run
from zoo.families.dhvn.model import CHOICES, DHVN, DHVNSpec
from zoo.specs import AttentionSpec, MlpSpec


# ----------------------------------------------------------------------------- batch independence

@settings(max_examples=6)
@given(seed=st.integers(0, 2**16))
def test_sample_output_ignores_batch_mates(seed):
    model = make(seed=seed % 5)
    x = images(6, seed)
    full = model(x)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(model(x[perm]), full[perm], atol=1e-5, rtol=0)
    torch.testing.assert_close(model(x[2:3]), full[2:3], atol=1e-5, rtol=0)
    others = torch.cat([x[:2], images(3, seed + 1)])
    torch.testing.assert_close(model(others)[:2], full[:2], atol=1e-5, rtol=0)


def test_inference_is_deterministic():
    model = make()
    x = images(5)
    a, da = run(model, x, "sparse")
    b, db = run(model, x, "sparse")
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(da, db))


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("name", ["dhvn_nano", "dhvn_nano_static"])
def test_every_parameter_gets_a_finite_gradient(name):
    """With routes that use every choice, every parameter gets a finite, non-zero gradient.
    (Straight-through hard routing sends a branch no gradient from samples that did not run
    it; a fresh routed model starts with every sample on "conv", see the next test. Forced
    routes carry no gradient to the routers, which get theirs from the aux losses here.)"""
    import contextlib
    model = make(name, sharp_router=False).train()
    # every block sends samples 0, 3, 6 to conv, 1, 4, 7 to transformer, the rest to both
    every_choice = lambda router, shape: torch.arange(shape.numel()).reshape(shape) % 3  # noqa: E731
    with routing.force(model, every_choice) if name == "dhvn_nano" else contextlib.nullcontext():
        out = model(images(8))
    loss = out.square().mean() + sum(model.aux_losses().values(), out.new_zeros(()))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_a_fresh_router_starts_at_the_cheapest_choice_and_still_learns():
    model = make(sharp_router=False).train()
    out = model(images(4))
    assert all(rec.shares()["conv"] == 1.0 for rec in routing.trace(model))
    (out.square().mean() + model.aux_losses()["budget"]).backward()
    for r in routing.routers(model):
        assert r.net[-1].weight.grad.abs().sum() > 0 and r.net[-1].bias.grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_sparse_training_matches_dense_forward_and_reaches_the_router(norm):
    """With a per-sample norm, sparse execution in training computes what dense does. (With
    batch norm, the default, training statistics cover the samples a branch ran on, so the two
    differ in training by design; at eval they agree, as the tests above check.)"""
    model = make(conv=dict(norm=norm)).train()
    x = images(6)
    torch.manual_seed(11)  # the same draws in both runs
    with routing.execution(model, "dense"):
        dense = model(x)
    torch.manual_seed(11)
    with routing.execution(model, "sparse"):
        sparse = model(x)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
    sparse.square().mean().backward()
    for r in routing.routers(model):
        assert r.net[-1].weight.grad is not None and r.net[-1].weight.grad.abs().sum() > 0


def test_batch_norm_is_per_sample_at_eval_and_sees_the_whole_batch_in_training():
    model = make()
    x = images(6)
    model(x[:3])  # eval: running statistics, nothing learned from these samples
    assert all(not bn.training for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    before = [bn.running_mean.clone() for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d)]
    model.train()
    with routing.execution(model, "dense"):
        model(x)
    after = [bn.running_mean for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d)]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_aux_losses():
    model = make(sharp_router=False).train()
    assert model.aux_losses() == {}
    model(images(4))
    aux = model.aux_losses()
    assert set(aux) == {"gate_entropy", "load_balance", "budget"}
    # zero-init gates are uniform (up to the 1e-6 lean to "conv"): entropy log(3); every
    # sample took "conv", so the balance is N * 1 * 1/3 = 1
    assert aux["gate_entropy"].item() == pytest.approx(math.log(3), abs=1e-6)
    assert aux["load_balance"].item() == pytest.approx(1.0, abs=1e-5)
    # budget: the expected compute share of uniform probabilities, against the target
    costs = [r.costs for r in routing.routers(model)]
    share = sum(c.sum() / 3 for c in costs) / sum(c.max() for c in costs)
    assert aux["budget"].item() == pytest.approx((share.item() - model.spec.router.compute_target) ** 2, rel=1e-4)
    assert aux["gate_entropy"].requires_grad and aux["load_balance"].requires_grad
    static = make("dhvn_nano_static", sharp_router=False).train()
    static(images(2))
    assert static.aux_losses() == {}


# ----------------------------------------------------------------------------- global attention

def test_transformer_branch_is_global():
    torch.manual_seed(0)
    branch = TransformerBranch(8, 16, stride=2, depth=1, attn=AttentionSpec(head_dim=8, kv_pool=4),
                               mlp=MlpSpec(ratio=2.0)).eval()
    local = TransformerBranch(8, 16, stride=2, depth=0).eval()  # patchify + position conv only
    x = torch.randn(1, 8, 32, 32)
    y = x.clone()
    y[..., :2, :2] += 5.0  # one corner patch
    with torch.no_grad():
        far = (branch(y) - branch(x))[..., -1, -1].abs().max()
        far_local = (local(y) - local(x))[..., -1, -1].abs().max()
    assert far_local == 0  # the test can tell local from global
    assert far > 1e-3      # 16x16 tokens, pooled to 4x4 keys: the far corner still sees it


def test_transformer_branch_is_exact_full_attention_on_small_grids():
    torch.manual_seed(0)
    attn = AttentionSpec(head_dim=8, kv_pool=7)
    branch = TransformerBranch(8, 8, stride=1, depth=1, attn=attn).eval()
    full = TransformerBranch(8, 8, stride=1, depth=1, attn=attn.replace(kv_pool=None)).eval()
    full.load_state_dict(branch.state_dict())
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(branch(x), full(x))


# ----------------------------------------------------------------------------- contract

def test_bad_input_is_a_one_line_value_error():
    model = make()
    with pytest.raises(ValueError, match="expects 3 input channels") as e:
        model(torch.randn(1, 1, IMG, IMG))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="divisible by its stride 4, got 18x16") as e:
        model(torch.randn(1, 3, 18, 16))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="widths and depths"):
        zoo.create_model("dhvn_nano", depths=(1,))
    with pytest.raises(ValueError, match="policy"):
        zoo.create_model("dhvn_nano", policy="both_please")
    with pytest.raises(ValueError, match="img_size 30 must be divisible by the model's stride 4"):
        zoo.create_model("dhvn_nano", img_size=30)


def test_timm_contract_and_stages():
    model = make(img_size=32)
    assert model.stride == 4 and model.num_features == 32
    x = images(2, size=32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 32, 16, 16)
    assert model.default_cfg["pool_size"] == (16, 16)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
    assert model(x).shape == (2, 5)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    three = make("dhvn_tiny", widths=(16, 16, 32), depths=(1, 1, 1), stem_width=8, decoder_depth=1)
    assert three.stride == 8 and three(images(1)).shape == (1, 5)


def test_trace_records_one_per_sample_decision_per_hybrid_block():
    model = make()
    model(images(3))
    records = routing.trace(model)
    assert [r.layer for r in records] == ["encoder.0", "encoder.1", "decoder.0"]
    for r in records:
        assert r.granularity == "sample" and r.choices == CHOICES
        assert r.decisions.shape == (3,) and r.probs.shape == (3, 3)


def test_static_model_has_no_router_and_runs_both():
    model = make("dhvn_nano_static")
    assert routing.routers(model) == [] and routing.trace(model) == []
    assert DHVN.routing_of(model.spec) == "static"
    assert zoo.model_info("dhvn_nano_static")["routing"] == "static"
    assert zoo.model_info("dhvn_nano")["routing"] == "sample"
    for policy in ("conv", "transformer"):
        single = make(policy=policy)
        assert single(images(2)).shape == (2, 5)


def test_variant_sizes():
    base = zoo.model_info("dhvn_base")["params"]
    assert abs(base - 25.6e6) / 25.6e6 < 0.05, base  # the original's 25.6M
    nano = zoo.model_info("dhvn_nano")
    assert nano["spec"]["img_size"] == 224  # ImageNet defaults; MNIST runs override
    nano_mnist = sum(p.numel() for p in zoo.create_model("dhvn_nano", num_classes=10, in_chans=1).parameters())
    assert 100_000 <= nano_mnist <= 300_000, nano_mnist
    sizes = [zoo.model_info(n)["params"] for n in ("dhvn_nano", "dhvn_tiny", "dhvn_small", "dhvn_base")]
    assert sizes == sorted(sizes)
    for n in ("nano", "tiny", "small", "base"):
        routed, static = zoo.model_info(f"dhvn_{n}")["params"], zoo.model_info(f"dhvn_{n}_static")["params"]
        with torch.device("meta"):
            gates = sum(p.numel() for r in routing.routers(zoo.create_model(f"dhvn_{n}")) for p in r.parameters())
        assert routed - static == gates > 0  # the routers are the only difference


def test_spec_round_trips():
    spec = DHVNSpec(widths=(8, 16), depths=(1, 1)).replace(router={"mode": "hard"})
    assert spec.router.mode == "hard" and spec.num_stages == 2
    assert DHVNSpec.from_dict(spec.to_dict()) == spec


def test_deepcopy_after_a_training_forward():
    import copy
    model = make(sharp_router=False).train()
    model(images(2))
    clone = copy.deepcopy(model)  # EMA helpers copy models mid-training
    assert clone.aux_losses() == {} and set(model.aux_losses()) == {"gate_entropy", "load_balance", "budget"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, clone.state_dict()[k])


def test_bf16_autocast_runs_both_modes():
    model = make()
    x = images(4)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        dense, _ = run(model, x, "dense")
        sparse, _ = run(model, x, "sparse")
    assert torch.isfinite(dense).all() and torch.isfinite(sparse).all()
    torch.testing.assert_close(sparse.float(), dense.float(), atol=0.1, rtol=0.05)  # bf16 rounding
