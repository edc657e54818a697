"""The ImageNet (DeiT) recipe's parts: mixup/cutmix soft targets, the EMA hook, and the recipe
end to end on a tiny ImageFolder tree through the CLI."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.engine.recipe import MixupPreprocessor, ZooEMAHook
from harness_testutils import read_jsonl, run_cli, write_imagefolder


def _batch(n=6, classes=5):
    g = torch.Generator().manual_seed(0)
    return dict(inputs=torch.randn(n, 3, 8, 8, generator=g), data_samples=torch.arange(n) % classes)


def test_mixup_gives_soft_targets_in_training_only():
    torch.manual_seed(0)
    pre = MixupPreprocessor(num_classes=5, label_smoothing=0.1)
    batch = _batch()
    out = pre(copy.deepcopy(batch), training=True)
    t = out["data_samples"]
    assert t.shape == (6, 5) and t.is_floating_point()
    assert torch.allclose(t.sum(-1), torch.ones(6))
    assert (t > 0).all()  # label smoothing puts mass on every class
    assert not torch.equal(out["inputs"], batch["inputs"])  # mixed or cut
    ev = pre(copy.deepcopy(batch), training=False)
    assert torch.equal(ev["inputs"], batch["inputs"]) and torch.equal(ev["data_samples"], batch["data_samples"])


def test_mixup_odd_batch_and_missing_classes_are_one_line_errors():
    with pytest.raises(HarnessError, match="even training batch"):
        MixupPreprocessor(num_classes=5)(_batch(n=5), training=True)
    with pytest.raises(HarnessError, match="needs num_classes"):
        MixupPreprocessor()(_batch(), training=True)


def test_channels_last_inputs_and_model():
    from harness.engine.wrappers import ZooClassifier
    pre = MixupPreprocessor(num_classes=5, channels_last=True)
    x = pre(_batch(), training=False)["inputs"]
    assert x.is_contiguous(memory_format=torch.channels_last)
    model = ZooClassifier(arch="dhvn_nano", arch_kwargs=dict(num_classes=7, in_chans=1, img_size=28),
                          channels_last=True, data_preprocessor=dict(type="MixupPreprocessor"))
    assert model.data_preprocessor.num_classes == 7  # taken from the network
    conv = next(m for m in model.net.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_soft_target_loss_is_timms():
    from harness.engine.wrappers import ZooClassifier
    model = ZooClassifier(arch="dhvn_nano", arch_kwargs=dict(num_classes=10, in_chans=1, img_size=28),
                          label_smoothing=0.1)
    model.eval()
    logits = torch.randn(4, 10)
    soft = torch.softmax(torch.randn(4, 10), -1)
    expect = (-soft * F.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(model._loss_ce(logits, soft), expect)
    hard = torch.tensor([1, 2, 3, 4])
    assert torch.allclose(model._loss_ce(logits, hard), F.cross_entropy(logits, hard, label_smoothing=0.1))


def _ema_setup(momentum=0.5):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    runner = SimpleNamespace(model=model, _resume=False, iter=10, epoch=0, max_iters=100)
    hook = ZooEMAHook(momentum=momentum)
    hook.before_run(runner)
    return model, runner, hook


def _train_two_steps(model, runner, hook):
    for _ in range(2):  # the first update copies the weights; the second averages
        with torch.no_grad():
            model.weight.add_(1.0)
        hook.after_train_iter(runner, 0)


def test_ema_survives_a_second_run_and_tests_raw_or_average():
    model, runner, hook = _ema_setup()
    _train_two_steps(model, runner, hook)
    raw, avg = model.weight.detach().clone(), hook.ema_model.module.weight.detach().clone()
    assert not torch.equal(raw, avg)
    hook.before_run(runner)  # Runner.test() after Runner.train() runs before_run again
    assert torch.equal(hook.ema_model.module.weight, avg)
    hook.before_test_epoch(runner)
    assert torch.equal(model.weight, avg)  # the average is tested
    hook.after_test_epoch(runner)
    assert torch.equal(model.weight, raw)
    hook.swap = False
    hook.before_test_epoch(runner)
    assert torch.equal(model.weight, raw)  # the raw weights are tested
    hook.after_test_epoch(runner)


def test_ema_checkpoint_loaded_for_evaluation_gives_model_the_raw_weights():
    model, runner, hook = _ema_setup()
    _train_two_steps(model, runner, hook)
    raw, avg = model.weight.detach().clone(), hook.ema_model.module.weight.detach().clone()
    ckpt = dict(state_dict=copy.deepcopy(model.state_dict()))
    hook.before_save_checkpoint(runner, ckpt)
    assert torch.equal(ckpt["state_dict"]["weight"], avg)  # mmengine saves the average as the weights
    _, runner2, hook2 = _ema_setup()
    hook2.after_load_checkpoint(runner2, ckpt)
    assert torch.equal(ckpt["state_dict"]["weight"], raw)  # what the runner loads into the model
    assert torch.equal(hook2.ema_model.module.weight, avg)


def test_imagenet_recipe_end_to_end_on_a_tiny_imagefolder(tmp_path, capsys):
    write_imagefolder(tmp_path / "tree", per_class=2, classes=range(4))
    results = tmp_path / "r.jsonl"
    code, out, err = run_cli([
        "run", "--models", "dhvn_nano", "--suite", "imagenet", "--data-root", str(tmp_path / "tree"),
        "--epochs", "6", "--batch-size", "4", "--model-kwargs", "num_classes=4", "img_size=32",
        "--work-dir", str(tmp_path / "w"), "--results", str(results), "--cfg-options",
        "test_dataloader.batch_size=4", "train_dataloader.num_workers=0", "test_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False", "test_dataloader.persistent_workers=False",
        "train_dataloader.pin_memory=False", "test_dataloader.pin_memory=False"], capsys)
    assert code == 0, err
    (rec,) = read_jsonl(results)
    assert rec["train"]["iters"] == 12 and rec["train"]["epochs"] == 6  # 8 images, batch 4, drop_last
    assert rec["train"]["lr_scaled"] == pytest.approx(5e-4 * 4 / 512)  # auto_scale_lr to the batch
    for key in ("top1", "loss", "ema_top1", "ema_loss"):
        assert key in rec["metrics"]
    cfg = rec["config"]["resolved"]
    assert cfg["model"]["data_preprocessor"]["type"] == "MixupPreprocessor"
    assert cfg["model"]["channels_last"] is True
    assert cfg["train_dataloader"]["dataset"]["re_prob"] == 0.25
    warmup, cosine = cfg["param_scheduler"]
    assert (warmup["begin"], warmup["end"]) == (0, 5) and (cosine["begin"], cosine["end"]) == (5, 6)
    assert cosine["T_max"] == 1
