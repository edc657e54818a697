"""`python -m harness flops` and the `flops` field that `run` records."""
from __future__ import annotations

import json

import mmengine.utils.progressbar  # noqa: F401
import pytest
import torch

# (imported at collection: mmengine's ProgressBar binds sys.stdout as a default argument when
# first imported, and imported inside a capsys test it would keep that test's closed stream)
from harness_testutils import assert_one_line_error, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes (tests/conftest.py)


def _json(out: str) -> list:
    return json.loads(out)


def test_flops_table_and_json_agree_with_the_counter(capsys):
    import zoo
    from harness.measure.executed_flops import sample_indices
    from harness.suites import Mnist5k

    argv = ["flops", "--models", "dhvn_nano", "dhvn_nano_st*", "--suite", "mnist5k", "--limit", "8", "--batch-size", "4"]
    code, out, err = run_cli(argv + ["--json"], capsys)
    assert code == 0, err
    rows = {r["model"]: r for r in _json(out)}
    assert set(rows) == {"dhvn_nano", "dhvn_nano_static"}
    routed, static = rows["dhvn_nano"], rows["dhvn_nano_static"]
    assert routed["samples"] == 8 and routed["batch_size"] == 4 and routed["unit"] == "GFLOPs (2 x MACs)"
    assert static["saved"] == 0 and static["executed_gflops"] == static["dense_gflops"] > 0
    assert 0 < routed["saved"] < 1 and routed["executed_gflops"] < routed["dense_gflops"]
    # the same count by hand: same weights (seeded init is not needed: dense does not depend on
    # routing for DHVN and a fresh gate routes every sample to conv), same evenly spaced samples
    ds = Mnist5k(split="test")
    idx = sample_indices(len(ds), 8)
    assert idx == [0, 125, 250, 375, 500, 625, 750, 875]
    x = torch.stack([ds[i]["inputs"] for i in idx])
    net = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28, mean=(0.1307,), std=(0.3081,))
    report = zoo.flops.flops_report(net, x)
    assert routed["dense_gflops"] == pytest.approx(report["dense"] / 8 / 1e9, rel=1e-12)
    assert routed["executed_gflops"] == pytest.approx(report["executed"] / 8 / 1e9, rel=1e-12)

    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "executed MFLOPs/sample" in out and "FLOPs = 2 x MACs" in out and "dhvn_nano_static" in out


@pytest.mark.parametrize("suite", ["pydocs", "mqar256"])  # causal-lm and associative-recall
def test_flops_lm_reports_per_token(suite, capsys):
    code, out, err = run_cli(["flops", "--models", "exp11_dynamic_tiny", "--suite", suite, "--limit", "2",
                              "--json"], capsys)
    assert code == 0, err
    (row,) = _json(out)
    assert row["per_sample"] == "sequence" and row["tokens_per_sample"] == 256
    assert row["executed_gflops_per_token"] == pytest.approx(row["executed_gflops"] / 256)
    assert row["dense_gflops_per_token"] == pytest.approx(row["dense_gflops"] / 256)
    assert 0 < row["saved"] < 1
    code, out, err = run_cli(["flops", "--models", "exp11_dynamic_tiny", "--suite", suite, "--limit", "1"],
                             capsys)
    assert code == 0, err
    assert "MFLOPs/token" in out and "sequences" in out and f"{suite} eval set" in out


def test_flops_of_a_timm_peer_has_nothing_to_save(capsys):
    code, out, err = run_cli(["flops", "--models", "timm:resnet18", "--suite", "mnist5k", "--limit", "2",
                              "--json"], capsys)
    assert code == 0, err
    (row,) = _json(out)
    assert row["saved"] == 0 and row["executed_gflops"] == row["dense_gflops"] > 0


@pytest.mark.parametrize("argv, fragments", [
    (["--models", "dhvn_nan", "--suite", "mnist5k"], ["no model matches 'dhvn_nan'", "dhvn_nano"]),
    (["--models", "dhvn_nano", "--suite", "mnist"], ["unknown suite 'mnist'", "mnist5k"]),
    (["--models", "exp11_dynamic_tiny", "--suite", "mnist5k"], ["exp11_dynamic_tiny is a causal-lm model"]),
    (["--models", "dhvn_nano", "--suite", "mnist5k", "--limit", "0"], ["--limit must be >= 1, got 0"]),
    (["--models", "dhvn_nano", "--suite", "mnist5k", "--batch-size", "-2"], ["--batch-size must be >= 1"]),
    (["--models", "dhvn_nano*", "--suite", "mnist5k", "--checkpoint", "x.pth"], ["one model", "matched 4"]),   # dhvn_nano and its three static plans
    (["--models", "dhvn_nano", "--suite", "imagenet"], ["suite imagenet needs --data-root"]),
    (["--models", "dhvn_nano", "--suite", "mnist5k", "--model-kwargs", "nosuch=1"],
     ["cannot build dhvn_nano", "unknown field(s) nosuch"]),
])
def test_flops_bad_input_is_one_line(argv, fragments, capsys):
    code, out, err = run_cli(["flops", *argv], capsys)
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def test_flops_refuses_a_corrupt_or_foreign_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(["flops", "--models", "dhvn_nano", "--suite", "mnist5k", "--checkpoint", str(bad)],
                           capsys)
    assert_one_line_error(code, err, "corrupt")


def test_run_records_flops(trained_checkpoint):
    _, record = trained_checkpoint
    flops = record["flops"]
    # the tiny run evaluates 60 digits in batches of 30; all 60 are counted (flops_items = 256)
    assert flops["samples"] == 60 and flops["batch_size"] == 30
    assert flops["unit"] == "GFLOPs (2 x MACs)" and flops["per_sample"] == "image"
    assert 0 < flops["executed_gflops"] <= flops["dense_gflops"]
    assert flops["saved"] == pytest.approx(1 - flops["executed_gflops"] / flops["dense_gflops"])


def test_leaderboard_shows_per_image_and_per_token_flops(tmp_path):
    from leaderboard.render import build_leaderboard
    from leaderboard.store import append_record

    lm_flops = dict(executed_gflops=0.512, dense_gflops=0.64, saved=0.2, per_sample="sequence",
                    executed_gflops_per_token=0.002, dense_gflops_per_token=0.0025, tokens_per_sample=256)
    append_record(tmp_path / "pydocs.jsonl", dict(
        model="lm", suite="pydocs", seed=0, task="causal-lm", flops=lm_flops,
        metrics=dict(loss=1.0, perplexity=2.7, bits_per_byte=1.4), routing={}))
    append_record(tmp_path / "mnist5k.jsonl", dict(
        model="cnn", suite="mnist5k", seed=0, task="image-classification", routing={},
        flops=dict(executed_gflops=0.0123, dense_gflops=0.02, saved=0.385), metrics=dict(top1=90.0)))
    markdown, problems = build_leaderboard(tmp_path)
    assert problems == []
    lines = markdown.splitlines()
    lm_header = next(line for line in lines if "Perplexity" in line)
    assert "GFLOPs/token" in lm_header and "GFLOPs/sample" not in lm_header
    assert " 0.002 |" in next(line for line in lines if line.startswith("| lm "))
    assert "GFLOPs/sample" in next(line for line in lines if "Top-1" in line)
    assert "38.5%" in next(line for line in lines if line.startswith("| cnn "))
