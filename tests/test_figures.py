"""Leaderboard Figures section: what is drawn comes from the aggregated results, missing FLOPs are
named and not drawn, write=False touches nothing, and the markdown never depends on `write`."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from leaderboard import append_record, build_leaderboard, check_leaderboard, write_leaderboard
from leaderboard.figures import FIGURE_SIZE, figures_section, partner
from leaderboard.sections import SECTION_PROVIDERS, extra_sections


def _rec(model, seed, top1, tp, gflops=None, suite="mnist5k"):
    return dict(model=model, suite=suite, seed=seed, task="image-classification",
                metrics=dict(top1=top1, top5=99.0, loss=0.3), routing={},
                flops=None if gflops is None else dict(executed_gflops=gflops, dense_gflops=2 * gflops, saved=0.5),
                params=1000, throughput=dict(samples_per_s=tp), created="2026-01-01T00:00:00Z")


def _lm(model, seed, ppl, tp):
    return dict(model=model, suite="pydocs", seed=seed, task="causal-lm",
                metrics=dict(loss=math.log(ppl), perplexity=ppl, bits_per_byte=1.0), routing={}, flops=None,
                params=1000, throughput=dict(tokens_per_s=tp), created="2026-01-01T00:00:00Z")


@pytest.fixture
def results(tmp_path):
    d = tmp_path / "results"
    top1 = {"dhvn_nano": [50.0, 54.0], "dhvn_nano_static": [60.0, 61.0], "timm:resnet18": [90.0, 92.0]}
    flops = {"dhvn_nano": 0.01, "dhvn_nano_static": 0.02, "timm:resnet18": None}
    for model, values in top1.items():
        for seed, v in enumerate(values):
            append_record(d / "mnist5k.jsonl", _rec(model, seed, v, 1000.0 + 100 * seed, flops[model]))
    for seed in (0, 1):
        append_record(d / "pydocs.jsonl", _lm("exp11_dynamic_tiny", seed, 7.0 + seed, 20000.0))
        append_record(d / "pydocs.jsonl", _lm("exp11_baseline_tiny", seed, 6.0, 30000.0))
    return d, top1


def _size(path):
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_check_mode_writes_nothing_and_markdown_matches(results):
    d, _ = results
    figures = d.parent / "figures"
    dry = figures_section(d, write=False)
    assert not figures.exists()
    assert figures_section(d, write=True) == dry
    assert sorted(p.name for p in figures.glob("*.png")) == [
        "mnist5k_top1_vs_gflops.png", "mnist5k_top1_vs_throughput.png", "pydocs_perplexity_vs_throughput.png"]
    for png in figures.glob("*.png"):
        assert png.stat().st_size > 5000
        assert _size(png) == (int(FIGURE_SIZE[0] * 100), int(FIGURE_SIZE[1] * 100))
        assert f"](figures/{png.name})" in dry


def test_points_are_seed_means_with_std_and_missing_flops_are_named(results):
    d, top1 = results
    md = figures_section(d, write=True)
    spec = json.loads((d.parent / "figures" / "mnist5k_top1_vs_gflops.json").read_text())
    points = {p["model"]: p for p in spec["points"]}
    assert set(points) == {"dhvn_nano", "dhvn_nano_static"}      # resnet18 has no FLOPs
    for model, p in points.items():
        assert p["y"] == pytest.approx(statistics.mean(top1[model]))
        assert p["yerr"] == pytest.approx(statistics.stdev(top1[model]))
        assert p["n"] == 2
    assert points["dhvn_nano"]["x"] == pytest.approx(0.01)
    assert spec["missing"] == ["timm:resnet18"]
    assert "Left out of the executed GFLOPs plot (not recorded): timm:resnet18." in md
    assert spec["pairs"] == [["dhvn_nano", "dhvn_nano_static"]]
    tp = json.loads((d.parent / "figures" / "mnist5k_top1_vs_throughput.json").read_text())
    assert {p["model"]: p["x"] for p in tp["points"]}["timm:resnet18"] == pytest.approx(1050.0)
    lm = json.loads((d.parent / "figures" / "pydocs_perplexity_vs_throughput.json").read_text())
    assert lm["metric"] == "perplexity" and lm["pairs"] == [["exp11_dynamic_tiny", "exp11_baseline_tiny"]]
    assert "perplexity vs executed GFLOPs: not drawn" in md


def test_partner_names():
    board = ["dhvn_nano", "dhvn_nano_static", "eshvision_xs", "eshvision_xs_soft", "exp11_dynamic_tiny",
             "exp11_baseline_tiny", "timm:resnet18"]
    assert partner("dhvn_nano_static", board) == "dhvn_nano"
    assert partner("eshvision_xs_soft", board) == "eshvision_xs"
    assert partner("exp11_baseline_tiny", board) == "exp11_dynamic_tiny"
    assert partner("dhvn_nano", board) is None and partner("timm:resnet18", board) is None
    assert partner("dhvn_tiny_static", board) is None     # its dynamic form is not on the board


def test_leaderboard_links_the_figures_and_check_compares_markdown_only(results, tmp_path):
    d, _ = results
    assert "leaderboard.figures:figures_section" in SECTION_PROVIDERS
    page = tmp_path / "LEADERBOARD.md"
    write_leaderboard(d, page, extra_sections(d, write=True))
    assert "## Figures" in page.read_text() and "(figures/mnist5k_top1_vs_gflops.png)" in page.read_text()
    for png in (tmp_path / "figures").glob("*.png"):
        png.unlink()   # pictures gone: the check still passes, it compares the markdown only
    assert check_leaderboard(d, page, extra_sections(d, write=False))
    assert not list((tmp_path / "figures").glob("*.png"))


def test_no_results_no_section(tmp_path):
    assert figures_section(tmp_path, write=True) is None
    assert not (tmp_path.parent / "figures").exists() or not list((tmp_path.parent / "figures").glob("*"))
    md, _ = build_leaderboard(tmp_path, extra_sections(tmp_path, write=False))
    assert "## Figures" not in md


def test_lm_flops_are_per_token(tmp_path):
    d = tmp_path / "results"
    for model in ("exp11_dynamic_tiny", "exp11_baseline_tiny"):
        r = _lm(model, 0, 7.0, 20000.0)
        r["flops"] = dict(executed_gflops=0.5, executed_gflops_per_token=0.002, saved=0.1)
        append_record(d / "pydocs.jsonl", r)
    figures_section(d, write=True)
    spec = json.loads((tmp_path / "figures" / "pydocs_perplexity_vs_gflops.json").read_text())
    assert [p["x"] for p in spec["points"]] == [pytest.approx(0.002)] * 2
    assert "per token" in spec["xlabel"]
