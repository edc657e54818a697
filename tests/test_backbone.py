"""timm's backbone API on every zoo vision model: forward_intermediates, features_only (through
timm's FeatureGetterNet), feature_info, and the training backward timm's model tests check."""
import math

import pytest
import torch

import zoo

VISION = [n for n in zoo.list_models(tags={"task": "image-classification"}) if zoo.model_info(n)["params"] <= 60e6]


def _model_and_input(name, **kw):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=5, in_chans=2, **kw)
    size = model.stride * max(1, math.ceil(32 / model.stride)) if hasattr(model, "stride") else 32
    return model, torch.randn(2, 2, size, size)


@pytest.mark.parametrize("name", VISION)
def test_forward_intermediates_match_feature_info(name):
    model, x = _model_and_input(name)
    model.eval()
    with torch.no_grad():
        final, stages = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert len(stages) == len(model.feature_info) >= 2
        for t, info in zip(stages, model.feature_info):
            assert t.shape[:2] == (2, info["num_chs"])
            assert t.shape[-1] == math.ceil(x.shape[-1] / info["reduction"])  # odd grids pad up
            assert model.get_submodule(info["module"]) is not None
        last = model.forward_intermediates(x, indices=1, intermediates_only=True)
        assert len(last) == 1 and torch.equal(last[0], stages[-1])
        picked = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        assert torch.equal(picked[0], stages[0]) and torch.equal(picked[1], stages[-1])


@pytest.mark.parametrize("name", VISION)
def test_features_only_through_timm(name):
    import timm
    model, x = _model_and_input(name)
    net = timm.create_model(name, features_only=True, out_indices=(-2, -1), num_classes=5, in_chans=2)
    info = model.feature_info
    assert net.feature_info.channels() == [info[-2]["num_chs"], info[-1]["num_chs"]]
    assert net.feature_info.reduction() == [info[-2]["reduction"], info[-1]["reduction"]]
    outs = net(x)
    assert [o.shape[1] for o in outs] == net.feature_info.channels()
    sum(o.float().sum() for o in outs).backward()
    assert any(p.grad is not None for p in net.parameters())


def test_out_indices_out_of_range_and_lms_are_one_line_errors():
    with pytest.raises(ValueError, match=r"out_indices \[5\] has 5, out of range for 3 stages"):
        zoo.create_model("dhvn_nano", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="last-n out_indices 4 is out of range"):
        zoo.create_model("eshvision_xs", features_only=True, out_indices=4)
    with pytest.raises(ValueError, match="no feature stages"):
        zoo.create_model("exp11_dynamic_tiny", features_only=True)


@pytest.mark.parametrize("name", VISION)
def test_training_backward_reaches_every_parameter(name):
    """timm's test_model_backward: one training step gives every parameter a gradient (training
    runs every branch, dense; the aux terms reach the routers)."""
    model, x = _model_and_input(name)
    model.train()
    out = model(x)
    loss = out.float().logsumexp(-1).mean() + sum(model.aux_losses().values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", ""])
def test_global_pool_kwarg(pool):
    import timm
    x = torch.randn(2, 1, 28, 28)
    for make in (zoo.create_model, timm.create_model):
        torch.manual_seed(0)
        model = make("dhvn_nano", num_classes=3, in_chans=1, img_size=28, global_pool=pool).eval()
        assert model.global_pool == pool
        with torch.no_grad():
            feats = model.forward_features(x)
            pre = model.forward_head(feats, pre_logits=True)
        expected = {"avg": feats.mean((-2, -1)), "max": feats.amax((-2, -1)),
                    "avgmax": 0.5 * (feats.mean((-2, -1)) + feats.amax((-2, -1))), "": feats}[pool]
        torch.testing.assert_close(pre, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="global_pool must be one of"):
        zoo.create_model("dhvn_nano", global_pool="catavgmax")
    with pytest.raises(ValueError, match="no pooled head"):
        zoo.create_model("exp11_dynamic_tiny", global_pool="avg")
