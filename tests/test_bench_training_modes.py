"""benchmarks/bench_training_modes.py and the Performance section's Training table it feeds
(leaderboard/training_perf.py): every variant steps, the FLOPs follow the routing of each mode,
the ratios are what the table says they are, and bad input is one line. Timings are never asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmark_scripts import ROOT, load_benchmark
from leaderboard.training_perf import training_parts

# the tests on one real round of the ten training steps: 25 s measured at load 7.6 on 2 cores
SMOKE = pytest.mark.slow
ROUTED = ["dense", "sparse_trained", "sparse_share25", "sparse_share50", "sparse_share75",
          "capacity25", "capacity50", "capacity75"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One round of dhvn_nano's variants at batch 4, one thread (module-scoped: run once)."""
    out = tmp_path_factory.mktemp("training") / "training_modes.json"
    code = load_benchmark("bench_training_modes").main(
        ["--only", "dhvn", "--rounds", "1", "--warmup", "0", "--threads", "1", "--batch-size", "4", "--max-wait", "0",
         "--no-leaderboard", "--json-out", str(out)])
    assert code == 0
    return json.loads(out.read_text())


@SMOKE
def test_every_variant_and_comparator_is_timed(smoke):
    assert smoke["benchmark"] == "training" and smoke["command"].startswith("python -m benchmarks.bench_training_modes")
    (result,) = smoke["results"]
    assert (result["model"], result["threads"], result["input_shape"]) == ("dhvn_nano", 1, [4, 1, 28, 28])
    names = [v["name"] for v in result["variants"]]
    assert names == ROUTED + ["static:dhvn_nano_static", "static:dhvn_nano_ccc"]
    rows = {v["name"]: v for v in result["variants"]}
    # DHVN's always-full reference is its registered static form; its cheapest plan is all-conv
    assert rows["static:dhvn_nano_static"]["roles"] == ["static_form", "static_reference"]
    assert rows["static:dhvn_nano_ccc"]["roles"] == ["cheapest_plan"]
    assert result["comparators"] == {"static_form": "dhvn_nano_static", "static_reference": "dhvn_nano_static",
                                     "cheapest_plan": "dhvn_nano_ccc"}
    for v in result["variants"]:
        assert v["step_ms"]["min"] <= v["step_ms"]["median"] <= v["step_ms"]["max"]
    load = result["load"]
    assert {"loadavg_before", "loadavg_after", "other_load"} <= set(load)
    assert result["weights"] == "shipped weights dhvn_nano.mnist5k"  # no work_dirs here: the shipped tag


@SMOKE
def test_training_flops_follow_each_mode(smoke):
    rows = {v["name"]: v for v in smoke["results"][0]["variants"]}
    for v in rows.values():
        assert v["train_flops"] == 3 * v["forward_flops"] > 0
    # fixed capacity sends exactly round(k * 4) of the 4 samples down the expensive path at every router
    for k in (25, 50, 75):
        assert rows[f"capacity{k}"]["capacity"] == k / 100
        assert rows[f"capacity{k}"]["expensive_share"] == pytest.approx(k / 100)
    assert rows["capacity25"]["train_flops"] < rows["capacity50"]["train_flops"] < rows["capacity75"]["train_flops"]
    # dense training runs every branch on every sample: the always-both static form's work, which sparse
    # training at any mix undercuts; the all-conv plan is the floor
    static, cheapest = rows["static:dhvn_nano_static"]["train_flops"], rows["static:dhvn_nano_ccc"]["train_flops"]
    assert rows["dense"]["train_flops"] >= static
    for name in ROUTED[1:]:
        assert cheapest < rows[name]["train_flops"] < rows["dense"]["train_flops"]


@SMOKE
def test_ratios_are_against_the_comparators_timed_beside_them(smoke):
    rows = {v["name"]: v for v in smoke["results"][0]["variants"]}
    static = rows["static:dhvn_nano_static"]
    for name in ROUTED:
        vs = rows[name]["versus"]["static_form"]
        assert vs["speedup_median"] == pytest.approx(static["step_ms"]["median"] / rows[name]["step_ms"]["median"])
        assert vs["flops_ratio"] == pytest.approx(static["train_flops"] / rows[name]["train_flops"])
        assert vs["efficiency"] == pytest.approx(vs["speedup_median"] / vs["flops_ratio"])
        assert set(rows[name]["versus"]) == {"static_form", "static_reference", "cheapest_plan"}
    assert "static_form" not in static["versus"]  # not against itself


@SMOKE
def test_the_table_shows_every_row_and_judges_the_target_where_it_applies(smoke):
    text = "\n\n".join(training_parts(smoke))
    assert text.startswith("### Training: the step in each routing mode against the static form")
    assert "**`dhvn_nano`**" in text and "static form `dhvn_nano_static`" in text
    lines = [line for line in text.splitlines() if line.startswith("| ") and "Variant" not in line]
    assert len(lines) == 10
    judged = {line.split("|")[1].strip(): line.split("|")[9].strip() for line in lines}
    # judged at capacity <= 0.5 at 1 thread only (met or missed, perhaps marked unreliable)
    for label, cell in judged.items():
        applies = label in ("sparse, capacity 0.25", "sparse, capacity 0.5")
        assert (cell != "–") == applies, (label, cell)


def _doc(efficiency, capacity, threads=1, reliable=True):
    row = dict(name="capacity", label="sparse, capacity", kind="routed", capacity=capacity, expensive_share=capacity,
               step_ms=dict(min=1.0, median=1.0, max=1.0), train_flops=3e9, roles=[],
               versus=dict(static_form=dict(speedup_median=efficiency, flops_ratio=1.0, efficiency=efficiency)))
    return dict(benchmark="training", command="c", target=dict(efficiency=0.8, capacity_at_most=0.5, threads=1),
                results=[dict(model="dhvn_nano", family="dhvn", inputs="x", threads=threads, variants=[row],
                              comparators={}, load=dict(reliable=reliable))])


@pytest.mark.parametrize("efficiency, capacity, threads, reliable, cell", [
    (0.85, 0.5, 1, True, "met"), (0.75, 0.25, 1, True, "**missed**"), (0.75, 0.75, 1, True, "–"),
    (0.75, 0.5, 2, True, "–"), (0.85, 0.5, 1, False, "met (**unreliable**)"),
])
def test_target_cell(efficiency, capacity, threads, reliable, cell):
    text = "\n\n".join(training_parts(_doc(efficiency, capacity, threads, reliable)))
    row = next(line for line in text.splitlines() if line.startswith("| sparse, capacity"))
    assert row.split("|")[9].strip() == cell


def test_no_file_no_table():
    assert training_parts(None) == []


def test_bad_input_is_one_line(capsys, tmp_path):
    script = load_benchmark("bench_training_modes")
    out = tmp_path / "x.json"
    for argv, words in ((["--rounds", "0"], "--rounds"), (["--only", "nosuch"], "no family matches nosuch")):
        assert script.main([*argv, "--no-leaderboard", "--json-out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err
    assert not out.exists()


@pytest.mark.slow  # a real process
def test_a_bad_allocator_value_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "x.json"
    env = dict(os.environ, ROUTING_ZOO_ALLOCATOR="jemalloc", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_training_modes", "--no-leaderboard",
                           "--json-out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench_training_modes: error: ROUTING_ZOO_ALLOCATOR='jemalloc'")
    assert not out.exists()
