"""The Performance section: rendered from leaderboard/perf/*.json, deterministic, targets met / missed.

Rendering tests use hand-written documents of the shapes the benchmarks write; one test runs the
real pipeline (bench -> JSON -> section -> leaderboard check) at a tiny shape.
"""
from __future__ import annotations

import copy
import json

import pytest

from benchmark_scripts import load_benchmark
from leaderboard.performance import performance_section
from leaderboard.render import check_leaderboard, write_leaderboard

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
                                              overhead_min_ratio=0.1, target=0.05, met=False, flops_overhead=0.125)]})
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
    # the routers' counted FLOPs share, where the file has it (the dhvn row is from before the column)
    col = [c.strip() for c in _row(md, "Forced branch", "Router FLOPs").split("|")].index("Router FLOPs")
    assert [c.strip() for c in _row(md, "eshvision_xs", "20.0%").split("|")][col] == "12.5%"
    assert [c.strip() for c in _row(md, "dhvn_nano", "conv", "4.0%").split("|")][col] == "–"
    # rows in mix order: skip 25, skip 50, trained
    assert md.index("skip=0.25 (") < md.index("skip=0.5 (") < md.index("trained weights")
    assert "`python -m harness bench --models dhvn_nano` (threads 2, torch 2.x, load avg 1.0, git abc1234)" in md


def test_conditions_name_the_allocator(perf_tree):
    results, perf = perf_tree
    doc = _bench("dhvn_nano", "skip=0.5", 1.5, 1.6)
    doc["results"][0]["conditions"] = dict(COND, allocator="glibc mallopt")
    _write(perf, "bench_dhvn_nano_skip50", doc)
    md = performance_section(results, write=False)
    assert "(threads 2, torch 2.x, load avg 1.0, allocator glibc mallopt, git abc1234)" in md


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
    # ops, router overhead; the fixture has no static reference figures and no peers file either
    assert md.count("_– not measured._") == 4
    ops_at = md.index("### Scan and Gated DeltaNet")
    assert md.index("_– not measured._", ops_at) < md.index("### Router overhead")


def test_real_pipeline_and_leaderboard_check(tmp_path, capsys):
    from harness.cli import main
    results, perf = tmp_path / "results", tmp_path / "perf"
    results.mkdir()
    main(["bench", "--models", "exp11_dynamic_tiny", "--batch-size", "1", "--seq-len", "32", "--execution", "both",
          "--policy", "skip=0.5", "--warmup", "0", "--iters", "2", "--threads", "1",
          "--json-out", str(perf / "bench_exp11_dynamic_tiny_skip50.json")])
    overhead = load_benchmark("bench_router_overhead")
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


# ------------------------------------------------------------ issue 12: threads, spread, load, references

def _load(other, reliable=True):
    return {"loadavg_before": 0.4, "loadavg_after": 1.6, "other_load": other, "other_load_before": 0.0,
            "waited_s": 0.0, "max_load": 0.5, "reliable": reliable,
            "why_unreliable": None if reliable else f"other processes used during {other:.2f} cores (> 0.5)"}


def _trusted_result(threads, speedup, ratio, ref_speedup, ref_ratio, other=0.05, reliable=True):
    r = _bench("dhvn_nano", "skip=0.5", speedup, ratio)["results"][0]
    r["conditions"] = dict(COND, threads=threads)
    r["load"] = _load(other, reliable)
    r["runs"] = {m: {"step_ms_median": ms, "step_ms_min": ms * 0.9, "step_ms_max": ms * 1.2, "samples_per_s": 1.0}
                 for m, ms in (("sparse", 10.0), ("dense", 10.0 * speedup), ("reference", 10.0 * ref_speedup))}
    r["speedup_spread"] = {"min": speedup * 0.8, "median": speedup, "max": speedup * 1.1}
    r["efficiency_spread"] = {k: v / ratio for k, v in r["speedup_spread"].items()}
    r["reference"] = {"model": "dhvn_nano_static", "speedup_median": ref_speedup, "flops_ratio": ref_ratio,
                      "speedup_spread": {"min": ref_speedup * 0.9, "median": ref_speedup, "max": ref_speedup * 1.05},
                      "efficiency": ref_speedup / ref_ratio,
                      "efficiency_spread": {"min": ref_speedup * 0.9 / ref_ratio, "median": ref_speedup / ref_ratio,
                                            "max": ref_speedup * 1.05 / ref_ratio},
                      "dense_over_reference": {"min": 1.05, "median": 1.12, "max": 1.2}}
    return r


@pytest.fixture
def trust_tree(tmp_path):
    results, perf = tmp_path / "results", tmp_path / "perf"
    results.mkdir()
    doc = _bench("dhvn_nano", "skip=0.5", 1.0, 1.0)
    # 1 thread: 1.9 / 2.0 = 0.95 against dense, met; 1.6 / 1.98 = 0.81 against static, missed.
    # 2 threads: 1.7 / 2.0 = 0.85 missed, taken while others used 0.9 cores: unreliable
    doc["results"] = [_trusted_result(1, 1.9, 2.0, 1.6, 1.98), _trusted_result(2, 1.7, 2.0, 1.9, 1.98, 0.9, False)]
    _write(perf, "bench_dhvn_nano_skip50", doc)
    return results, perf


def test_every_row_at_both_thread_counts_against_both_references(trust_tree):
    results, _ = trust_tree
    md = performance_section(results)
    dense_part = md[md.index("### Efficiency: sparse against dense"):md.index("### Efficiency: sparse against the static")]
    static_part = md[md.index("### Efficiency: sparse against the static"):md.index("### Peak memory")]
    row1 = _row(dense_part, "dhvn_nano", "| 1 ")
    assert "1.90x (1.52–2.09)" in row1 and "0.95 (0.76–1.04)" in row1 and "| met" in row1
    assert "10.0 (9.0–12.0)" in row1 and "0.4 → 1.6, others 0.05" in row1
    row2 = _row(dense_part, "dhvn_nano", "| 2 ")
    assert "0.85" in row2 and "**missed** (**unreliable**)" in row2 and "others 0.90 **unreliable**" in row2
    srow1 = _row(static_part, "dhvn_nano", "| 1 ")
    assert "dhvn_nano_static" in srow1 and "1.60x (1.44–1.68)" in srow1 and "1.98x" in srow1
    assert "0.81" in srow1 and "**missed**" in srow1 and "1.12x (1.05–1.20)" in srow1
    srow2 = _row(static_part, "dhvn_nano", "| 2 ")
    assert "0.96" in srow2 and "met (**unreliable**)" in srow2
    # the tallies count each thread count apart, per reference
    assert "Met: 1 of 1 at 1 thread, 0 of 1 at 2 threads." in dense_part
    assert "Met: 0 of 1 at 1 thread, 1 of 1 at 2 threads." in static_part
    assert "(threads 1, 2, torch 2.x, git abc1234)" in md


def test_files_without_spread_or_load_still_render(perf_tree):
    """Figures written before issue 12 show their medians and '–' for what they lack."""
    results, _ = perf_tree
    md = performance_section(results)
    row = _row(md, "skip=0.5", "0.94")
    assert "| 1.50x  " in row and "| 10.0  " in row and "1.0 (after)" in row


def test_ops_files_per_thread_count_and_skipped_jobs(perf_tree):
    results, perf = perf_tree
    ops = json.loads((perf / "ops.json").read_text())
    (perf / "ops.json").unlink()
    for n in (1, 2):
        doc = copy.deepcopy(ops)
        doc["conditions"] = dict(COND, threads=n)
        doc["load"] = _load(0.1 * n, reliable=n == 1)
        _write(perf, f"ops_t{n}", doc)
    _write(perf, "bench_exp11_dynamic_tiny_trained", {"benchmark": "bench", "skipped": "w/last_checkpoint is absent",
                                                      "command": "python -m harness bench x", "results": []})
    md = performance_section(results)
    assert "| met " in _row(md, "gated delta rule", "| 1 ")
    assert "met (**unreliable**)" in _row(md, "gated delta rule", "| 2 ")
    lines = [line for line in md.splitlines() if line.startswith("| gated") or line.startswith("| selective")]
    assert [(line.split("|")[1].strip(), line.split("|")[2].strip()) for line in lines] == [
        ("gated delta rule", "1"), ("gated delta rule", "2"), ("selective scan", "1"), ("selective scan", "2")]
    assert "Not measured: `bench_exp11_dynamic_tiny_trained` (w/last_checkpoint is absent)." in md
    assert "- `bench_exp11_dynamic_tiny_trained.json`: not measured: w/last_checkpoint is absent" in md
    # bench_ops.py's issue-12 fields: a row's own load, the roof share against its aim, the fla peers
    doc = copy.deepcopy(ops)
    doc["results"][0].update(threads=1, load=_load(0.0), fast_gflops_per_s=30.0, fast_roof_share=0.2,
                             roof_gflops_per_s=150.0,
                             peers={"fla naive_chunk C=64": {"ms": {"min": 20.0, "median": 25.0, "max": 30.0},
                                                             "fast_speedup": 5.0, "max_abs_err": 1e-7}})
    doc["results"][1].update(threads=1, fast_gflops_per_s=10.0, fast_roof_share=0.1, roof_gflops_per_s=150.0)
    (perf / "ops_t2.json").unlink()
    _write(perf, "ops_t1", doc)
    md = performance_section(results)
    row = _row(md, "gated delta rule", "| 1 ")
    assert "30.0 (20% of 150)" in row and "≥ 40%: **missed**" in row
    assert "fla naive_chunk C=64 25.0 ms (ours 5.00x faster)" in row
    row = _row(md, "selective scan", "| 1 ")  # Mamba-1 has no roof aim
    assert "10.0 (10% of 150)" in row and "| –  " in row


def test_peers_table(perf_tree):
    results, perf = perf_tree
    rows = [dict(model="dhvn_tiny skip=0.5", zoo_model="dhvn_tiny", mix="skip=0.5", threads=1, params=4.6e6,
                 flops=8e9, step_ms={"min": 300.0, "median": 320.0, "max": 350.0}, images_per_s=25.0,
                 gflops_per_s=25.0, load=_load(0.01)),
            dict(model="resnet18", zoo_model=None, mix="dense", threads=1, params=11.7e6, flops=29e9,
                 step_ms={"min": 250.0, "median": 260.0, "max": 270.0}, images_per_s=30.8, gflops_per_s=111.5,
                 load=_load(0.01))]
    parity = [dict(model="dhvn_tiny", entry="dhvn_tiny skip=0.5", mix="skip=0.5", threads=1, gflops_per_s=25.0,
                   best_peer="resnet18", best_peer_gflops_per_s=111.5, ratio=25.0 / 111.5, target=0.8, met=False,
                   images_per_s=25.0, fastest_peer="resnet18", fastest_peer_images_per_s=30.8, reliable=True)]
    _write(perf, "peers", {"benchmark": "peers", "command": "python benchmarks/bench_peers.py", "conditions": COND,
                           "batch_size": 8, "input_shape": [8, 3, 224, 224], "target": 0.8,
                           "peers": {"dhvn_tiny": ["resnet18"]}, "results": rows, "parity": parity})
    md = performance_section(results)
    part = md[md.index("### Whole models against dense timm peers"):]
    row = _row(part, "dhvn_tiny skip=0.5", "resnet18 (111.5)")
    assert "0.22" in row and "**missed**" in row and "resnet18 (30.8)" in row
    assert "1.00" in _row(part, "| dhvn_tiny skip=0.5", "320.0 (300.0–350.0)")  # 8 GFLOPs / 8 images
    assert "Input 8x3x224x224. Peers: dhvn_tiny: resnet18." in part


def test_perf_report_measures_every_figure_at_both_thread_counts_against_the_static_form(tmp_path):
    report = load_benchmark("perf_report")
    todo = report.jobs()
    names = [j[0] for j in todo]
    assert {"ops", "router_overhead", "peers"} <= set(names)
    assert names.index("peers") > max(i for i, n in enumerate(names) if n.endswith("_trained"))
    for name, kind, args, _ in todo:
        assert args[args.index("--threads") + 1:args.index("--threads") + 3] == ["1", "2"], name
        assert "--max-load" in args and "--max-wait" in args, name
        if kind == "bench":
            assert "--static-reference" in args and "--execution" in args, name
    # the run's wait budget: what a file's figures waited (a peers record shared by rows counts once)
    shared = _load(0.0)
    shared["waited_s"] = 4.0
    waited = tmp_path / "peers.json"
    waited.write_text(json.dumps({"load": dict(shared, waited_s=1.5), "results": [{"load": shared}, {"load": shared}]}))
    assert report._waited(str(waited)) == 5.5 and report._waited(str(tmp_path / "absent.json")) == 0.0
    assert report._with_max_wait(["--threads", "1", "--max-wait", "15", "--x"], 2.5) == [
        "--threads", "1", "--max-wait", "2.5", "--x"]
    # a job whose checkpoint is absent leaves a file that says so, not an older run's figures
    out = tmp_path / "bench_x_trained.json"
    report._write_skipped(str(out), "bench", ["bench", "--models", "x"], "ckpt is absent")
    doc = json.loads(out.read_text())
    assert doc["skipped"] == "ckpt is absent" and doc["results"] == [] and "--models x" in doc["command"]
    # ... and the script a non-bench job's file names is the real one
    report._write_skipped(str(out), "overhead", ["--threads", "1"], "why")
    assert json.loads(out.read_text())["command"].startswith("python -m benchmarks.bench_router_overhead")


def test_peers_trained_mix_is_absent_when_the_siblings_figure_was_skipped(tmp_path):
    """perf_report writes a 'not measured' trained file when a checkpoint is absent; the peers job
    after it must then leave the trained-mix row out, not fail on the empty results."""
    peers = load_benchmark("bench_peers")
    (tmp_path / "bench_dhvn_nano_trained.json").write_text(json.dumps(
        {"benchmark": "bench", "skipped": "ckpt is absent", "command": "x", "results": []}))
    assert peers.trained_shares("dhvn_tiny", str(tmp_path)) is None
    (tmp_path / "bench_dhvn_nano_trained.json").write_text(json.dumps({"results": [
        {"routing_mix": {"a": {"conv": 0.7, "transformer": 0.1, "both": 0.2}}}]}))
    text, _, label = peers.trained_shares("dhvn_tiny", str(tmp_path))
    assert text == "conv=0.7,transformer=0.1,both=0.2" and label == "dhvn_tiny dhvn_nano-trained mix"
