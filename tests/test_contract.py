"""The timm model contract for every vision model, and the LM contract for every LM.

Parametrised over `zoo.list_models`, so a new variant is checked the day it is registered.
"""
import math

import pytest
import torch

import zoo

VISION = zoo.list_models(tags={"task": "image-classification"})
LMS = zoo.list_models(tags={"task": "causal-lm"})
LARGE = {n for n in VISION + LMS if zoo.model_info(n)["params"] > 60e6}


def _small_size(model) -> int:
    s = model.stride
    return s * max(1, math.ceil(32 / s))


def _build(name, **kw):
    torch.manual_seed(0)
    return zoo.create_model(name, **kw)


@pytest.mark.parametrize("name", VISION)
def test_timm_contract(name):
    in_chans = 2
    model = _build(name, num_classes=7, in_chans=in_chans).eval()
    size = _small_size(model)
    x = torch.randn(2, in_chans, size, size)
    assert model.num_classes == 7 and model.num_features > 0
    feats = model.forward_features(x)
    assert feats.dim() == 4 and feats.shape[:2] == (2, model.num_features)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    assert model(x).shape == (2, 7)
    cfg = model.default_cfg
    for key in ("input_size", "mean", "std", "first_conv", "classifier"):
        assert key in cfg, key
    assert cfg["input_size"][0] == in_chans and len(cfg["mean"]) == in_chans
    # the cfg describes this model: its input size runs, its pool size is what the features have
    full = model.forward_features(torch.randn(1, *cfg["input_size"]))
    if "pool_size" in cfg:
        assert tuple(full.shape[-2:]) == tuple(cfg["pool_size"])
    first = model.get_submodule(cfg["first_conv"])
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == in_chans
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", [n for n in VISION if n not in LARGE])
def test_every_parameter_gets_a_finite_gradient(name):
    model = _build(name, num_classes=4, in_chans=1).train()
    size = _small_size(model)
    x = torch.randn(3, 1, size, size)
    loss = model(x).logsumexp(-1).mean()
    for v in model.aux_losses().values():
        loss = loss + v
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no/non-finite gradient for {missing[:8]}"


@pytest.mark.parametrize("name", VISION)
def test_bad_vision_input_is_one_line_value_error(name):
    model = _build(name, in_chans=3).eval()
    size = _small_size(model)
    with pytest.raises(ValueError, match="3 input channels") as e:
        model(torch.randn(1, 4, size, size))
    assert "\n" not in str(e.value)
    if model.stride > 1:
        with pytest.raises(ValueError, match="divisible") as e:
            model(torch.randn(1, 3, size + 1, size))
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", [n for n in LMS if n not in LARGE] + ["exp11_dynamic"])
def test_lm_contract(name):
    model = _build(name, vocab_size=97, max_seq_len=24).eval()
    ids = torch.randint(0, 97, (2, 24))
    logits = model(ids)
    assert logits.shape == (2, 24, 97) and torch.isfinite(logits).all()
    aux = model.aux_losses()
    if zoo.model_info(name)["routing"] == "static":
        assert aux == {}
    else:  # unweighted scalars from the routes this forward took, never part of the logits
        assert aux and all(v.dim() == 0 and torch.isfinite(v) for v in aux.values())
        model.train()
        train_aux = (model(ids), model.aux_losses())[1]
        assert all(v.requires_grad for v in train_aux.values())
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((1, 4), 97))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 25, dtype=torch.long))


def _small_input(name, model):
    if name in LMS:
        return torch.randint(0, 97, (2, 16))
    size = _small_size(model)
    return torch.randn(2, 1, size, size)


@pytest.mark.parametrize("name", [n for n in VISION + LMS if n not in LARGE])
def test_deepcopy_and_pickle_after_a_training_forward(name):
    """The last forward's graph tensors (routes, aux terms) never block a copy (EMA, timm's
    model copies, torch.save of the module); the copy starts without them."""
    import copy
    import io
    kw = dict(vocab_size=97, max_seq_len=24) if name in LMS else dict(num_classes=4, in_chans=1)
    model = _build(name, **kw).train()
    x = _small_input(name, model)
    model(x)
    before = set(model.aux_losses())
    clone = copy.deepcopy(model)
    assert clone.aux_losses() == {} and set(model.aux_losses()) == before
    torch.save(model, io.BytesIO())  # pickling the whole module works too
    model.eval(), clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))
