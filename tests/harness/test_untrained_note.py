"""Routing figures of routers that were never trained come with one line saying so
(docs/DESIGN.md, "Untrained routers"): flops, bench, visualize, run and compare, through the CLI."""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from harness.measure.untrained import untrained_note, untrained_routers
from harness_testutils import read_jsonl, run_cli, tiny_run_args

NOTE = "never been trained"
MNIST = dict(num_classes=10, in_chans=1, img_size=28)


@pytest.mark.parametrize("name, kwargs", [("dhvn_nano", MNIST), ("eshvision_xs", MNIST),
                                          ("exp11_dynamic_tiny", {})])
def test_fresh_gates_are_untrained_and_one_step_is_not(name, kwargs):
    net = zoo.create_model(name, **kwargs)
    routers = zoo.routing.routers(net)
    assert routers and len(untrained_routers(net)) == len(routers)
    assert "its routers have never been trained" in untrained_note(net, name)
    with torch.no_grad():
        routers[0].net[-1].weight.add_(1e-3)  # as an optimiser step would
    assert len(untrained_routers(net)) == len(routers) - 1
    assert f"{len(routers) - 1} of its {len(routers)} routers" in untrained_note(net, name)
    static = zoo.create_model("dhvn_nano_static", **MNIST)
    assert untrained_note(static, "dhvn_nano_static") is None


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(trained, fresh): a 2-iteration checkpoint, and the same file with its gates set back to init."""
    from harness.cli import main
    tmp = tmp_path_factory.mktemp("untrained")
    try:
        main(tiny_run_args(tmp, "--max-iters", "2", "--no-record"))
    except SystemExit as e:
        assert not e.code
    trained = tmp / "work" / "iter_2.pth"
    from harness.engine.checkpoint import load_checkpoint_file
    ckpt = load_checkpoint_file(str(trained))  # weights_only=True with mmengine's classes allowlisted
    fresh_net = zoo.create_model("dhvn_nano", **MNIST)
    for name, module in fresh_net.named_modules():
        if isinstance(module, zoo.routing.Router):
            last = f"net.{name}.net.{len(module.net) - 1}"
            ckpt["state_dict"][f"{last}.weight"] = module.net[-1].weight.detach().clone()
            ckpt["state_dict"][f"{last}.bias"] = module.net[-1].bias.detach().clone()
    fresh = tmp / "fresh.pth"
    torch.save(ckpt, fresh)
    return str(trained), str(fresh)


def _notes(err: str) -> list:
    return [line for line in err.splitlines() if NOTE in line or "never trained" in line]


def test_flops_says_so_for_a_fresh_model_only(checkpoints, capsys):
    trained, _ = checkpoints
    code, out, err = run_cli(["flops", "--models", "dhvn_nano", "--suite", "mnist5k", "--limit", "8", "--json"],
                             capsys)
    assert code == 0, err
    assert _notes(err) == ["harness: note: dhvn_nano: its routers have never been trained (gates at their zero "
                           "init, so every item takes the cheapest choice); its routing figures describe no "
                           "trained model: give trained weights (--checkpoint)"]
    json.loads(out)  # the note is on stderr: stdout stays one JSON document
    code, out, err = run_cli(["flops", "--models", "dhvn_nano", "--suite", "mnist5k", "--limit", "8",
                              "--checkpoint", trained], capsys)
    assert code == 0 and not _notes(err), err


def test_bench_says_so(capsys):
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "--suite", "mnist5k", "--batch-size", "4",
                              "--warmup", "0", "--iters", "1", "--threads", "1"], capsys)
    assert code == 0, err
    assert len(_notes(err)) == 1 and "dhvn_nano: its routers" in err


def test_visualize_says_so_for_fresh_weights(checkpoints, tmp_path, capsys):
    _, fresh = checkpoints
    code, out, err = run_cli(["visualize", "--model", "dhvn_nano", "--suite", "mnist5k", "--checkpoint", fresh,
                              "--n", "2", "--limit", "40", "--out", str(tmp_path / "pics")], capsys)
    assert code == 0, err
    assert len(_notes(err)) == 1


def test_run_eval_only_records_it_and_compare_says_so(checkpoints, tmp_path, capsys):
    trained, fresh = checkpoints
    results = tmp_path / "results" / "mnist5k.jsonl"
    results.parent.mkdir()
    code, out, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", fresh, results=results,
                                           work_dir=tmp_path / "eval"), capsys)
    assert code == 0, err
    assert len(_notes(err)) == 1
    (rec,) = read_jsonl(results)
    assert rec["routing"] and all(r["untrained"] is True for r in rec["routing"].values())
    (tmp_path / "no_logs").mkdir()
    code, out, err = run_cli(["compare", "--models", "dhvn_nano", "--suite", "mnist5k",
                              "--results-dir", str(results.parent), "--work-dirs", str(tmp_path / "no_logs"),
                              "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    assert _notes(err) == ["harness: note: dhvn_nano: routing figures from routers that were never trained "
                           "(gates at their zero init, every item on the cheapest choice)"]
    assert "never trained" in (tmp_path / "cmp" / "compare.md").read_text()
    # trained weights: no note, no flag
    code, out, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", trained,
                                           results=tmp_path / "r2.jsonl", work_dir=tmp_path / "eval2"), capsys)
    assert code == 0 and not _notes(err), err
    assert not any("untrained" in r for r in read_jsonl(tmp_path / "r2.jsonl")[0]["routing"].values())
