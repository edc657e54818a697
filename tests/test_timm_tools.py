"""timm's tools on the zoo: reparameterize_model (DHVN's decoder conv is `merge`, no longer
`fuse`, which timm calls as a method), old `fuse.*` weights still loading through every path,
and prune_intermediate_layers, so a features_only backbone leaves no parameter without a gradient."""
import pytest
import torch
import torch.nn as nn

import zoo
from zoo import pretrained
from zoo.registry import resolve_spec

KW = dict(num_classes=10, in_chans=1, img_size=28)
VISION = zoo.list_models(tags={"task": "image-classification"})


def _old_keys(state: dict) -> dict:
    return {k.replace(".merge.", ".fuse."): v for k, v in state.items()}


@pytest.mark.parametrize("name", VISION)
def test_no_module_has_a_fuse_attribute(name):
    cls, spec = resolve_spec(name)
    with torch.device("meta"):
        model = cls(spec)
    assert not [n for n, m in model.named_modules() if hasattr(m, "fuse")]


def test_timm_reparameterize_model_runs_on_dhvn_and_matches_the_zoos():
    from timm.utils import reparameterize_model
    torch.manual_seed(0)
    model = zoo.create_model("dhvn_nano.mnist5k", pretrained=True).eval()
    x = torch.randn(6, 1, 28, 28)
    theirs, ours = reparameterize_model(model), zoo.reparameterize_model(model)
    assert [n for n, _ in theirs.named_modules()] == [n for n, _ in ours.named_modules()]
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(theirs(x), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_the_shipped_file_keeps_its_old_keys_and_loads():
    from safetensors.torch import load_file
    tag = pretrained.PRETRAINED["dhvn_nano.mnist5k"]
    keys = set(load_file(tag.file))
    model = zoo.create_model("dhvn_nano.mnist5k", pretrained=True)
    ours = set(model.state_dict())
    assert any(".fuse." in k for k in keys) and not any(".fuse." in k for k in ours)
    assert {k.replace(".fuse.", ".merge.") for k in keys} == ours


def test_old_keys_load_through_every_path(tmp_path):
    """load_weights (state dicts, harness checkpoints), nn.Module.load_state_dict under any
    prefix (the harness wrapper's `net.`), and mmengine's loader."""
    from mmengine.runner.checkpoint import load_state_dict as mm_load
    torch.manual_seed(1)
    src = zoo.create_model("dhvn_nano", **KW)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = src.state_dict()
    old = _old_keys(state)
    assert old.keys() != state.keys()

    def same(model):
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    harness_ckpt, plain = tmp_path / "old.pth", tmp_path / "plain.pth"
    torch.save({"state_dict": {f"net.{k}": v for k, v in old.items()}}, harness_ckpt)  # the harness's layout
    torch.save(old, plain)
    for f in (harness_ckpt, plain):
        model = zoo.create_model("dhvn_nano", **KW)
        pretrained.load_weights(model, str(f))
        same(model)
    wrapper = nn.Module()
    wrapper.net = zoo.create_model("dhvn_nano", **KW)
    wrapper.load_state_dict({f"net.{k}": v for k, v in old.items()})  # strict
    same(wrapper.net)
    model = zoo.create_model("dhvn_nano", **KW)
    mm_load(model, old, strict=True)
    same(model)
    # the mapping for code that compares keys before loading (the harness's checkpoint check)
    prefixed = pretrained.migrate_state_dict({f"net.{k}": v for k, v in old.items()}, wrapper.state_dict())
    assert set(prefixed) == set(wrapper.state_dict())
    assert pretrained.migrate_state_dict(state, state).keys() == state.keys()   # current keys unchanged


def _unpruned(model, take):
    from timm.models._features import FeatureGetterNet
    return FeatureGetterNet(model, out_indices=take, prune=False)


@pytest.mark.parametrize("name,kw", [
    ("dhvn_nano", {}), ("dhvn_nano_static", {}), ("eshvision_xs", {}), ("eshvision_xs_ssm", {}),
    ("dhvn_tiny", dict(widths=(16, 16, 32), depths=(1, 1, 1), stem_width=8, decoder_depth=1)),
])
@pytest.mark.parametrize("indices", [None, (0,), (1,), (0, 2), 1])
def test_features_only_leaves_no_parameter_without_a_gradient(name, kw, indices):
    import timm
    x = torch.randn(3, 1, 32, 32)
    for make in (zoo.create_model, timm.create_model):
        torch.manual_seed(0)
        net = make(name, features_only=True, out_indices=indices, num_classes=10, in_chans=1, img_size=32,
                   **kw).train()
        outs = net(x)
        sum(o.float().pow(2).mean() for o in outs).backward()
        unused = [n for n, p in net.named_parameters() if p.grad is None]
        assert not unused, unused[:5]
    # the same levels from the unpruned model are equal, and it held parameters nothing used
    torch.manual_seed(0)
    net = zoo.create_model(name, features_only=True, out_indices=indices, num_classes=10, in_chans=1, img_size=32,
                           **kw).eval()
    torch.manual_seed(0)
    full = zoo.create_model(name, num_classes=10, in_chans=1, img_size=32, **kw).eval()
    take = net.out_indices
    with torch.no_grad():
        for a, b in zip(net(x), _unpruned(full, take)(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())


def test_prune_intermediate_layers_follows_timms_convention():
    model = zoo.create_model("dhvn_nano", **KW)
    assert model.prune_intermediate_layers((0, 1)) == [0, 1]
    assert len(model.encoder) == 1 and len(model.decoder) == 0 and model.num_classes == 0
    assert model.num_features == model.feature_info[1]["num_chs"]
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, model.num_features, 14, 14)   # head reset, no pooling, as timm's
    final, levels = model.forward_intermediates(x, indices=[0, 1])
    assert [tuple(t.shape[1:]) for t in levels] == [(16, 28, 28), (32, 14, 14)] and final is levels[-1]
    esh = zoo.create_model("eshvision_xs", **KW)
    assert esh.prune_intermediate_layers(2, prune_head=False) == [1, 2]   # last 2: nothing to drop
    assert esh.num_classes == 10 and not isinstance(esh.norm, nn.Identity)
    assert esh.prune_intermediate_layers([0], prune_norm=True) == [0]
    assert len(esh.stages) == 0 and isinstance(esh.norm, nn.Identity) and esh.num_classes == 0
