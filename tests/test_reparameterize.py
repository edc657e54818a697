"""zoo.reparameterize_model: BatchNorm folded into the conv before it, for inference.

The folded model must compute what the original computes (to float rounding) in every execution
mode and routing mix, route identically, count the same FLOPs, leave the original untouched, and
refuse a model in training mode."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import zoo
from benchmark_scripts import load_benchmark
from harness.measure import benchkit

KW = dict(num_classes=10, in_chans=1, img_size=28)


def trained_like(name: str, **kw) -> nn.Module:
    """A model whose BatchNorms hold non-trivial statistics and affine weights, as after training
    (at init they are the identity map, and folding them would prove nothing)."""
    torch.manual_seed(0)
    model = zoo.create_model(name, **KW, **kw)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.5)
            m.running_var.uniform_(0.3, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.3)
    for router in zoo.routing.routers(model):  # zero at init: every sample would take one choice
        for p in router.parameters():
            p.data.normal_(0.0, 1.0)
    return model.eval()


def batchnorms(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("name,execution,mix", [
    ("dhvn_nano", "sparse", {"skip": 0.5}),
    ("dhvn_nano", "dense", {"skip": 0.5}),
    ("dhvn_nano", "sparse", {"conv": 0.3, "transformer": 0.3, "both": 0.4}),
    ("dhvn_nano", "sparse", "own"),   # the routers' own argmax decisions, split over the choices
    ("dhvn_nano_static", None, None),
])
def test_folded_model_computes_the_same_function(name, execution, mix):
    model = trained_like(name)
    folded = zoo.reparameterize_model(model)
    g = torch.Generator().manual_seed(1)
    # samples of different scale and offset, so that the routers' own decisions differ between them
    x = torch.randn(12, 1, 28, 28, generator=g) * torch.rand(12, 1, 1, 1, generator=g).mul(4) \
        + torch.randn(12, 1, 1, 1, generator=g)
    routed = bool(zoo.routing.routers(model))
    assert routed == (mix is not None)
    policy = benchkit.FrozenPolicy(benchkit.policy_for(model, mix)) if isinstance(mix, dict) else None
    outs, decisions = [], []
    for m in (model, folded):
        with torch.no_grad(), benchkit.routing_context(m, execution, policy):
            outs.append(m(x))
        decisions.append([r.decisions for r in m.last_routes()] if routed else [])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    assert len(decisions[0]) == len(decisions[1])
    assert all(torch.equal(a, b) for a, b in zip(*decisions))
    if mix == "own":
        assert any(len(torch.unique(d)) > 1 for d in decisions[0])


def test_every_conv_then_batchnorm_is_folded_and_the_original_is_untouched():
    model = trained_like("dhvn_nano")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = zoo.reparameterize_model(model)
    # what is left is each hybrid block's fusion norm, which follows a ReLU, not a conv
    assert batchnorms(folded) == [f"{n}.fuse_norm" for n, m in folded.named_modules()
                                  if type(m).__name__ == "HybridBlock"]
    assert len(batchnorms(model)) > len(batchnorms(folded))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.randn(4, 1, 28, 28)
    assert zoo.flops.count_flops(folded, x) == zoo.flops.count_flops(model, x)
    same = zoo.reparameterize_model(folded, inplace=True)
    assert same is folded and batchnorms(same) == batchnorms(folded)  # folding twice changes nothing


def test_group_norm_is_not_folded():
    """GroupNorm normalises by its input's own statistics: no fixed affine map to fold."""
    model = zoo.create_model("dhvn_nano", **KW, conv=dict(norm="group")).eval()
    folded = zoo.reparameterize_model(model)
    groups = [n for n, m in folded.named_modules() if isinstance(m, nn.GroupNorm)]
    assert groups and groups == [n for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)]
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name,x", [("eshvision_xs", torch.randn(2, 1, 28, 28)),
                                    ("exp11_dynamic_tiny", torch.randint(0, 256, (1, 40)))])
def test_families_without_batchnorm_are_unchanged(name, x):
    model = zoo.create_model(name, **(KW if x.dim() == 4 else {})).eval()
    folded = zoo.reparameterize_model(model)
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))


def test_a_training_model_is_refused():
    model = trained_like("dhvn_nano").train()
    with pytest.raises(RuntimeError, match="call model.eval\\(\\) first"):
        zoo.reparameterize_model(model)


def test_router_overhead_in_deploy_form_compares_the_same_folded_layer():
    overhead = load_benchmark("bench_router_overhead")
    config = next(c for c in overhead.CONFIGS if c[1] == "dhvn_nano")
    rows = overhead.measure(config, "conv", rounds=1, warmup=0, reparam=True)
    assert rows and all(r["reparam"] and r["max_abs_diff"] < 1e-5 for r in rows)


def test_peers_fold_their_batchnorms_alike_or_say_they_could_not():
    import timm
    peers = load_benchmark("bench_peers")
    net = timm.create_model("resnet10t", num_classes=10).eval()
    folded, ok = peers.fused_peer(net)
    x = torch.randn(2, 3, 64, 64)
    assert ok and batchnorms(net) and not batchnorms(folded)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)

    class DataDependent(nn.Module):  # control flow on a tensor value: fx cannot trace it
        def forward(self, x):
            return x if x.sum() > 0 else -x
    module = DataDependent()
    assert peers.fused_peer(module) == (module, False)
