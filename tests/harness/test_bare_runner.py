"""Every suite config is a complete mmengine config: `Config.fromfile` and `Runner.from_cfg`
run it with no harness CLI in between (its custom_imports register the harness's parts)."""
from __future__ import annotations

import glob
import os

import pytest
from mmengine.config import Config

import harness
from harness.errors import HarnessError
from harness.engine.schedule import finalize_schedule, follow_loop, loop_total
from harness_testutils import write_imagefolder

CONFIGS = os.path.join(os.path.dirname(harness.__file__), "configs")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "*.py"))), ids=os.path.basename)
def test_suite_configs_have_no_holes(path):
    cfg = Config.fromfile(path)
    assert cfg.model["arch"]
    assert cfg.custom_imports["imports"] == ["harness"]
    for s in cfg.param_scheduler:
        assert s["end"] is not None and s.get("T_max", 0) is not None, s
    total = loop_total(cfg.train_cfg)
    assert max(s["end"] for s in cfg.param_scheduler) == total  # the schedule ends with training


def _bare_run(cfg, tmp_path):
    from mmengine.runner import Runner
    cfg.work_dir = str(tmp_path / "work")
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.test()


def test_bare_runner_trains_and_tests_mnist5k(tmp_path):
    cfg = Config.fromfile(os.path.join(CONFIGS, "mnist5k.py"))
    cfg.merge_from_dict({"train_cfg.max_iters": 4, "train_dataloader.batch_size": 16,
                         "test_dataloader.dataset.limit": 40, "test_dataloader.batch_size": 20})
    metrics = _bare_run(cfg, tmp_path)
    assert 0 <= metrics["top1"] <= 100 and metrics["loss"] > 0


def test_bare_runner_trains_and_tests_pydocs(tmp_path):
    cfg = Config.fromfile(os.path.join(CONFIGS, "pydocs.py"))
    cfg.merge_from_dict({"train_cfg.max_iters": 2, "train_dataloader.batch_size": 2,
                         "test_dataloader.dataset.limit": 4, "test_dataloader.batch_size": 2})
    assert _bare_run(cfg, tmp_path)["loss"] > 0


def test_pydocs1024_is_pydocs_at_1024_tokens_with_as_many_tokens_per_step(tmp_path, capsys):
    from mmengine.registry import DATASETS
    from harness_testutils import run_cli
    base, cfg = (Config.fromfile(os.path.join(CONFIGS, f"{name}.py")) for name in ("pydocs", "pydocs1024"))
    for split in ("train_dataloader", "test_dataloader"):
        item = DATASETS.build(cfg[split]["dataset"])[0]
        assert item["inputs"].shape == item["data_samples"].shape == (1024,)
    assert cfg.model["arch_kwargs"]["max_seq_len"] == 1024 and cfg.suite == "pydocs1024"
    tokens = lambda c: c.train_dataloader["batch_size"] * c.train_dataloader["dataset"]["max_seq_len"]
    assert tokens(cfg) == tokens(base)
    # nothing else differs from pydocs: the same recipe
    for key in ("optim_wrapper", "param_scheduler", "train_cfg", "test_evaluator"):
        assert cfg[key] == base[key], key
    cfg.merge_from_dict({"train_cfg.max_iters": 1, "param_scheduler.0.end": 1, "param_scheduler.1.end": 1,
                         "param_scheduler.1.T_max": 1, "test_dataloader.dataset.limit": 2,
                         "test_dataloader.batch_size": 2})
    assert _bare_run(cfg, tmp_path)["loss"] > 0
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "pydocs1024" in out


def test_bare_runner_runs_the_imagenet_recipe(tmp_path):
    write_imagefolder(tmp_path / "tree", per_class=2, classes=range(4))
    cfg = Config.fromfile(os.path.join(CONFIGS, "imagenet.py"))
    root = str(tmp_path / "tree")
    cfg.merge_from_dict({
        "model.arch": "dhvn_nano", "model.arch_kwargs.num_classes": 4, "model.arch_kwargs.img_size": 32,
        "train_dataloader.dataset.root": root, "test_dataloader.dataset.root": root,
        "train_dataloader.dataset.img_size": 32, "test_dataloader.dataset.img_size": 32,
        "train_dataloader.batch_size": 4, "test_dataloader.batch_size": 4,
        "train_dataloader.num_workers": 0, "test_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False, "test_dataloader.persistent_workers": False,
        "train_cfg.max_epochs": 6, "param_scheduler.1.end": 6, "param_scheduler.1.T_max": 1})
    assert _bare_run(cfg, tmp_path)["loss"] > 0


def _schedule(total=30, begin=0):
    return Config(dict(train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=total), param_scheduler=[
        dict(type="LinearLR", by_epoch=True, begin=0, end=5),
        dict(type="CosineAnnealingLR", by_epoch=True, begin=begin, end=total, T_max=total - begin)]))


def test_schedule_follows_a_changed_loop():
    cfg = _schedule(begin=5)
    cfg.train_cfg["max_epochs"] = 12  # --epochs or --cfg-options train_cfg.max_epochs=12
    follow_loop(cfg, 30)
    finalize_schedule(cfg)
    warmup, cosine = cfg.param_scheduler
    assert warmup["end"] == 5  # a warm-up keeps its length
    assert (cosine["begin"], cosine["end"], cosine["T_max"]) == (5, 12, 7)


def test_schedule_untouched_when_the_loop_is_not_changed():
    cfg = _schedule(begin=0)
    cfg.param_scheduler[1]["T_max"] = 40  # a deliberate T_max longer than training stays
    follow_loop(cfg, 30)
    finalize_schedule(cfg)
    assert cfg.param_scheduler[1]["T_max"] == 40 and cfg.param_scheduler[1]["end"] == 30


def test_loop_shorter_than_warmup_is_a_one_line_error():
    cfg = _schedule(begin=5)
    cfg.train_cfg["max_epochs"] = 3
    follow_loop(cfg, 30)
    with pytest.raises(HarnessError, match="begins at 5 but training ends at 3"):
        finalize_schedule(cfg)


def test_compile_flag_sets_mmengines_compile_and_replays():
    """--compile is mmengine's cfg.compile (torch.compile of the train step) and is recorded in the
    command that replays the run. Compiling itself is not run here: a routed model's step took
    minutes to compile on CPU (see the issue 12 note)."""
    from harness.run import RunOptions, RunPlan, build_config
    from harness.suites import get_suite
    opts = RunOptions(compile=True)
    cfg = build_config(get_suite("mnist5k"), "dhvn_nano", 0, opts, "cpu")
    assert cfg.compile is True
    assert "compile" not in build_config(get_suite("mnist5k"), "dhvn_nano", 0, RunOptions(), "cpu")
    plan = RunPlan(suite=get_suite("mnist5k"), model="dhvn_nano", seed=0, opts=opts, cfg=cfg)
    assert "--compile" in plan.command()
