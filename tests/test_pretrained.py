"""Pretrained tags in timm's way, with weights shipped in the package and loaded offline; each
shipped tag reproduces its leaderboard figure (seed 0) on its suite's test split."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VISION_TAGS = [t.name for t in pretrained.PRETRAINED.values() if "num_classes" in t.kwargs]


def _record(suite, model):
    with open(os.path.join(REPO, "leaderboard", "results", f"{suite}.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return next(r for r in rows if r["model"] == model and r["seed"] == 0 and "budget" not in r)


def test_timm_registry_knows_the_tags():
    import timm
    from timm.models import get_pretrained_cfg_value
    listed = timm.list_models(pretrained=True)
    assert set(VISION_TAGS) <= set(listed)
    for name in VISION_TAGS:
        tag = pretrained.PRETRAINED[name]
        assert get_pretrained_cfg_value(name, "num_classes") == tag.kwargs["num_classes"]
        assert tuple(get_pretrained_cfg_value(name, "input_size")) == (tag.kwargs["in_chans"], tag.kwargs["img_size"],
                                                                       tag.kwargs["img_size"])
        assert tuple(get_pretrained_cfg_value(name, "mean")) == tag.kwargs["mean"]
        assert get_pretrained_cfg_value(name, "file") == tag.file and os.path.isfile(tag.file)
    vision = zoo.list_models(tags={"task": "image-classification"})
    assert set(vision) <= set(timm.list_models(name_matches_cfg=True))
    assert get_pretrained_cfg_value("dhvn_tiny", "first_conv") == "stem.0"


@pytest.mark.parametrize("name", VISION_TAGS)
def test_shipped_vision_tag_reaches_its_leaderboard_top1(name):
    import timm
    from harness.suites.mnist5k import Mnist5k
    tag = pretrained.PRETRAINED[name]
    data = Mnist5k("test")
    expected = _record(tag.tag, tag.model)["metrics"]["top1"]
    for model in (zoo.create_model(name, pretrained=True), timm.create_model(name, pretrained=True)):
        model.eval()
        assert model.pretrained_cfg["tag"] == tag.tag and model.num_classes == 10
        with torch.no_grad():
            pred = torch.cat([model(data.images[i:i + 250]).argmax(-1) for i in range(0, len(data), 250)])
        assert int((pred == data.labels).sum()) * 100 / len(data) == pytest.approx(expected, abs=1e-9)


def test_shipped_lm_tag_reaches_its_leaderboard_loss():
    from harness.suites.pydocs import PyDocs
    record = _record("pydocs", "exp11_dynamic_tiny")
    data = PyDocs("test", max_seq_len=256)
    if data.metainfo["corpus_sha256"] != record["data"]["corpus_sha256"]:
        pytest.skip("this Python's pydoc topics are not the corpus the record was measured on")
    model = zoo.create_model("exp11_dynamic_tiny.pydocs", pretrained=True).eval()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), 8):
            w = data.windows[i:i + 8]
            logits = model(w[:, :-1])
            nll += float(F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="sum"))
            tokens += w[:, 1:].numel()
    assert nll / tokens == pytest.approx(record["metrics"]["loss"], rel=1e-4)


def test_unknown_tags_and_missing_weights_are_errors():
    import timm
    with pytest.raises(ValueError, match="unknown pretrained tag dhvn_nano.in1k; shipped tags of dhvn_nano: "
                                         "dhvn_nano.mnist5k"):
        timm.create_model("dhvn_nano.in1k")
    with pytest.raises(ValueError, match="unknown pretrained tag"):
        zoo.create_model("dhvn_nano.in1k")
    with pytest.raises(ValueError, match="no pretrained weights are shipped for dhvn_tiny"):
        zoo.create_model("dhvn_tiny", pretrained=True)
    with pytest.raises(ValueError, match="trained with img_size=28; got img_size=32"):
        zoo.create_model("dhvn_nano.mnist5k", pretrained=True, img_size=32)


@pytest.mark.parametrize("name", VISION_TAGS)
def test_another_num_classes_fine_tunes_with_a_new_head(name):
    """timm's rule: every pretrained weight but the classifier's, which starts fresh."""
    import timm
    full = zoo.create_model(name, pretrained=True).state_dict()
    torch.manual_seed(0)
    fresh = zoo.create_model(name.split(".")[0], num_classes=5, in_chans=1, img_size=28).state_dict()
    for make in (zoo.create_model, timm.create_model):
        torch.manual_seed(0)
        model = make(name, pretrained=True, num_classes=5)
        assert model.num_classes == 5 and model.get_classifier().out_features == 5
        for k, v in model.state_dict().items():
            expect = fresh[k] if k.startswith("head.") else full[k]
            assert torch.equal(v, expect), k


def test_a_file_of_ones_own_through_the_overlay(tmp_path, trained_net_file):
    import timm
    path, reference = trained_net_file
    x = torch.randn(3, 1, 28, 28)
    for make in (zoo.create_model, timm.create_model):
        model = make("dhvn_nano", pretrained=True, num_classes=10, in_chans=1, img_size=28,
                     pretrained_cfg_overlay=dict(file=str(path))).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not fit DHVN"):
        zoo.create_model("dhvn_nano", pretrained=True, num_classes=7, in_chans=1, img_size=28,
                         pretrained_cfg_overlay=dict(file=str(path)))


@pytest.fixture
def trained_net_file(tmp_path):
    """A dhvn_nano with non-default weights, saved as a safetensors file of one's own."""
    from safetensors.torch import save_file
    torch.manual_seed(3)
    net = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / "mine.safetensors"
    save_file({k: v.clone() for k, v in net.state_dict().items()}, str(path))
    return path, net.eval()
