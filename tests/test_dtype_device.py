"""Every model in any float dtype and on any device it is built for: bf16 and fp16 weights,
bf16 autocast in training, timm's `device=` / `dtype=` factory kwargs, the meta device.
Routers decide in fp32 whatever the model's dtype."""
import math

import pytest
import torch

import zoo
from zoo.layers.router import Router

VISION = zoo.list_models(tags={"task": "image-classification"})
LMS = zoo.list_models(tags={"task": "causal-lm"})
SMALL = [n for n in VISION + LMS if zoo.model_info(n)["params"] <= 60e6]


def _build(name, **kw):
    torch.manual_seed(0)
    kw = dict(kw, **(dict(vocab_size=97, max_seq_len=40) if name in LMS else dict(num_classes=5, in_chans=1)))
    return zoo.create_model(name, **kw)


def _input(name, model, dtype=torch.float32):
    if name in LMS:
        return torch.randint(0, 97, (2, 40))
    size = model.stride * max(1, math.ceil(32 / model.stride))
    return torch.randn(2, 1, size, size).to(dtype)


def _logits(out):
    return out if torch.is_tensor(out) else out[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", SMALL)
def test_half_precision_weights_forward(name, dtype):
    model = _build(name).to(dtype).eval()
    x = _input(name, model, dtype)
    with torch.no_grad():
        y = _logits(model(x))
    assert y.dtype == dtype and torch.isfinite(y.float()).all()
    for record in zoo.routing.trace(model):
        assert record.probs.dtype == torch.float32   # the decision was made in fp32


@pytest.mark.parametrize("name", [n for n in SMALL if zoo.model_info(n)["routing"] != "static"] +
                         ["dhvn_nano_static", "exp11_baseline_tiny"])
def test_bf16_autocast_training_step(name):
    model = _build(name).train()
    x = _input(name, model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _logits(model(x))
        loss = y.float().logsumexp(-1).mean() + sum(model.aux_losses().values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["dhvn_nano", "eshvision_xs", "exp11_dynamic_tiny"])
def test_factory_device_and_dtype_are_honoured(name):
    model = _build(name, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    model = _build(name, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    model = _build(name, device="cpu", dtype="float64")
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with pytest.raises(ValueError, match="floating-point torch dtype"):
        _build(name, dtype=torch.int64)


@pytest.mark.parametrize("name", VISION + LMS)
def test_construction_on_the_meta_device(name):
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert all(p.is_meta for p in model.parameters())


def test_router_decides_in_fp32_with_half_weights():
    torch.manual_seed(0)
    router = Router(8, ("a", "b", "c"), "token").eval()
    feats = torch.randn(2, 5, 8)
    ref = router(feats)
    half = router.to(torch.bfloat16)
    route = half(feats.to(torch.bfloat16))
    assert route.probs.dtype == torch.float32
    # the same weights rounded to bf16: the fp32 computation stays close to the fp32 router's
    torch.testing.assert_close(route.probs, ref.probs, atol=2e-2, rtol=0)
