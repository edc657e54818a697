"""bench_ops.py writes what the Performance section reads, plus the issue-12 fields (spread, roof share, load)."""
import json

import pytest

from benchmark_scripts import load_benchmark


def _bench_ops():
    return load_benchmark("bench_ops")


def test_ops_json_keeps_the_old_fields_and_renders(tmp_path):
    from leaderboard.perf_tables import ops_rows
    out = tmp_path / "ops.json"
    _bench_ops().main(["--ops", "delta", "--threads", "1", "--repeats", "2", "--warmup", "0", "--no-peers",
                       "--json-out", str(out)])
    doc = json.loads(out.read_text())
    (row,) = doc["results"]
    for key in ("op", "case", "naive_ms_median", "fast_ms_median", "naive_ms_min", "fast_ms_min", "speedup",
                "target", "met", "max_abs_err", "max_abs_out"):   # what perf_report / the leaderboard read
        assert key in row
    assert doc["benchmark"] == "ops" and doc["conditions"]["threads"] == 1 and row["threads"] == 1
    assert row["naive_ms_min"] <= row["naive_ms_median"] <= row["naive_ms_max"]
    assert row["speedup_spread"]["min"] <= row["speedup_spread"]["max"]
    assert row["fast_flops"] > 0 and row["fast_roof_share"] == pytest.approx(row["fast_gflops_per_s"]
                                                                             / doc["roof"]["1"]["gflops_per_s"])
    assert row["max_abs_err"] < 1e-5 and "loadavg_before" in row["load"] and "loadavg_after" in doc["load"]
    (rendered,) = ops_rows([("ops", doc)])
    assert rendered["Threads"] == "1" and "x (" in rendered["Speedup"]


def test_peers_are_optional_and_compute_the_same_rule():
    import torch
    from zoo.ops.delta_rule import naive_recurrent_gated_delta_rule
    bench = _bench_ops()
    peers = bench.fla_peers()   # {} when flash-linear-attention is absent: never a dependency
    args = bench.delta_rule_inputs(1, 70, 2, 16, 8, torch.Generator().manual_seed(0))
    ref = naive_recurrent_gated_delta_rule(*args)[0]
    for name, fn in peers.items():
        torch.testing.assert_close(fn(*args), ref, atol=1e-5, rtol=1e-5, msg=name)
