"""A fourth family needs no edit outside its own package (docs/DESIGN.md, "Families").

The toy family of tests/toy_family.py (one module: spec, routed block, model, variants,
descriptor), registered from inside the test, goes through `flops`, `bench` (sparse against dense
and against its static reference), `visualize` (one line: no pictures for it), a `run` whose
record carries its family, and the leaderboard (its suite table, its Performance rows in its
display order, its colour in the figures); the benchmarks and the README job read it off its
descriptor. Its registration is undone afterwards: nothing is left in the zoo, timm or mmengine.
"""
from __future__ import annotations

import json
import shutil

import pytest

import zoo
from benchmark_scripts import ROOT, load_benchmark
from harness_testutils import assert_one_line_error, read_jsonl, run_cli
from toy_family import Doubling, register_toy
from zoo.layers.family import FAMILIES, Display

TOY_COLOR = (0x17, 0xBE, 0xCF)
# display order -1: before every real family, where neither the names nor their prefixes would put it
TOY_DISPLAY = Display("Toy", "#17BECF", -1)
TOY_DATA = ["train_dataloader.dataset.limit=8", "test_dataloader.dataset.limit=4", "test_dataloader.batch_size=2"]
SMALL = ["--suite", "pydocs", "--batch-size", "2", "--seq-len", "16"]


@pytest.fixture
def toy(monkeypatch):
    return register_toy(monkeypatch, TOY_DISPLAY)


def _bench(tmp_path, capsys, out):
    code, _, err = run_cli(["bench", "--models", "toy_routed", *SMALL, "--execution", "both", "--static-reference",
                            "--policy", "skip=0.5", "--warmup", "0", "--iters", "2", "--threads", "1",
                            "--json-out", str(out)], capsys)
    assert code == 0, err
    (r,) = json.loads(out.read_text())["results"]
    return r


def test_flops_bench_and_visualize_take_a_fourth_family(toy, tmp_path, capsys):
    code, out, err = run_cli(["flops", "--models", "toy_routed", "--suite", "pydocs", "--limit", "4", "--json"], capsys)
    assert code == 0, err
    (f,) = json.loads(out)
    # a fresh router sends every token to its cheap choice, counted through the family's FLOP rule
    assert f["model"] == "toy_routed" and 0 < f["executed_gflops"] < f["dense_gflops"]
    r = _bench(tmp_path, capsys, tmp_path / "bench.json")
    assert r["model"] == "toy_routed" and r["reference"]["model"] == "toy_static"
    assert r["flops"]["sparse"] < r["flops"]["dense"] and r["speedup_median"] > 0
    code, _, err = run_cli(["visualize", "--model", "toy_routed", "--suite", "pydocs",
                            "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "pictures")], capsys)
    assert_one_line_error(code, err, "no pictures for the toy family (toy_routed)")


def test_a_fourth_family_reaches_the_leaderboard_in_its_colour_and_order(toy, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    results, perf = tmp_path / "results", tmp_path / "perf"
    perf.mkdir()
    code, _, err = run_cli(["run", "--models", "toy_routed", "--suite", "pydocs", "--max-iters", "2",
                            "--batch-size", "2", "--work-dir", str(tmp_path / "work"),
                            "--results", str(results / "pydocs.jsonl"), "--cfg-options", *TOY_DATA], capsys)
    assert code == 0, err
    (record,) = read_jsonl(results / "pydocs.jsonl")
    assert record["family"] == "toy" and record["static_form"] == "toy_static"
    _bench(tmp_path, capsys, perf / "bench_toy_routed_skip50.json")
    shutil.copy(f"{ROOT}/leaderboard/perf/bench_dhvn_nano_skip50.json", perf)
    page = tmp_path / "LEADERBOARD.md"
    code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(page)], capsys)
    assert code == 0, err
    md = page.read_text()
    pydocs = md[md.index("## pydocs"):md.index("## Performance")]
    assert "| toy_routed " in pydocs and "block cheap" in pydocs
    # the Performance section lists families in their display order: the toy's -1 before DHVN's 0
    performance = md[md.index("## Performance"):]
    assert 0 < performance.index("| toy_routed ") < performance.index("| dhvn_nano ")
    (figure,) = (tmp_path / "figures").glob("pydocs_*_vs_gflops.png")
    pixels = np.asarray(Image.open(figure).convert("RGB"))
    assert (pixels == TOY_COLOR).all(axis=-1).sum() > 20   # its point is drawn in its display colour
    code, _, err = run_cli(["leaderboard", "--check", "--results-dir", str(results), "--out", str(page)], capsys)
    assert code == 0, err


def test_the_benchmarks_and_the_readme_job_read_a_fourth_family_off_its_descriptor(toy, capsys):
    from benchmarks import crossover
    from harness.commands.visualize import readme_models
    from harness.readme_job import budget_curves, jobs
    names = {name: argv for name, _, argv, _ in load_benchmark("perf_report").jobs()}
    for name in ("bench_toy_routed_skip25", "bench_toy_routed_trained", "bench_toy_wide_skip50"):
        assert names[name][names[name].index("--suite") + 1] == "pydocs", name
    overhead = load_benchmark("bench_router_overhead")
    config = next(c for c in overhead.CONFIGS if c[1] == "toy_routed")
    assert config[0] == "toy" and config[4] == ("cheap", "dear") and "toy" in overhead.FAMILIES
    for branch in config[4]:   # the routed-block protocol: the routed side computes what the branch alone does
        (row,) = overhead.measure(config, branch, rounds=1, warmup=0)
        assert row["layers"] == 1 and row["max_abs_diff"] == 0
    assert {"toy_16_skip25", "toy_16_skip50", "toy_16_skip75"} <= {name for name, *_ in crossover.jobs()}
    assert dict(jobs())["pydocs"][:2] == ("toy_routed", "toy_static")   # display order: before Exp11's
    assert budget_curves()["toy_routed"] == (0.5, 1.0)
    assert "toy_routed" not in {model for _, model, _ in readme_models()}   # no demo, no README pictures
    code, out, _ = run_cli(["embedded", "--dry-run"], capsys)
    assert code == 0 and "--models toy_routed --seeds 0" in out
    assert any("--flops-budget 0.5 1" in line and "toy_routed" in line for line in out.splitlines())


def test_registering_a_fourth_family_leaves_nothing_behind():
    import timm
    from mmengine.registry import MODELS
    before = zoo.list_families()
    with pytest.MonkeyPatch.context() as mp:
        family = register_toy(mp, TOY_DISPLAY)
        assert zoo.list_families() == ["toy", *before] and zoo.family_of("toy_routed") is family
        assert Doubling in zoo.flops.MODULE_FLOPS
    assert zoo.list_families() == before and "toy" not in FAMILIES
    assert not zoo.is_model("toy_routed") and not zoo.list_models("toy*")
    assert Doubling not in zoo.flops.MODULE_FLOPS
    assert not timm.is_model("toy_routed") and MODELS.get("toy_routed") is None
