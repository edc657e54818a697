"""`python -m harness bench`: figures and conditions, fixed routing mixes, JSON, bad input.

Tiny shapes and one or two steps: these check what is reported and how, never how fast.
"""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

import zoo
from harness.measure import benchkit
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
    from harness.measure import benchkit
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


@pytest.mark.parametrize("model, suite, shape, desc", [
    ("dhvn_nano", "cluttered112", [2, 1, 112, 112], "cluttered112 test images, 2x1x112x112"),
    ("exp11_dynamic_tiny", "mqar256", [2, 256], "mqar256 test sequences, 2x256 tokens"),
])
def test_a_generated_suite_is_timed_on_its_own_test_items(model, suite, shape, desc, capsys):
    code, out, err = run_cli(["bench", "--models", model, "--suite", suite, "--batch-size", "2", *FAST, "--json"],
                             capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["suite"] == suite and r["input_shape"] == shape and r["inputs"] == desc


def test_static_model_and_train_mode(capsys):
    code, out, err = run_cli(["bench", "--models", "dhvn_nano_static", "--batch-size", "4", *FAST], capsys)
    assert code == 0, err
    assert "static:" in out and "speedup" not in out
    code, out, err = run_cli(["bench", "--models", "eshvision_xs", "--batch-size", "4", "--train",
                              "--execution", "sparse", *FAST, "--json"], capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["train"] is True and list(r["runs"]) == ["sparse"]


def test_compile_times_the_compiled_model(monkeypatch, capsys):
    """--compile times what torch.compile returns (compiling for real takes minutes on CPU for a
    routed model, see the issue 12 note; here a wrapper stands in and counts its calls)."""
    calls = []

    def fake_compile(model, **kw):
        def compiled(x):
            calls.append(x.shape)
            return model(x)
        return compiled
    monkeypatch.setattr(torch, "compile", fake_compile)
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "4", "--execution", "both",
                              "--compile", *FAST, "--json"], capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["compile"] is True
    warmup, iters = int(FAST[FAST.index("--warmup") + 1]), int(FAST[FAST.index("--iters") + 1])
    assert len(calls) == 2 * (warmup + iters)  # every sparse and dense step went through it


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
    (["--models", "dhvn_nano", "--seq-len", "64"], ["--seq-len applies to causal-lm models", "use --img-size"]),
    (["--models", "exp11_dynamic_tiny", "--img-size", "32"],
     ["--img-size applies to image-classification models", "use --seq-len"]),
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
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "dhvn_nano_st*", "--batch-size", "2", "--execution", "both",
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


# --------------------------------------------------------------- trust: threads, spread, load, reference

class _FakeWindow:
    """A CpuWindow whose other_load() reads the next value of a shared script of loads."""
    def __init__(self, loads):
        self.loads = loads

    def __call__(self):
        return self

    def other_load(self):
        return self.loads.pop(0)


def test_spread_is_min_median_max_of_the_rounds():
    assert benchkit.spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
    assert benchkit.spread([0.5, 0.25], 1e3) == {"min": 250.0, "median": 375.0, "max": 500.0}
    assert benchkit.pair_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError):
        benchkit.spread([])


def test_load_gate_waits_for_quiet_then_judges_the_timed_window():
    sleeps = []
    # probes before: 1.2 (busy), 0.9 (busy), 0.1 (quiet): the gate waits two probes; during: 0.2
    gate = benchkit.LoadGate(max_load=0.5, max_wait_s=10, probe_s=1.0,
                             window=_FakeWindow([1.2, 0.9, 0.1, 0.2]), sleep=sleeps.append)
    with gate.watch() as rec:
        pass
    assert sleeps == [1.0, 1.0, 1.0] and rec["waited_s"] == 2.0
    assert rec["other_load_before"] == 0.1 and rec["other_load"] == 0.2
    assert rec["reliable"] is True and rec["why_unreliable"] is None and rec["max_load"] == 0.5
    assert "loadavg_before" in rec and "loadavg_after" in rec


def test_load_gate_gives_up_after_max_wait_and_marks_the_figure_unreliable():
    sleeps = []
    gate = benchkit.LoadGate(max_load=0.5, max_wait_s=2, probe_s=1.0,
                             window=_FakeWindow([1.5] * 3 + [0.1]), sleep=sleeps.append)
    with gate.watch() as rec:
        pass
    assert len(sleeps) == 3 and rec["waited_s"] == 2.0  # bounded: three probes, then it times anyway
    assert rec["reliable"] is False and "before 1.50" in rec["why_unreliable"]
    # quiet before but busy while timing: still unreliable
    gate = benchkit.LoadGate(max_load=0.5, window=_FakeWindow([0.0, 0.8]), sleep=lambda s: None)
    with gate.watch() as rec:
        pass
    assert rec["reliable"] is False and "during 0.80" in rec["why_unreliable"]


def test_load_gate_runs_a_disturbed_figure_once_more():
    calls = []
    # first run: quiet before (0.1), busy during (0.9); second: quiet before and during
    gate = benchkit.LoadGate(max_load=0.5, window=_FakeWindow([0.1, 0.9, 0.0, 0.2]), sleep=lambda s: None)
    out, rec = gate.run(lambda: calls.append(1) or len(calls))
    assert out == 2 and rec["attempts"] == 2 and rec["reliable"] is True
    # still disturbed on the retry: the last run is kept, marked
    gate = benchkit.LoadGate(max_load=0.5, window=_FakeWindow([0.1, 0.9, 0.1, 0.7]), sleep=lambda s: None)
    out, rec = gate.run(lambda: "figure")
    assert out == "figure" and rec["attempts"] == 2 and rec["reliable"] is False and rec["other_load"] == 0.7


def test_load_gate_without_a_threshold_records_only():
    gate = benchkit.LoadGate(window=_FakeWindow([0.7]), sleep=lambda s: pytest.fail("no probe without a threshold"))
    with gate.watch() as rec:
        pass
    assert rec["other_load"] == 0.7 and rec["reliable"] is None and rec["waited_s"] == 0.0


def test_cpu_window_counts_other_processes_not_this_one(monkeypatch):
    hz = os.sysconf("SC_CLK_TCK")
    # over 2 s the machine was busy 3 s of CPU, 2 s of which were this process's: others used 0.5 cores
    ticks = iter([(10 * hz, 4 * hz), (13 * hz, 6 * hz)])
    clock = iter([100.0, 102.0])
    monkeypatch.setattr(benchkit, "_jiffies", lambda: next(ticks))
    monkeypatch.setattr(benchkit.time, "monotonic", lambda: next(clock))
    assert benchkit.CpuWindow().other_load() == pytest.approx(0.5)
    monkeypatch.undo()
    real = benchkit._jiffies()
    assert real is None or real[0] >= real[1] >= 0  # the machine's busy time includes ours


def test_threads_list_times_each_count_with_spread_load_and_static_reference(tmp_path, capsys):
    out_file = tmp_path / "b.json"
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "4", "--execution", "both",
                              "--policy", "skip=0.5", "--static-reference", "--warmup", "0", "--iters", "2",
                              "--threads", "1", "2", "--max-load", "100", "--json-out", str(out_file)], capsys)
    assert code == 0, err
    r1, r2 = json.loads(out_file.read_text())["results"]
    assert (r1["conditions"]["threads"], r2["conditions"]["threads"]) == (1, 2)
    for r in (r1, r2):
        assert set(r["runs"]) == {"sparse", "dense", "reference"}
        for run in r["runs"].values():
            assert run["step_ms_min"] <= run["step_ms_median"] <= run["step_ms_max"]
        s = r["speedup_spread"]
        assert s["min"] <= s["median"] == r["speedup_median"] <= s["max"]
        assert r["efficiency_spread"]["median"] == pytest.approx(r["efficiency"])
        assert r["load"]["reliable"] is True and r["load"]["max_load"] == 100
        ref = r["reference"]
        assert ref["model"] == "dhvn_nano_static"
        # the static form has no router: the FLOPs routing saves against it are those against dense,
        # less the routers' own Linear layers
        assert r["flops"]["sparse"] < r["flops"]["reference"] < r["flops"]["dense"]
        assert ref["flops_ratio"] == pytest.approx(r["flops"]["reference"] / r["flops"]["sparse"])
        assert ref["efficiency"] == pytest.approx(ref["speedup_median"] / ref["flops_ratio"])
    assert r1["flops"] == r2["flops"] and r1["routing_mix"] == r2["routing_mix"]
    assert "against dhvn_nano_static" in out and "load: average" in out


@pytest.mark.parametrize("model,full", [("dhvn_nano", "both"), ("exp11_dynamic_tiny", "softmax")])
def test_static_reference_computes_the_full_path(model, full):
    """The reference is the routed model's full choice without routing: with the routed weights it
    gives the routed model's output when every item is forced to the full path."""
    from harness.measure.static_reference import static_reference
    kwargs = dict(num_classes=10, in_chans=1, img_size=28) if model.startswith("dhvn") else {}
    net = zoo.create_model(model, **kwargs).eval()
    name, ref = static_reference(model, net, lambda n: zoo.create_model(n, **kwargs))
    assert not zoo.routing.routers(ref)
    x = torch.randn(3, 1, 28, 28) if kwargs else torch.randint(0, 256, (2, 40))
    with torch.no_grad(), zoo.routing.execution(net, "sparse"), zoo.routing.force(net, full):
        expected = net(x)
    with torch.no_grad():
        assert torch.allclose(ref(x), expected, atol=1e-6)
    if model.startswith("exp11"):
        assert "plain GDN + attention" in name and len(zoo.routing.routers(net)) == 2  # the original is untouched


@pytest.mark.parametrize("args,fragments", [
    (["--models", "dhvn_nano", "--static-reference"], ["--static-reference", "--execution both"]),
    (["--models", "dhvn_nano", "--threads", "1", "0"], ["--threads must be >= 1"]),
    (["--models", "dhvn_nano", "--max-load", "-1"], ["--max-load must be >= 0"]),
    (["--models", "dhvn_nano", "--reparam", "--train"], ["--reparam", "cannot be timed with --train"]),
])
def test_bad_trust_options_are_one_line(args, fragments, capsys):
    code, out, err = run_cli(["bench", "--warmup", "0", "--iters", "1", "--batch-size", "2", *args], capsys)
    assert_one_line_error(code, err, *fragments)


def test_reparam_times_the_folded_model_and_reference_with_the_same_decisions_and_flops(tmp_path, capsys):
    """--reparam folds BatchNorm into the convs of the model and of its static reference; the
    routing mix and the FLOP counts are those of the unfolded run, and the file says it."""
    results = {}
    for flag in ([], ["--reparam"]):
        out_file = tmp_path / f"b{len(flag)}.json"
        code, _, err = run_cli(["bench", "--models", "dhvn_nano", "--batch-size", "4", "--execution", "both",
                                "--policy", "skip=0.5", "--static-reference", "--warmup", "0", "--iters", "1",
                                *flag, "--json-out", str(out_file)], capsys)
        assert code == 0, err
        results[bool(flag)] = json.loads(out_file.read_text())["results"][0]
    plain, folded = results[False], results[True]
    assert plain["reparam"] is False and folded["reparam"] is True
    assert folded["routing_mix"] == plain["routing_mix"] and folded["flops"] == plain["flops"]


def test_reparam_uses_timms_own_walk_for_timm_models():
    """timm's reparameterize_model calls its blocks' fuse(): a timm RepVGG loses its branches."""
    import timm
    from harness.measure.bench_model import deploy_form
    net = timm.create_model("repvgg_a0", num_classes=10)
    before = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in deploy_form("timm:repvgg_a0", net).parameters()) < before
