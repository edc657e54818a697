"""The Performance section: rendered from leaderboard/perf/*.json, deterministic, targets met / missed.

Rendering tests use hand-written documents of the shapes the benchmarks write; one test runs the
real pipeline (bench -> JSON -> section -> leaderboard check) at a tiny shape.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os

import pytest

from leaderboard.performance import performance_section
from leaderboard.render import check_leaderboard, write_leaderboard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COND = {"threads": 2, "torch": "2.x", "loadavg_1m": 1.0, "git_sha": "abc1234"}


def _bench(model, policy, speedup, ratio, mem=None, checkpoint=None, family_choices=("conv", "both")):
    cheap, full = family_choices
    r = {"model": model, "suite": "mnist5k", "task": "image-classification", "train": False, "batch_size": 64,
         "input_shape": [64, 1, 28, 28], "checkpoint": checkpoint, "policy": policy,
         "policy_shares": {"l0": {cheap: 0.5, full: 0.5}} if policy else None,
         "routing_mix": {"l0": {cheap: 0.4, full: 0.6}}, "conditions": COND,
         "runs": {"sparse": {"step_ms_median": 10.0}, "dense": {"step_ms_median": 10.0 * speedup}},
         "speedup_median": speedup, "flops": {"ratio": ratio, "sparse": 1, "dense": 2},
         "efficiency": speedup / ratio}
    if mem:
        r["memory"] = {"sparse_peak_bytes": mem[0], "dense_peak_bytes": mem[1], "method": "m"}
    return {"benchmark": "bench", "command": f"python -m harness bench --models {model}", "results": [r]}


def _write(perf, name, doc):
    perf.mkdir(parents=True, exist_ok=True)
    (perf / f"{name}.json").write_text(json.dumps(doc))


@pytest.fixture
def perf_tree(tmp_path):
    results, perf = tmp_path / "results", tmp_path / "perf"
    results.mkdir()
    _write(perf, "bench_dhvn_nano_skip50", _bench("dhvn_nano", "skip=0.5", 1.5, 1.6, mem=(100, 200)))
    _write(perf, "bench_dhvn_nano_skip25", _bench("dhvn_nano", "skip=0.25", 0.5, 1.3))
    _write(perf, "bench_dhvn_nano_trained", _bench("dhvn_nano", None, 1.0, 1.05, mem=(300, 200),
                                                   checkpoint="w/iter_150.pth"))
    _write(perf, "ops", {"benchmark": "ops", "command": "python benchmarks/bench_ops.py", "conditions": COND,
                         "results": [dict(op="delta", case="gated delta rule", naive_ms_median=100.0,
                                          fast_ms_median=5.0, speedup=20.0, target=10.0, met=True,
                                          max_abs_err=1e-7, max_abs_out=1.0),
                                     dict(op="s6", case="selective scan", naive_ms_median=10.0,
                                          fast_ms_median=5.0, speedup=2.0, target=3.0, met=False,
                                          max_abs_err=1e-6, max_abs_out=50.0)]})
    _write(perf, "router_overhead", {"benchmark": "router_overhead", "command": "python benchmarks/x.py",
                                     "conditions": COND, "results": [
                                         dict(family="dhvn", model="dhvn_nano", branch="conv", shape="b64", layers=3,
                                              routed_ms_median=10.4, direct_ms_median=10.0, overhead=0.04,
                                              overhead_min_ratio=0.03, target=0.05, met=True),
                                         dict(family="esh", model="eshvision_xs", branch="ssm", shape="b64", layers=3,
                                              routed_ms_median=12.0, direct_ms_median=10.0, overhead=0.2,
                                              overhead_min_ratio=0.1, target=0.05, met=False)]})
    return results, perf


def _row(md, *needles):
    rows = [line for line in md.splitlines() if line.startswith("|") and all(n in line for n in needles)]
    assert len(rows) == 1, (needles, rows)
    return rows[0]


def test_targets_met_and_missed(perf_tree):
    results, _ = perf_tree
    md = performance_section(results, write=False)
    assert md.startswith("## Performance")
    assert "python benchmarks/perf_report.py" in md
    # efficiency 1.5 / 1.6 = 0.94 met; 0.5 / 1.3 = 0.38 missed
    assert "| met" in _row(md, "skip=0.5", "0.94")
    assert "**missed**" in _row(md, "skip=0.25", "0.38")
    assert "trained weights (mean over routers: conv 40% / both 60%)" in md
    assert "skip=0.5 (conv 50% / both 50%)" in md
    # memory: 100 <= 200 met, 300 > 200 missed; no memory row for skip=0.25
    assert "| met" in _row(md, "skip=0.5", "0.50")
    assert "**missed**" in _row(md, "trained weights", "1.50")
    assert "**missed**" in _row(md, "selective scan", "2.00x")
    assert "| met" in _row(md, "gated delta rule", "20.00x")
    assert "**missed**" in _row(md, "eshvision_xs", "20.0%")
    assert "| met" in _row(md, "dhvn_nano", "conv", "4.0%")
    # rows in mix order: skip 25, skip 50, trained
    assert md.index("skip=0.25 (") < md.index("skip=0.5 (") < md.index("trained weights")
    assert "`python -m harness bench --models dhvn_nano` (threads 2, torch 2.x, load avg 1.0, git abc1234)" in md


def test_deterministic_and_absent(perf_tree, tmp_path):
    results, perf = perf_tree
    assert performance_section(results) == performance_section(results, write=True)
    assert performance_section(tmp_path / "elsewhere" / "results") is None
    for f in perf.glob("*.json"):
        f.unlink()
    md = performance_section(results)
    assert "No performance figures yet" in md


def test_missing_parts_show_not_measured(perf_tree):
    results, perf = perf_tree
    (perf / "ops.json").unlink()
    (perf / "router_overhead.json").unlink()
    md = performance_section(results)
    assert md.count("_– not measured._") == 2


def test_real_pipeline_and_leaderboard_check(tmp_path, capsys):
    from harness.cli import main
    results, perf = tmp_path / "results", tmp_path / "perf"
    results.mkdir()
    main(["bench", "--models", "exp11_dynamic_tiny", "--batch-size", "1", "--seq-len", "32", "--execution", "both",
          "--policy", "skip=0.5", "--warmup", "0", "--iters", "2", "--threads", "1",
          "--json-out", str(perf / "bench_exp11_dynamic_tiny_skip50.json")])
    spec = importlib.util.spec_from_file_location("bench_router_overhead",
                                                  os.path.join(ROOT, "benchmarks", "bench_router_overhead.py"))
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)
    overhead.main(["--families", "dhvn", "--models", "dhvn_nano", "--rounds", "1", "--warmup", "0", "--threads", "1",
                   "--json-out", str(perf / "router_overhead.json")])
    doc = json.loads((perf / "router_overhead.json").read_text())
    assert [r["branch"] for r in doc["results"]] == ["conv", "transformer"]
    assert all(r["max_abs_diff"] < 1e-5 for r in doc["results"])  # both sides compute the same layer
    capsys.readouterr()
    md = performance_section(results)
    row = _row(md, "exp11_dynamic_tiny", "skip=0.5")
    assert "pydocs 1x32" in row and "skip=0.5 (gdn 50% / softmax 50%)" in row
    _row(md, "dhvn_nano", "transformer")
    sections = [md]
    out = tmp_path / "LEADERBOARD.md"
    write_leaderboard(results, out, sections)
    assert check_leaderboard(results, out, [performance_section(results)])
    # a changed figure makes the committed page stale
    bad = json.loads((perf / "router_overhead.json").read_text())
    bad2 = copy.deepcopy(bad)
    bad2["results"][0]["overhead"] += 0.5
    (perf / "router_overhead.json").write_text(json.dumps(bad2))
    assert not check_leaderboard(results, out, [performance_section(results)])
