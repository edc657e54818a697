"""One Task per task (harness/tasks.py), and the leaderboard's display twin keyed by the same names."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import METRICS, MODELS

import harness.engine.metrics  # noqa: F401  (registers the metrics)
import harness.engine.wrappers  # noqa: F401  (registers the wrappers)
import zoo
from harness.errors import HarnessError
from harness.names import check_tasks
from harness.suites import SUITES, ClutteredMnist, Mnist5k, MQAR, PyDocs
from harness.tasks import IGNORE_INDEX, TASKS, get_task
from leaderboard.aggregate import TASK_SPECS, summarize
from leaderboard.render import METRIC_COLUMNS
from leaderboard.store import TASKS as STORE_TASKS


def test_the_harness_tasks_and_the_leaderboard_specs_are_one_set_and_agree():
    assert set(TASKS) == set(TASK_SPECS) == set(STORE_TASKS)
    for name, task in TASKS.items():
        spec = TASK_SPECS[name]
        assert spec.throughput_key == f"{task.unit}_per_s"
        assert spec.flops_key.endswith("_per_token") == (task.per == "token")
        assert MODELS.get(task.wrapper) is not None and all(METRICS.get(m) is not None for m in task.metrics)
        assert SUITES[task.bench_suite].task == name
        assert zoo.list_models(tags={"task": task.model_task}), f"{name}: no zoo model declares {task.model_task}"
        # the board can label every column, and holds static plans to a metric it shows
        assert all(m in METRIC_COLUMNS for m in spec.metrics) and spec.quality in spec.metrics


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_config_uses_its_tasks_wrapper_and_metrics(suite):
    s = SUITES[suite]
    task = get_task(s.task)
    cfg = Config.fromfile(s.config)
    assert cfg.model["type"] == task.wrapper
    assert set(task.metrics) <= {m["type"] for m in cfg.test_evaluator}


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


@pytest.mark.parametrize("suite, dataset, kwargs", [
    ("mnist5k", lambda n: Mnist5k("test", limit=n), dict(in_chans=1, img_size=28)),
    ("cluttered112", lambda n: ClutteredMnist("test", img_size=112, fragments=16, limit=n),
     dict(in_chans=1, img_size=112)),
    ("mqar1024", lambda n: MQAR("test", max_seq_len=1024, num_kv_pairs=128, vocab_size=512, num_examples=500,
                                limit=n), dict(max_seq_len=1024, vocab_size=512)),
    ("pydocs1024", lambda n: PyDocs("test", max_seq_len=1024, limit=n), dict(max_seq_len=1024)),
])
def test_bench_inputs_of_an_embedded_or_generated_suite_are_its_test_items(suite, dataset, kwargs):
    batch = 64   # more than pydocs1024's test windows: the split repeats
    x, y, desc = get_task(SUITES[suite].task).inputs(SUITES[suite], batch, None, kwargs)
    ds = dataset(batch)
    items = [ds[i % len(ds)] for i in range(batch)]
    torch.testing.assert_close(x, torch.stack([it["inputs"] for it in items]), rtol=0, atol=0)
    torch.testing.assert_close(y, torch.stack([torch.as_tensor(it["data_samples"]) for it in items]), rtol=0, atol=0)
    assert desc.startswith(f"{suite} test ") and "random" not in desc


def test_associative_recall_runs_causal_lms_scores_queries_and_keeps_the_pair_share_at_other_lengths():
    task, suite = get_task("associative-recall"), SUITES["mqar256"]
    assert suite.task == SUITES["mqar1024"].task == "associative-recall" and task.model_task == "causal-lm"
    check_tasks(["exp11_dynamic_tiny", "exp11_baseline_tiny"], suite)
    with pytest.raises(HarnessError, match="dhvn_nano is a image-classification model .* pick a causal-lm model"):
        check_tasks(["dhvn_nano"], suite)
    ids, targets, desc = task.inputs(suite, 2, None, dict(max_seq_len=256, vocab_size=512))
    assert ids.shape == targets.shape == (2, 256) and task.items(ids) == 512
    assert ((targets != IGNORE_INDEX).sum(dim=1) == 32).all() and int(ids.max()) < 512
    ids, targets, desc = task.inputs(suite, 2, 1024, {})   # mqar256's 1 pair in 8 positions, at 1,024
    assert ids.shape == (2, 1024) and ((targets != IGNORE_INDEX).sum(dim=1) == 128).all() and "(128 pairs)" in desc
    longer, _ = MQAR.at_length(dict(max_seq_len=1024, num_kv_pairs=128, vocab_size=512), 4096)
    assert longer["num_kv_pairs"] == 255   # 512 would need more distinct keys than the vocabulary holds
    assert task.summary(dict(query_accuracy=0.5, loss=1.0)) == "query accuracy 0.5000 loss 1.0000"
    assert task.summary(dict(query_accuracy=0.5, loss=1.0, routing_precision=0.25, query_share=0.125)).endswith(
        "routing precision 0.250 (query share 0.125)")


def _recall_record(model, seed, accuracy, bits_per_byte, gflops, plans=None):
    metrics = dict(query_accuracy=accuracy, query_share=0.125, loss=1.0, perplexity=2.7,
                   bits_per_byte=bits_per_byte)
    return dict(model=model, suite="mqar1024", seed=seed, task="associative-recall", metrics=metrics,
                flops=dict(executed_gflops_per_token=gflops), throughput=dict(tokens_per_s=100.0),
                routing={}, static_plans=plans or [], created="2026-01-01T00:00:00Z")


def test_the_board_ranks_recall_by_query_accuracy_and_holds_static_plans_to_it():
    # plan_bpb has the routed model's bits/byte but not its accuracy; plan_acc the reverse
    records = [_recall_record("routed", s, 0.9 + 0.01 * s, 1.0, 1.0, ["plan_bpb", "plan_acc"]) for s in (0, 1)]
    records += [_recall_record("plan_bpb", s, 0.5, 1.0, 1.5) for s in (0, 1)]
    records += [_recall_record("plan_acc", s, 0.91, 3.0, 2.0) for s in (0, 1)]
    (table,), problems = summarize(records)
    assert not problems and table.task.name == "associative-recall"
    assert [r.model for r in table.rows] == ["plan_acc", "routed", "plan_bpb"]   # higher accuracy first
    routed = next(r for r in table.rows if r.model == "routed")
    assert routed.best_static == "plan_acc" and routed.saved_vs_best_static == pytest.approx(0.5)
    records = [dict(r, task=None) for r in records]   # records without a task: inferred from the metrics
    for r in records:
        del r["task"]
    assert summarize(records)[0][0].task.name == "associative-recall"
