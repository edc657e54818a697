"""PointwiseConv2d: DHVN's 1x1 convs call oneDNN directly at CPU fp32 inference (torch's dispatcher
would pick its slower native kernel at batch < 16 on one thread), and are a plain nn.Conv2d
otherwise. Either way they compute nn.Conv2d's function and are counted as one."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
from zoo.families.dhvn.conv_branch import PointwiseConv2d


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _calls(monkeypatch):
    calls = []
    real = torch.mkldnn_convolution

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)
    monkeypatch.setattr(torch, "mkldnn_convolution", spy)
    return calls


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape,channels_last", [((8, 24, 20, 20), True), ((3, 24, 9, 9), False), ((1, 24, 5, 7), True)])
def test_inference_calls_onednn_and_equals_the_conv(monkeypatch, one_thread, bias, shape, channels_last):
    torch.manual_seed(0)
    conv = PointwiseConv2d(24, 16, bias=bias).eval()
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    calls = _calls(monkeypatch)
    with torch.no_grad():
        y = conv(x)
        ref = F.conv2d(x, conv.weight, conv.bias)
    assert calls == [x.shape]
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)
    assert y.is_contiguous(memory_format=torch.channels_last) == ref.is_contiguous(memory_format=torch.channels_last)


def test_with_a_graph_it_is_the_conv_and_trains(monkeypatch):
    conv = PointwiseConv2d(6, 4, bias=True)
    calls = _calls(monkeypatch)
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    conv(x).square().sum().backward()
    assert not calls and x.grad is not None and conv.weight.grad.abs().sum() > 0
    # another dtype takes the conv too
    with torch.no_grad():
        conv.double()(torch.randn(2, 6, 5, 5, dtype=torch.float64))
    assert not calls


def test_counted_as_the_conv_it_replaces():
    conv = PointwiseConv2d(24, 16).eval()
    plain = nn.Conv2d(24, 16, 1, bias=False).eval()
    x = torch.randn(4, 24, 10, 10).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert zoo.flops.count_flops(conv, x) == zoo.flops.count_flops(plain, x) == 2 * 4 * 100 * 24 * 16


def test_dhvn_uses_it_for_every_1x1_conv():
    model = zoo.create_model("dhvn_tiny", num_classes=10, in_chans=3, img_size=32)
    pointwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert pointwise and all(isinstance(m, PointwiseConv2d) for m in pointwise)
