"""`python -m harness visualize`: pictures of the expected size, JSON numbers equal to the trace's,
one-line errors. Checkpoints are fresh models saved in mmengine's format (routers given random
weights, so routing is mixed), plus one checkpoint written by a real harness training run."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import harness  # noqa: F401  (registers datasets and model wrappers)
import zoo
from harness.viz import dhvn, eshvision, exp11
from harness.viz.common import DPI, png_size
from harness_testutils import assert_one_line_error, run_cli

LIMITS = {"mnist5k": ["test_dataloader.dataset.limit=40", "test_dataloader.batch_size=16"],
          "pydocs": ["test_dataloader.dataset.limit=3", "test_dataloader.batch_size=2"]}
# short byte windows keep the LM forwards cheap (the model and the data both take the override)
KWARGS = {"mnist5k": {}, "pydocs": {"max_seq_len": 64}}


def _px(size_inches):
    return tuple(int(round(v * DPI)) for v in size_inches)


def _save_fresh(path, model: str, suite: str, seed: int = 0):
    """A fresh model of the harness's own construction as an mmengine checkpoint, its routers given
    random weights centred on the eval features, so every router splits the eval items."""
    from mmengine.registry import DATASETS, MODELS
    from mmengine.runner.checkpoint import save_checkpoint
    from harness.run import RunOptions, build_config
    from harness.suites import get_suite

    cfg = build_config(get_suite(suite), model, 0, RunOptions(model_kwargs=KWARGS[suite]), "cpu")
    wrapper = MODELS.build(copy.deepcopy(cfg.model)).eval()
    ds_cfg = dict(cfg.test_dataloader["dataset"], limit=4)
    dataset = DATASETS.build(ds_cfg)
    x = torch.stack([dataset[i]["inputs"] for i in range(len(dataset))])
    routers = zoo.routing.routers(wrapper.net)
    feats = {}
    hooks = [r.register_forward_pre_hook(lambda m, a: feats.__setitem__(m, a[0].detach())) for r in routers]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for router in routers:  # in forward order: each one sees the features its predecessors made
            feats.clear()
            wrapper.net(x)
            f = feats[router].float().reshape(-1, feats[router].shape[-1])
            lin = router.net[-1] if len(router.net) == 1 else router.net[0]
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / f.std(0).clamp_min(1e-3) / f.shape[-1] ** 0.5)
            lin.bias.copy_(-(lin.weight @ f.mean(0)))
            if len(router.net) > 1:
                last = router.net[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=g))
                last.bias.zero_()
    for h in hooks:
        h.remove()
    save_checkpoint(dict(meta=dict(iter=0), state_dict=wrapper.state_dict()), str(path))
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viz_ckpts")
    return {m: _save_fresh(tmp / f"{m}.pth", m, s) for m, s in
            (("dhvn_nano", "mnist5k"), ("eshvision_xs", "mnist5k"), ("exp11_dynamic_tiny", "pydocs"))}


def _run(capsys, model, ckpt, suite, out, *extra):
    return run_cli(["visualize", "--model", model, "--checkpoint", str(ckpt), "--suite", suite,
                    "--out", str(out), "--device", "cpu", "--cfg-options", *LIMITS[suite],
                    *(["--model-kwargs"] + [f"{k}={v}" for k, v in KWARGS[suite].items()] if KWARGS[suite] else []),
                    *extra], capsys)


def _load(model, ckpt, suite):
    """The same network and eval inputs the command used."""
    from harness.commands.visualize import load_routed
    cfg = dict(kv.split("=") for kv in LIMITS[suite])
    cfg = {k: int(v) for k, v in cfg.items()}
    net, dataset, _, _ = load_routed(model, str(ckpt), suite, model_kwargs=KWARGS[suite], cfg_options=cfg,
                                     device="cpu")
    items = [dataset[i] for i in range(len(dataset))]
    return net, torch.stack([it["inputs"] for it in items]), torch.stack([torch.as_tensor(it["data_samples"])
                                                                         for it in items])


def _read(out, name):
    png = out / f"{name}.png"
    assert png.stat().st_size > 5000, f"{png} is (nearly) empty"
    data = json.loads((out / f"{name}.json").read_text())
    assert png_size(png) == (data["figure"]["width_px"], data["figure"]["height_px"])
    return png, data


def test_dhvn_pictures_match_trace(ckpts, tmp_path, capsys):
    out = tmp_path / "dhvn"
    code, stdout, err = _run(capsys, "dhvn_nano", ckpts["dhvn_nano"], "mnist5k", out, "--n", "6")
    assert code == 0, err
    png, heat = _read(out, "gate_heatmap")
    assert png_size(png) == _px(dhvn.HEATMAP_SIZE)
    png, grid = _read(out, "sample_routes")
    assert png_size(png) == _px(dhvn.grid_size(6))
    assert len(grid["samples"]) == 6

    net, x, y = _load("dhvn_nano", ckpts["dhvn_nano"], "mnist5k")
    with torch.no_grad():
        net(x)
    records = zoo.routing.trace(net)
    assert heat["layers"] == [r.layer for r in records] and heat["n_samples"] == len(x)
    mixed = False
    for rec in records:
        for c, share in rec.shares().items():
            assert heat["overall"][rec.layer][c] == pytest.approx(share, abs=1e-6)
        mixed |= max(rec.shares().values()) < 1.0
    assert mixed, "randomised routers should give a mixed route somewhere"
    for s in grid["samples"]:
        assert s["route"] == {r.layer: r.choices[int(r.decisions[s["index"]])] for r in records}
    for cls in heat["per_class"]:
        with torch.no_grad():
            net(x[y == int(cls)])
        for rec in zoo.routing.trace(net):
            for c, share in rec.shares().items():
                assert heat["per_class"][cls][rec.layer][c] == pytest.approx(share, abs=1e-6)


def test_eshvision_pictures_match_trace(ckpts, tmp_path, capsys):
    out = tmp_path / "esh"
    code, _, err = _run(capsys, "eshvision_xs", ckpts["eshvision_xs"], "mnist5k", out, "--n", "3")
    assert code == 0, err
    png, maps = _read(out, "alpha_maps")
    assert png_size(png) == _px(eshvision.maps_size(3, 2))
    png, hist = _read(out, "alpha_histograms")
    assert png_size(png) == _px(eshvision.hist_size(3))

    net, x, _ = _load("eshvision_xs", ckpts["eshvision_xs"], "mnist5k")
    with torch.no_grad():
        out_dict = net.forward_dict(x)
    records = zoo.routing.trace(net)
    for rec in records:
        block = hist["blocks"][rec.layer]
        assert block["attention_share"] == pytest.approx(rec.shares()["attention"], abs=1e-6)
        alpha = rec.probs[..., 1].reshape(-1)
        assert block["mean_alpha"] == pytest.approx(float(alpha.mean()), abs=1e-6)
        assert sum(block["share_per_bin"]) == pytest.approx(1.0, abs=1e-6)
    for img in maps["images"]:
        i = img["index"]
        stage0 = img["stages"]["0"]
        assert torch.allclose(torch.tensor(stage0["entropy"]), out_dict["entropy"][i], atol=1e-6)
        blocks1 = [r for r in records if r.layer.startswith("stages.1.")]
        mean1 = torch.stack([r.probs[i, :, 1] for r in blocks1]).mean(0).view(4, 4)
        assert torch.allclose(torch.tensor(img["stages"]["1"]["alpha_mean"]), mean1, atol=1e-6)


def test_exp11_pictures_match_trace(ckpts, tmp_path, capsys):
    out = tmp_path / "exp11"
    code, _, err = _run(capsys, "exp11_dynamic_tiny", ckpts["exp11_dynamic_tiny"], "pydocs", out, "--n", "1")
    assert code == 0, err
    png, tokens = _read(out, "token_routes")
    assert png_size(png) == _px(exp11.token_size(1, 2, 64))
    png, shares = _read(out, "layer_shares")
    assert png_size(png) == _px(exp11.SHARES_SIZE)
    png, pos = _read(out, "share_vs_position")
    assert png_size(png) == _px(exp11.POSITION_SIZE)

    net, x, _ = _load("exp11_dynamic_tiny", ckpts["exp11_dynamic_tiny"], "pydocs")
    with torch.no_grad():
        net(x)
    records = zoo.routing.trace(net)
    rows = {r["layer"]: r for r in shares["layers"]}
    assert rows["layers.0"]["kind"] == "fixed gdn" and rows["layers.3"]["kind"] == "fixed softmax"
    for rec in records:
        for c, share in rec.shares().items():
            assert rows[rec.layer]["share"][c] == pytest.approx(share, abs=1e-6)
        assert pos["layers"][rec.layer]["mean_share"] == pytest.approx(rec.shares()["softmax"], abs=1e-6)
        per_pos = (rec.decisions == rec.choices.index("softmax")).double().mean(0)
        assert torch.allclose(torch.tensor(pos["layers"][rec.layer]["share_per_position"]).double(), per_pos)
        assert tokens["texts"][0]["routes"][rec.layer] == [rec.choices[d] for d in rec.decisions[0].tolist()]
    assert tokens["texts"][0]["tokens"] == x[0].tolist()


def test_checkpoint_from_a_harness_run(trained_checkpoint, tmp_path, capsys):
    work, _ = trained_checkpoint
    code, stdout, err = _run(capsys, "dhvn_nano", work / "epoch_2.pth", "mnist5k", tmp_path / "o", "--n", "2")
    assert code == 0, err
    assert "gate_heatmap.png" in stdout and (tmp_path / "o" / "sample_routes.json").exists()


@pytest.mark.parametrize("argv, fragments", [
    (["--model", "dhvn_nan", "--suite", "mnist5k"], ["no model matches", "dhvn_nano"]),
    (["--model", "dhvn_*", "--suite", "mnist5k"], ["one model name, not a pattern"]),
    (["--model", "timm:resnet18", "--suite", "mnist5k"], ["timm model", "no routers"]),
    (["--model", "dhvn_nano_static", "--suite", "mnist5k"], ["static model"]),
    (["--model", "exp11_dynamic_tiny", "--suite", "mnist5k"], ["causal-lm", "cannot run on suite mnist5k"]),
    (["--model", "dhvn_nano", "--suite", "mnist"], ["unknown suite"]),
    (["--model", "dhvn_nano", "--suite", "mnist5k", "--model-kwargs", "depths=(1,)"],
     ["cannot build dhvn_nano", "one entry per stage"]),
])
def test_user_mistakes_are_one_line(argv, fragments, ckpts, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["visualize", *argv, "--checkpoint", str(ckpts["dhvn_nano"]), "--out", str(out)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()


def test_bad_checkpoints_are_one_line(ckpts, tmp_path, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    plain = tmp_path / "plain.pth"
    torch.save({"weights": torch.zeros(2)}, plain)
    cases = [(garbage, "corrupt or not a torch checkpoint"), (tmp_path / "missing.pth", "does not exist"),
             (plain, "no state_dict"), (ckpts["eshvision_xs"], "does not fit dhvn_nano")]
    for ckpt, fragment in cases:
        out = tmp_path / "never"
        code, _, err = _run(capsys, "dhvn_nano", ckpt, "mnist5k", out)
        assert_one_line_error(code, err, fragment)
        assert not out.exists()
    code, _, err = run_cli(["visualize", "--model", "dhvn_nano", "--suite", "mnist5k"], capsys)
    assert_one_line_error(code, err, "--checkpoint")
