"""`python -m harness bench`: figures and conditions, fixed routing mixes, JSON, bad input.

Tiny shapes and one or two steps: these check what is reported and how, never how fast.
"""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from harness import benchkit
from harness.errors import HarnessError
from harness_testutils import assert_one_line_error, run_cli

FAST = ["--warmup", "0", "--iters", "2", "--threads", "1"]


def test_both_reports_speedup_flops_ratio_and_efficiency(tmp_path, capsys):
    out_file = tmp_path / "perf" / "b.json"
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "8", "--execution", "both",
                              "--policy", "skip=0.5", "--memory", *FAST, "--json-out", str(out_file)], capsys)
    assert code == 0, err
    for text in ("samples/s", "threads 1", "batch 8", f"torch {torch.__version__}", "dtype float32",
                 "speedup", "FLOPs ratio", "efficiency", "peak memory", "conv=0.50 both=0.50"):
        assert text in out, text
    doc = json.loads(out_file.read_text())
    assert doc["command"].startswith("python -m harness bench --models dhvn_nano")
    assert "--json-out" in doc["command"]
    (r,) = doc["results"]
    assert set(r["runs"]) == {"sparse", "dense"}
    # half the samples skip the transformer: dense computes strictly more
    assert r["flops"]["dense"] > r["flops"]["sparse"] > 0
    assert r["memory"]["sparse_peak_bytes"] > 0 and r["memory"]["dense_peak_bytes"] > 0
    assert r["input_shape"] == [8, 1, 28, 28]
    # the mix the model really took is the policy's draw, replayed: redraw it independently
    import zoo
    from harness import benchkit
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28)
    policy = benchkit.FrozenPolicy(benchkit.policy_for(model, {"skip": 0.5}), seed=0)
    for router in zoo.routing.routers(model):
        drawn = policy(router, torch.Size([8]))
        expected = {c: float((drawn == i).float().mean()) for i, c in enumerate(router.choices)}
        assert r["routing_mix"][router.layer] == pytest.approx(expected)
    # and the FLOPs ratio is what the counter gives for those decisions, dense against sparse
    x = torch.randn(8, 1, 28, 28)
    model.eval()
    with zoo.routing.force(model, policy):
        with zoo.routing.execution(model, "sparse"):
            sparse = zoo.flops.count_flops(model, x)
        with zoo.routing.execution(model, "dense"):
            dense = zoo.flops.count_flops(model, x)
    assert r["flops"]["sparse"] == sparse and r["flops"]["dense"] == dense


def test_lm_tokens_per_s_and_json_stdout(capsys):
    code, out, err = run_cli(["bench", "--models", "exp11_dynamic_tiny", "--batch-size", "2", "--seq-len", "48",
                              "--execution", "both", "--policy", "gdn=0.75,softmax=0.25", *FAST, "--json"], capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["suite"] == "pydocs" and r["input_shape"] == [2, 48]
    assert "tokens_per_s" in r["runs"]["sparse"]
    assert r["flops"]["dense"] > r["flops"]["sparse"]


def test_static_model_and_train_mode(capsys):
    code, out, err = run_cli(["bench", "--models", "dhvn_nano_static", "--batch-size", "4", *FAST], capsys)
    assert code == 0, err
    assert "static:" in out and "speedup" not in out
    code, out, err = run_cli(["bench", "--models", "eshvision_xs", "--batch-size", "4", "--train",
                              "--execution", "sparse", *FAST, "--json"], capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["train"] is True and list(r["runs"]) == ["sparse"]


def test_checkpoint_weights(trained_checkpoint, capsys):
    work, _ = trained_checkpoint
    ckpt = sorted(work.glob("*.pth"))[-1]
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "4", "--execution", "both",
                              "--checkpoint", str(ckpt), *FAST, "--json"], capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["checkpoint"] == str(ckpt) and r["policy"] is None and r["routing_mix"]
    code, out, err = run_cli(["bench", "--models", "eshvision_xs", "--checkpoint", str(ckpt), *FAST], capsys)
    assert_one_line_error(code, err, "does not fit eshvision_xs")


@pytest.mark.parametrize("model,full,cheap", [("dhvn_nano", "both", "conv"), ("eshvision_xs", "attention", "ssm"),
                                              ("exp11_dynamic_tiny", "softmax", "gdn")])
def test_skip_means_the_cheap_path(model, full, cheap):
    net = zoo.create_model(model)
    per_router = benchkit.policy_for(net, benchkit.parse_policy("skip=0.25"))
    assert per_router and all(s == {cheap: 0.25, full: 0.75} for s in per_router.values())


def test_frozen_policy_replays_the_same_draw():
    net = zoo.create_model("eshvision_xs", num_classes=10, in_chans=1, img_size=28).eval()
    policy = benchkit.FrozenPolicy(benchkit.policy_for(net, {"skip": 0.5}), seed=3)
    x = torch.randn(16, 1, 28, 28)
    decisions = []
    for mode in ("sparse", "dense", "sparse"):
        with benchkit.routing_context(net, mode, policy), torch.no_grad():
            net(x)
        decisions.append([rec.decisions.clone() for rec in zoo.routing.trace(net)])
    for a, b in zip(decisions[0], decisions[1]):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(decisions[0], decisions[2]))
    share = torch.cat([d.flatten() for d in decisions[0]]).float().mean().item()
    assert 0.35 < share < 0.65  # a 50 % draw over hundreds of patches


@pytest.mark.parametrize("args,fragments", [
    (["--models", "nosuch_model"], ["no model matches"]),
    (["--models", "dhvn_nano", "--suite", "nosuch"], ["unknown suite"]),
    (["--models", "exp11_dynamic_tiny", "--suite", "mnist5k"], ["causal-lm model"]),
    (["--models", "dhvn_nano", "--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["--models", "dhvn_nano", "--iters", "0"], ["--iters must be >= 1"]),
    (["--models", "dhvn_nano", "--warmup", "-1"], ["--warmup must be >= 0"]),
    (["--models", "dhvn_nano", "--policy", "skip=1.5"], ["outside [0, 1]"]),
    (["--models", "dhvn_nano", "--policy", "skip=abc"], ["not a number"]),
    (["--models", "dhvn_nano", "--policy", "conv=0.5,both=0.2"], ["sum to 0.7"]),
    (["--models", "dhvn_nano", "--policy", "skip=0.5,conv=0.5"], ["stands alone"]),
    (["--models", "dhvn_nano", "--policy", "ssm=1"], ["has choices conv, transformer, both"]),
    (["--models", "dhvn_nano", "--policy", ","], ["empty entry"]),
    (["--models", "dhvn_nano_static", "--execution", "both"], ["no routers", "--execution"]),
    (["--models", "exp11_baseline_tiny", "--policy", "skip=0.5"], ["no routers", "--policy"]),
    (["--models", "dhvn_nano*", "--checkpoint", "x.pth"], ["one model's weights"]),
    (["--models", "dhvn_nano", "--checkpoint", "/nonexistent/x.pth"], ["does not exist"]),
    (["--models", "dhvn_nano", "--model-kwargs", "nosuchkey=1"], ["cannot build dhvn_nano"]),
    (["--models", "dhvn_nano", "--model-kwargs", "depths=(1,)"], ["cannot build dhvn_nano", "one entry per stage"]),
    (["--models", "dhvn_nano", "--seq-len", "64"], ["--seq-len applies to LMs"]),
    (["--models", "exp11_dynamic_tiny", "--img-size", "32"], ["--img-size applies to image models"]),
    (["--models", "timm:resnet18", "--execution", "dense"], ["no routers"]),
])
def test_bad_input_is_one_line(args, fragments, tmp_path, capsys):
    out_file = tmp_path / "never.json"
    # the case's own flags come last, so they win over the defaults before them
    code, out, err = run_cli(["bench", *FAST, "--batch-size", "2", "--json-out", str(out_file), *args], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not out_file.exists()


def test_a_pattern_times_its_static_models_once_beside_the_routed_ones(tmp_path, capsys):
    out_file = tmp_path / "b.json"
    code, out, err = run_cli(["bench", "--models", "dhvn_nano*", "--batch-size", "2", "--execution", "both",
                              "--policy", "skip=0.5", *FAST, "--json-out", str(out_file)], capsys)
    assert code == 0, err
    routed, static = json.loads(out_file.read_text())["results"]
    assert (routed["model"], static["model"]) == ("dhvn_nano", "dhvn_nano_static")
    assert set(routed["runs"]) == {"sparse", "dense"} and "efficiency" in routed and "note" not in routed
    assert set(static["runs"]) == {"static"} and static["policy"] is None
    assert "efficiency" not in static and "flops" not in static
    assert static["note"] == "static model (no routers): timed once; --execution and --policy not applied"
    assert "note: static model" in out


def test_parse_policy_forms():
    assert benchkit.parse_policy("skip=0.25") == {"skip": 0.25}
    assert benchkit.parse_policy("conv") == {"conv": 1.0}
    assert benchkit.parse_policy("conv=0.3, both=0.7") == {"conv": 0.3, "both": 0.7}
    with pytest.raises(HarnessError):
        benchkit.parse_policy("conv=0.5,conv=0.5")


def test_bench_reports_progress_to_the_bar_it_runs_under(capsys):
    """perf_report runs bench inside its own bar: bench's bar joins it (rich allows one live display),
    and stdout keeps only the results."""
    from harness.progress import job_progress
    with job_progress() as bar:
        task = bar.add_task("outer", total=2)
        for _ in range(2):
            code, out, _ = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "4", "--iters", "1",
                                    "--warmup", "0", "--json"], capsys)
            assert code == 0
            assert json.loads(out)[0]["model"] == "dhvn_nano"
            bar.advance(task)
    assert bar.tasks[0].completed == 2


def test_results_file_has_timms_benchmark_columns(tmp_path, capsys):
    import pandas as pd
    out = tmp_path / "bench.csv"
    code, stdout, err = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "4", "--iters", "2", "--warmup",
                                 "0", "--execution", "both", "--json", "--results-file", str(out)], capsys)
    assert code == 0, err
    (result,) = json.loads(stdout)
    table = pd.read_csv(out)
    timm_columns = ["model", "infer_samples_per_sec", "infer_step_time", "infer_batch_size", "infer_img_size",
                    "infer_gmacs", "param_count"]
    assert list(table.columns[:len(timm_columns)]) == timm_columns
    assert list(table["execution"]) == ["sparse", "dense"]
    for _, row in table.iterrows():
        run = result["runs"][row["execution"]]
        assert row["infer_samples_per_sec"] == pytest.approx(run["samples_per_s"])
        assert row["infer_step_time"] == pytest.approx(run["step_ms_median"])
        assert row["infer_gmacs"] == pytest.approx(result["flops"][row["execution"]] / 2 / 4 / 1e9)
    assert table["param_count"].iloc[0] == pytest.approx(result["param_count"] / 1e6, abs=1e-3)
