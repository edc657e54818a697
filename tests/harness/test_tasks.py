"""One Task per task (harness/tasks.py), and the leaderboard's display twin keyed by the same names."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import METRICS, MODELS

import harness.engine.metrics  # noqa: F401  (registers the metrics)
import harness.engine.wrappers  # noqa: F401  (registers the wrappers)
from harness.suites import SUITES
from harness.tasks import TASKS, get_task
from leaderboard.aggregate import TASK_SPECS
from leaderboard.store import TASKS as STORE_TASKS


def test_the_harness_tasks_and_the_leaderboard_specs_are_one_set_and_agree():
    assert set(TASKS) == set(TASK_SPECS) == set(STORE_TASKS)
    for name, task in TASKS.items():
        spec = TASK_SPECS[name]
        assert spec.throughput_key == f"{task.unit}_per_s"
        assert spec.flops_key.endswith("_per_token") == (task.per == "token")
        assert MODELS.get(task.wrapper) is not None and METRICS.get(task.metric) is not None
        assert SUITES[task.bench_suite].task == name


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_config_uses_its_tasks_wrapper_and_metric(suite):
    s = SUITES[suite]
    task = get_task(s.task)
    cfg = Config.fromfile(s.config)
    assert cfg.model["type"] == task.wrapper
    assert task.metric in [m["type"] for m in cfg.test_evaluator]


def test_each_task_makes_its_bench_inputs_and_counts_its_items():
    image, lm = get_task("image-classification"), get_task("causal-lm")
    x, y, desc = image.inputs(SUITES["mnist5k"], 3, None, dict(in_chans=1, img_size=28))
    assert x.shape == (3, 1, 28, 28) and y.shape == (3,) and image.items(x) == 3 and "mnist5k" in desc
    ids, targets, desc = lm.inputs(SUITES["pydocs"], 2, 64, dict(vocab_size=256))
    assert ids.shape == targets.shape == (2, 64) and lm.items(ids) == 128
    torch.testing.assert_close(ids[:, 1:], targets[:, :-1])   # targets are the next bytes
    assert "top1 97.00%" in image.summary(dict(top1=97.0, top5=99.9, loss=0.1))
    assert "bpb 1.8000" in lm.summary(dict(loss=1.2, perplexity=3.3, bits_per_byte=1.8))
    with pytest.raises(ValueError, match="unknown task 'segmentation'"):
        get_task("segmentation")
