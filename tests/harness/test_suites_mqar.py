"""mqar256 / mqar1024 (harness/suites/mqar.py): deterministic sequences that follow the Zoology
definition, scored at the queries only (RecallMetric, LMMetric); bad parameters are one line."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
from harness.engine.metrics import LMMetric
from harness.engine.wrappers import ZooLM
from harness.errors import HarnessError
from harness.suites.mqar import MQAR, gap_weights, generate
from harness.suites.recall_metric import RecallMetric
from harness.tasks import IGNORE_INDEX
from harness_testutils import assert_one_line_error, run_cli


def _metrics(metric, preds):
    metric.process(None, preds)
    return metric.compute_metrics(metric.results)


def _batch(ds, n):
    return torch.stack([ds[i]["inputs"] for i in range(n)]), torch.stack([ds[i]["data_samples"] for i in range(n)])


def test_the_generator_is_deterministic_from_its_seed():
    build = generate.__wrapped__  # past the per-process cache
    a, b = build("train", 300, 256, 32, 512, 0.01, 0), build("train", 300, 256, 32, 512, 0.01, 0)
    c, d = build("train", 300, 256, 32, 512, 0.01, 1), build("test", 300, 256, 32, 512, 0.01, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])  # other seed, other split
    kw = dict(max_seq_len=256, num_kv_pairs=32, vocab_size=512, num_examples=300)
    assert MQAR("test", **kw).tokens is MQAR("test", **kw).tokens  # built once per process


@pytest.mark.parametrize("T, N, V", [(256, 32, 512), (1024, 128, 512), (64, 16, 34)])
def test_pairs_come_first_and_each_key_is_queried_once_after_it(T, N, V):
    ds = MQAR("train", max_seq_len=T, num_kv_pairs=N, vocab_size=V, num_examples=200)
    x, y = _batch(ds, len(ds))
    assert x.shape == y.shape == (200, T) and x.dtype == y.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) < V
    keys, values = x[:, 0:2 * N:2], x[:, 1:2 * N:2]
    assert bool(((keys >= 1) & (keys < V // 2)).all()) and bool(((values >= V // 2) & (values < V)).all())
    assert all(len(set(r)) == N for r in keys.tolist()) and all(len(set(r)) == N for r in values.tolist())
    scored = y != IGNORE_INDEX
    assert bool((scored.sum(1) == N).all())                       # one query per pair
    assert not scored[:, :2 * N].any()                            # none among the pairs
    pos = scored.nonzero()[:, 1].reshape(200, N)
    assert bool(((pos - 2 * N) % 2 == 0).all())                   # on the query slots
    for row in range(200):
        pairs = dict(zip(keys[row].tolist(), values[row].tolist()))
        queried = x[row, pos[row]].tolist()
        assert sorted(queried) == sorted(pairs)                   # every key, defined earlier
        assert y[row, pos[row]].tolist() == [pairs[k] for k in queried]  # its value is the target


def test_query_gaps_follow_the_power_law():
    # one query per sequence: its slot is drawn with probability (g + 1) ** (a - 1) / sum
    for a in (0.01, 0.5):
        ds = MQAR("test", max_seq_len=64, num_kv_pairs=1, vocab_size=16, num_examples=20000, power_a=a)
        slots = (64 - 2) // 2
        gaps = (ds.query_positions[:, 0].long() - 2) // 2
        seen = torch.bincount(gaps, minlength=slots).double() / len(gaps)
        expected = gap_weights(slots, a) / gap_weights(slots, a).sum()
        assert float((seen - expected).abs().max()) < 0.01, a
    # mqar1024's 128 queries in 384 slots: the near slots fill first (uniform would fill a third
    # of every slot), and the farther an eighth of the slots, the fewer queries it holds
    ds = MQAR("test", max_seq_len=1024, num_kv_pairs=128, vocab_size=512, num_examples=500)
    gaps = (ds.query_positions.long() - 256) // 2
    eighths = (torch.bincount(gaps.flatten(), minlength=384).double() / 500).reshape(8, 48).mean(1)
    assert bool((eighths[1:] < eighths[:-1]).all()) and eighths[0] > 0.7 and eighths[-1] < 0.2


class _Fixed(nn.Module):
    """A network whose logits are given: it is right exactly where the test says."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_the_loss_and_the_accuracy_count_query_positions_only():
    ds = MQAR("test", max_seq_len=64, num_kv_pairs=8, vocab_size=32, num_examples=4)
    x, y = _batch(ds, 4)
    scored = y != IGNORE_INDEX
    right = F.one_hot(torch.where(scored, y, 0), 32).float() * 5.0  # right at the queries only
    wrong_at_queries = F.one_hot(torch.where(scored, (y + 1) % 32, x), 32).float() * 5.0
    model = ZooLM("exp11_baseline_tiny", arch_kwargs=dict(vocab_size=32, max_seq_len=64)).eval()
    for logits, accuracy in ((right, 1.0), (wrong_at_queries, 0.0)):
        model.net = _Fixed(logits)
        with torch.no_grad():
            preds = model(x, y, mode="predict")
        assert _metrics(RecallMetric(), preds)["query_accuracy"] == accuracy
        assert _metrics(RecallMetric(), preds)["query_share"] == pytest.approx(8 / 64)
        ce = F.cross_entropy(logits[scored], y[scored])  # the mean over the 32 queries, nothing else
        assert _metrics(LMMetric(), preds)["loss"] == pytest.approx(float(ce), rel=1e-5)
    # training skips the same positions
    model.train()
    loss = model(x, y, mode="loss")["loss_lm"]
    assert float(loss) == pytest.approx(float(F.cross_entropy(wrong_at_queries[scored], y[scored])), rel=1e-5)


def test_routing_precision_is_the_share_of_softmax_reads_at_queries():
    ds = MQAR("test", max_seq_len=64, num_kv_pairs=8, vocab_size=32, num_examples=6)
    x, y = _batch(ds, 6)
    torch.manual_seed(0)
    model = ZooLM("exp11_dynamic_tiny", arch_kwargs=dict(vocab_size=32, max_seq_len=64)).eval()
    half = zoo.routing.random_policy(dict(gdn=0.5, softmax=0.5), torch.Generator().manual_seed(0))
    with torch.no_grad(), zoo.routing.force(model.net, half):  # an untrained router reads little softmax
        preds = model(x, y, mode="predict")
    out = _metrics(RecallMetric(), preds)
    queries, reads, at_queries = (y != IGNORE_INDEX), 0, 0
    records = zoo.routing.trace(model.net)
    assert len(records) == 2
    for rec in records:
        softmax = rec.decisions == list(rec.choices).index("softmax")
        here = int((softmax & queries).sum())
        reads, at_queries = reads + int(softmax.sum()), at_queries + here
        assert out[f"routing_precision/{rec.layer}"] == pytest.approx(here / int(softmax.sum()))
        assert out[f"routing_recall/{rec.layer}"] == pytest.approx(here / int(queries.sum()))
    assert 0 < at_queries < reads < 2 * x.numel()
    assert out["routing_precision"] == pytest.approx(at_queries / reads)
    assert out["routing_recall"] == pytest.approx(at_queries / (2 * int(queries.sum())))
    static = ZooLM("exp11_baseline_tiny", arch_kwargs=dict(vocab_size=32, max_seq_len=64)).eval()
    with torch.no_grad():
        assert "routing_precision" not in _metrics(RecallMetric(), static(x, y, mode="predict"))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(num_kv_pairs=0), "num_kv_pairs must be an integer >= 1"),
    (dict(num_kv_pairs=65), "max_seq_len must be an integer >= 260"),
    (dict(vocab_size=20), "vocab_size must be an integer >= 34"),
    (dict(num_examples=0), "num_examples must be an integer >= 1"),
    (dict(power_a=0), "power_a must be a number in (0, 1]"),
    (dict(power_a=float("nan")), "power_a must be a number in (0, 1]"),
    (dict(split="val"), "split must be 'train' or 'test'"),
])
def test_bad_parameters_are_refused_in_one_line(kwargs, fragment):
    with pytest.raises(HarnessError, match="MQAR") as e:
        MQAR(**{"split": "test", "max_seq_len": 256, "num_kv_pairs": 16, "vocab_size": 512, **kwargs})
    assert fragment in str(e.value) and "\n" not in str(e.value)


def _run(tmp_path, capsys, suite, option):
    return run_cli(["run", "--models", "exp11_baseline_tiny", "--suite", suite, "--work-dir", str(tmp_path / "w"),
                    "--results", str(tmp_path / "r.jsonl"), "--cfg-options", option], capsys)


@pytest.mark.parametrize("suite, option, fragment", [
    ("mqar256", "test_dataloader.dataset.num_kv_pairs=100", "max_seq_len must be an integer >= 400"),
    ("mqar1024", "test_dataloader.dataset.vocab_size=100", "vocab_size must be an integer >= 258"),
])
def test_a_bad_suite_parameter_is_one_line_and_exit_2(tmp_path, capsys, suite, option, fragment):
    code, _, err = _run(tmp_path, capsys, suite, option)
    assert_one_line_error(code, err, "MQAR", fragment)
    assert not (tmp_path / "r.jsonl").exists()


def test_data_with_a_larger_vocabulary_than_the_model_is_refused(tmp_path, capsys):
    code, _, err = _run(tmp_path, capsys, "mqar256", "test_dataloader.dataset.vocab_size=1024")
    assert_one_line_error(code, err, "suite mqar256 has a vocabulary of 1024 tokens", "vocab_size=512",
                          "--model-kwargs vocab_size=1024")
    assert not (tmp_path / "r.jsonl").exists()


def test_a_run_records_the_associative_recall_task_with_query_accuracy(tmp_path, capsys):
    from harness_testutils import read_jsonl
    results = tmp_path / "r.jsonl"
    code, out, err = run_cli(["run", "--models", "exp11_dynamic_tiny", "--suite", "mqar256", "--max-iters", "1",
                              "--batch-size", "2", "--work-dir", str(tmp_path / "w"), "--results", str(results),
                              "--cfg-options", "test_dataloader.dataset.limit=4", "test_dataloader.batch_size=2"],
                             capsys)
    assert code == 0, err
    (rec,) = read_jsonl(results)
    assert rec["task"] == "associative-recall" and rec["data"]["query_share"] == 32 / 256
    m = rec["metrics"]
    assert 0 <= m["query_accuracy"] <= 1 and m["query_share"] == pytest.approx(32 / 256)
    assert 0 <= m["routing_precision"] <= 1 and m["loss"] > 0
    assert rec["flops"]["executed_gflops_per_token"] > 0 and rec["throughput"]["tokens_per_s"] > 0
    assert "query accuracy" in out and "bpb" not in out
