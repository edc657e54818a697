"""The shipped tags as timm sees them: their pretrained_cfg (own preprocessing, licence, paper,
origin, the model's name as architecture), overlays, the save_for_hf -> local-dir: round trip,
and timm's own evaluation pipeline (resolve_data_config + create_transform on PIL digits, as
validate.py runs it) reproducing each tag's top-1 with no extra settings."""
import json
import os

import numpy as np
import pytest
import torch

import zoo
from zoo import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VISION_TAGS = [t.name for t in pretrained.PRETRAINED.values() if "num_classes" in t.kwargs]


def _stored_top1(suite: str, model: str) -> float:
    with open(os.path.join(REPO, "leaderboard", "results", f"{suite}.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return next(r for r in rows if r["model"] == model and r["seed"] == 0 and "budget" not in r)["metrics"]["top1"]


@pytest.fixture(scope="module")
def digits():
    """The mnist5k test split: the harness's tensors, and the same digits as 8-bit PIL images."""
    from PIL import Image

    from harness.suites.mnist5k import MNIST_MEAN, MNIST_STD, Mnist5k
    data = Mnist5k("test")
    raw = (data.images * MNIST_STD[0] + MNIST_MEAN[0]) * 255
    pixels = raw.round()
    assert float((raw - pixels).abs().max()) < 1e-3  # the csv's 8-bit values, recovered exactly
    images = [Image.fromarray(p[0].numpy().astype(np.uint8)) for p in pixels]
    return data, images


def _top1(model, x: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 250]).argmax(-1) for i in range(0, len(x), 250)])
    return int((pred == labels).sum()) * 100 / len(labels)


def _timm_inputs(model, images) -> torch.Tensor:
    """What timm's validate.py feeds the model: its data config resolved from the model alone."""
    from timm.data import create_transform, resolve_data_config
    config = resolve_data_config({}, model=model)
    transform = create_transform(**config)
    return torch.stack([transform(img) for img in images])


@pytest.mark.parametrize("name", VISION_TAGS)
def test_timm_pipeline_reproduces_the_tags_top1(name, digits):
    import timm
    data, images = digits
    tag = pretrained.PRETRAINED[name]
    model = timm.create_model(name, pretrained=True).eval()
    direct = _top1(model, data.images, data.labels)         # the harness's tensors, the same weights
    x = _timm_inputs(model, images)
    torch.testing.assert_close(x, data.images, rtol=0, atol=1e-6)
    assert _top1(model, x, data.labels) == direct
    # each tag is the main job's seed 0: its leaderboard record holds the same top-1
    assert direct == pytest.approx(_stored_top1(tag.tag, tag.model), abs=1e-9)
    # the cfg it had (crop 0.875: resize 32 then centre-crop 28), through an overlay, scores lower
    old = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(crop_pct=0.875)).eval()
    assert old.pretrained_cfg["crop_pct"] == 0.875
    assert _top1(old, _timm_inputs(old, images), data.labels) < direct - 1.0


@pytest.mark.parametrize("name", VISION_TAGS)
def test_tag_cfgs_describe_the_weights(name):
    import timm
    from timm.models import get_pretrained_cfg
    tag = pretrained.PRETRAINED[name]
    registered = get_pretrained_cfg(name).to_dict()
    for cfg in (registered, timm.create_model(name, pretrained=True).pretrained_cfg,
                zoo.create_model(name, pretrained=True).pretrained_cfg):
        assert cfg["architecture"] == tag.model
        assert cfg["crop_pct"] == 1.0 and cfg["crop_mode"] == "center" and cfg["interpolation"] == "bilinear"
        assert tuple(cfg["input_size"]) == (1, 28, 28) and cfg["num_classes"] == 10
        assert tuple(cfg["mean"]) == (0.1307,) and tuple(cfg["std"]) == (0.3081,)
        assert cfg["license"] == "mit" and cfg["paper_ids"] == "no paper" and cfg["paper_name"]
        assert cfg["tag"] == tag.tag and cfg["file"] == tag.file and cfg["notes"]
    assert registered.get("origin_url") == ("https://github.com/JoseBerlin7/DHVN" if tag.model == "dhvn_nano" else None)


def test_untagged_models_keep_their_own_cfg_and_overlays_apply():
    import timm
    model = timm.create_model("dhvn_nano")
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == "dhvn_nano" and cfg["crop_pct"] == 0.875 and cfg["interpolation"] == "bicubic"
    assert "license" not in cfg and "tag" not in cfg and tuple(cfg["input_size"]) == (3, 224, 224)
    assert model.default_cfg is cfg  # one dict, as timm keeps it: edits stick
    cfg["crop_pct"] = 0.9
    assert model.pretrained_cfg["crop_pct"] == 0.9
    over = timm.create_model("eshvision_xs.mnist5k", pretrained=True,
                             pretrained_cfg_overlay=dict(crop_pct=0.95, interpolation="bicubic"))
    assert over.pretrained_cfg["crop_pct"] == 0.95 and over.pretrained_cfg["interpolation"] == "bicubic"
    assert over.pretrained_cfg["license"] == "mit"
    # named directly, outside create_model, the entry point still names itself
    from zoo.families.dhvn.model import dhvn_nano_static
    assert dhvn_nano_static(num_classes=3).pretrained_cfg["architecture"] == "dhvn_nano_static"


@pytest.mark.parametrize("name", VISION_TAGS)
def test_save_for_hf_then_local_dir_round_trips(name, tmp_path):
    import timm
    from timm.models import save_for_hf
    model = timm.create_model(name, pretrained=True).eval()
    folder = tmp_path / "export"
    save_for_hf(model, str(folder), safe_serialization=True)
    with open(folder / "config.json") as f:
        config = json.load(f)
    assert config["architecture"] == model.pretrained_cfg["architecture"]
    again = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert again.pretrained_cfg["crop_pct"] == 1.0 and again.pretrained_cfg["license"] == "mit"
    assert again.pretrained_cfg["file"] == str(folder) and again.num_classes == 10 and again.in_chans == 1
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    # without pretrained=True: the same network, freshly initialised
    fresh = timm.create_model(f"local-dir:{folder}")
    assert fresh.num_classes == 10 and tuple(fresh.pretrained_cfg["input_size"]) == (1, 28, 28)
