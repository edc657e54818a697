"""Shipped pretrained tags (`dhvn_nano.mnist5k`) through the CLI: every verb that takes a model
takes one, builds it with the tag's weights, and refuses it on another suite or beside
--checkpoint in one line (harness/names.py; docs/DESIGN.md, "Pretrained tags in the CLI")."""
from __future__ import annotations

import json
import os

import mmengine.utils.progressbar  # noqa: F401  (imported at collection: see test_flops_cmd.py)
import pytest

from harness_testutils import TINY_DATA, assert_one_line_error, read_jsonl, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAG = "dhvn_nano.mnist5k"


def _leaderboard_top1(model: str) -> float:
    """The committed seed-0 record's top-1 (the README's 97.0 for dhvn_nano), as tests/test_pretrained.py reads it."""
    with open(os.path.join(REPO, "leaderboard", "results", "mnist5k.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return next(r for r in rows if r["model"] == model and r["seed"] == 0 and "budget" not in r)["metrics"]["top1"]


def test_run_eval_only_of_a_tag_reproduces_its_leaderboard_top1(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    code, out, err = run_cli(["run", "--eval-only", "--models", TAG, "--suite", "mnist5k", "--results", str(results),
                              "--work-dir", str(tmp_path / "w")], capsys)
    assert code == 0, err
    [record] = read_jsonl(results)
    # the whole 1,000-digit test split: the figure the README and the leaderboard state
    assert record["data"]["test_items"] == 1000
    assert record["metrics"]["top1"] == _leaderboard_top1("dhvn_nano") == 97.0
    assert record["model"] == TAG and record["family"] == "dhvn"
    train = record["train"]
    assert train["eval_only"] is True and train["checkpoint"] is None and train["iters"] is None
    assert train["pretrained"] == TAG and train["weights"] == f"zoo/weights/{TAG}.safetensors"
    assert len(train["weights_sha256"]) == 64
    assert record["command"][-4:] == ["--models", TAG, "--seeds", "0"] and "--eval-only" in record["command"]
    assert "untrained" not in err


def test_run_with_a_tag_fine_tunes_from_its_weights(tmp_path, capsys):
    # a vanishing learning rate: the one step keeps the shipped weights (a fresh dhvn_nano is at chance)
    code, out, err = run_cli(["run", "--models", TAG, "--suite", "mnist5k", "--max-iters", "1", "--lr", "1e-9",
                              "--batch-size", "16", "--results", str(tmp_path / "r.jsonl"),
                              "--work-dir", str(tmp_path / "w"), "--cfg-options", *TINY_DATA], capsys)
    assert code == 0, err
    [record] = read_jsonl(tmp_path / "r.jsonl")
    assert record["train"]["iters"] == 1 and record["train"]["pretrained"] == TAG
    assert "eval_only" not in record["train"]
    assert record["metrics"]["top1"] > 85


def test_bench_times_a_tag_on_its_suite(capsys):
    code, out, err = run_cli(["bench", "--models", TAG, "--batch-size", "4", "--warmup", "0", "--iters", "1",
                              "--json"], capsys)
    assert code == 0, err
    [result] = json.loads(out)
    assert result["model"] == TAG and result["suite"] == "mnist5k"


def test_flops_of_a_tag_counts_its_trained_routing(capsys):
    argv = ["flops", "--suite", "mnist5k", "--limit", "8", "--batch-size", "8", "--json", "--models"]
    code, out, err = run_cli(argv + [TAG], capsys)
    assert code == 0, err
    assert "never been trained" not in err and "untrained" not in err
    [tagged] = json.loads(out)
    code, out, _ = run_cli(argv + ["dhvn_nano"], capsys)
    [fresh] = json.loads(out)
    assert tagged["model"] == TAG and tagged["dense_gflops"] == pytest.approx(fresh["dense_gflops"])
    # a fresh router sends every digit to conv; the shipped one sends some to the transformer
    assert tagged["executed_gflops"] > fresh["executed_gflops"]


def test_visualize_draws_a_tag_without_checkpoint_or_suite(tmp_path, capsys):
    out_dir = tmp_path / "viz"
    code, out, err = run_cli(["visualize", "--model", TAG, "--n", "2", "--limit", "20", "--out", str(out_dir)], capsys)
    assert code == 0, err
    pictures = sorted(p for p in os.listdir(out_dir) if p.endswith(".json"))
    assert pictures and all(f"harness: wrote {out_dir}" in out for _ in pictures)
    with open(out_dir / pictures[0]) as f:
        meta = json.load(f)
    assert meta["model"] == TAG and meta["suite"] == "mnist5k" and meta["pretrained"] == TAG
    assert meta["checkpoint"] is None


def test_list_shows_the_tags(capsys):
    code, out, err = run_cli(["list"], capsys)
    assert code == 0, err
    assert "shipped pretrained tags" in out
    for tag in ("dhvn_nano.mnist5k", "eshvision_xs.mnist5k", "exp11_dynamic_tiny.pydocs"):
        assert tag in out
    code, out, err = run_cli(["list", "*.pydocs"], capsys)
    assert code == 0 and "exp11_dynamic_tiny.pydocs" in out and TAG not in out
    code, out, err = run_cli(["list", "dhvn_nano"], capsys)
    assert TAG in out and "eshvision_xs.mnist5k" not in out


@pytest.mark.parametrize("argv, fragments", [
    (["run", "--eval-only", "--models", TAG, "--suite", "pydocs"],
     ("dhvn_nano.mnist5k was trained on suite mnist5k, not pydocs", "--suite mnist5k")),
    (["bench", "--models", TAG, "--suite", "pydocs"], ("trained on suite mnist5k, not pydocs",)),
    (["flops", "--models", "exp11_dynamic_tiny.pydocs", "--suite", "pydocs1024"],
     ("trained on suite pydocs, not pydocs1024",)),
    (["visualize", "--model", TAG, "--suite", "pydocs"], ("trained on suite mnist5k, not pydocs",)),
    (["run", "--eval-only", "--models", "dhvn_nano.mnst5k", "--suite", "mnist5k"],
     ("no model matches 'dhvn_nano.mnst5k'", "closest: dhvn_nano.mnist5k")),
    (["bench", "--models", "eshvision_xs.cifar10"], ("no model matches", "eshvision_xs.mnist5k")),
    (["visualize", "--model", "dhvn_nano.bad"], ("no model matches 'dhvn_nano.bad'", "dhvn_nano.mnist5k")),
    (["run", "--eval-only", "--models", TAG, "--suite", "mnist5k", "--checkpoint", "x.pth"],
     ("shipped tag and brings its own weights", "untagged model dhvn_nano")),
    (["flops", "--models", TAG, "--suite", "mnist5k", "--checkpoint", "x.pth"], ("brings its own weights",)),
    (["run", "--eval-only", "--models", "dhvn_nano", "--suite", "mnist5k"],
     ("--eval-only needs --checkpoint PATH",)),
    (["flops", "--models", TAG, "--suite", "mnist5k", "--model-kwargs", "img_size=32"],
     ("was trained with img_size=28; got img_size=32",)),
])
def test_a_tag_misused_is_one_line(argv, fragments, tmp_path, capsys):
    if argv[0] == "run":
        argv = argv + ["--results", str(tmp_path / "r.jsonl"), "--work-dir", str(tmp_path / "w")]
    code, out, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "r.jsonl").exists()
