"""The leaderboard holds a routed model to its trained static plans (leaderboard/static_plans.py)."""
import json

import pytest

from leaderboard import append_record, build_leaderboard, summarize
from leaderboard.aggregate import load_results
from leaderboard.figures import figure_specs
from leaderboard.static_plans import as_good, frontier
from test_leaderboard import lm_rec, rec, table_row

PLANS = ["net_ccc", "net_cbc", "net_bbb"]


def _flops(g):
    return dict(executed_gflops=g, dense_gflops=0.03, saved=1 - g / 0.03)


def _board(tmp_path, routed_top1=(97.0, 97.2, 96.8), routed_gflops=0.012, plans=None):
    """A routed model (top-1 97.0 +- 0.2) and three static plans: cheap and worse, mid and as
    good, dear and better."""
    plans = plans or {"net_ccc": (95.0, 0.004), "net_cbc": (96.9, 0.013), "net_bbb": (97.3, 0.021)}
    for seed, top1 in enumerate(routed_top1):
        append_record(tmp_path / "r.jsonl", rec(model="net", seed=seed, top1=top1, static_plans=PLANS,
                                               static_form="net_bbb", flops=_flops(routed_gflops)))
    for name, (top1, g) in plans.items():
        for seed in range(3):
            append_record(tmp_path / "r.jsonl", rec(model=name, seed=seed, top1=top1 + 0.1 * (seed - 1),
                                                   flops=_flops(g)))
    return build_leaderboard(tmp_path)[0]


def test_saving_is_against_the_cheapest_plan_within_one_std(tmp_path):
    markdown = _board(tmp_path)
    # net_ccc is cheaper but 2 points worse; net_cbc (96.9, inside 97.0 - 0.2) is the cheapest as good
    assert table_row(markdown, "net")[5] == f"{100 * (1 - 0.012 / 0.013):.1f}% (net_cbc)"
    assert "executes 7.7% fewer FLOPs than `net_cbc`" in markdown and "routing pays here" in markdown
    assert table_row(markdown, "net_cbc")[5] == "–"   # static rows are not held to anything


def test_a_negative_saving_is_shown_as_it_is_and_said_plainly(tmp_path):
    markdown = _board(tmp_path, routed_gflops=0.016)
    assert table_row(markdown, "net")[5] == f"{100 * (1 - 0.016 / 0.013):.1f}% (net_cbc)"
    assert table_row(markdown, "net")[5].startswith("-23.1%")
    assert "executes 23.1% more FLOPs than `net_cbc`" in markdown and "routing does not pay here" in markdown


def test_no_plan_as_good_is_said_and_no_saving_invented(tmp_path):
    markdown = _board(tmp_path, routed_top1=(98.0, 98.1, 97.9))
    assert table_row(markdown, "net")[5] == "none as good"
    assert "no static plan on this board reaches its top-1" in markdown


def test_plans_not_on_the_board_leave_the_cell_empty(tmp_path):
    append_record(tmp_path / "r.jsonl", rec(model="net", static_plans=PLANS, flops=_flops(0.01)))
    markdown, _ = build_leaderboard(tmp_path)
    assert table_row(markdown, "net")[5] == "–"


def test_lm_plans_are_held_to_bits_per_byte_lower_is_better(tmp_path):
    for seed, bpb in enumerate((1.80, 1.78, 1.82)):   # 1.80 +- 0.02
        append_record(tmp_path / "r.jsonl", lm_rec("lm", 3.5, seed=seed, bpb=bpb, static_plans=["lm_a", "lm_b"],
                                                  flops=dict(executed_gflops_per_token=0.0024, saved=0.1)))
    for name, bpb, g in (("lm_a", 1.83, 0.0021), ("lm_b", 1.81, 0.0022)):
        append_record(tmp_path / "r.jsonl", lm_rec(name, 3.6, bpb=bpb, flops=dict(executed_gflops_per_token=g)))
    tables, _ = summarize(load_results(tmp_path)[0])
    row = next(r for r in tables[0].rows if r.model == "lm")
    # lm_a (1.83) is outside 1.80 + 0.02; lm_b (1.81) is inside: routing costs 9.1 % more than it
    assert row.best_static == "lm_b" and row.saved_vs_best_static == pytest.approx(1 - 0.0024 / 0.0022)


def test_budget_curve_points_are_held_to_the_plans_too(tmp_path):
    _board(tmp_path)
    for seed in range(2):
        for target, top1 in ((0.1, 94.9), (0.3, 95.1)):
            append_record(tmp_path / "r.jsonl", rec(model="net", seed=seed, top1=top1, budget=dict(target=target),
                                                   flops=_flops(0.003)))
    tables, _ = summarize(load_results(tmp_path)[0])
    low, high = tables[0].curves[0].points
    # 94.9: net_ccc (95.0) is as good and cheapest; 95.1: net_ccc falls short, net_cbc (96.9) is next
    assert (low.best_static, high.best_static) == ("net_ccc", "net_cbc")
    assert low.saved_vs_best_static == pytest.approx(1 - 0.003 / 0.004)
    assert high.saved_vs_best_static == pytest.approx(1 - 0.003 / 0.013)
    markdown, _ = build_leaderboard(tmp_path)
    assert "25.0% (net_ccc)" in markdown and "76.9% (net_cbc)" in markdown


@pytest.mark.parametrize("higher", [True, False])
def test_frontier_keeps_exactly_the_undominated_points(higher):
    pts = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (4.0, 97.0), (2.5, 95.0)]
    if not higher:
        pts = [(c, -q) for c, q in pts]
    got = frontier(pts, higher)
    want = [(1.0, 90.0), (2.0, 95.0), (4.0, 97.0)]
    assert got == (want if higher else [(c, -q) for c, q in want])
    assert as_good(96.9, 97.0, 0.2, True) and not as_good(96.7, 97.0, 0.2, True)
    assert as_good(1.81, 1.80, 0.02, False) and not as_good(1.83, 1.80, 0.02, False)


def test_the_figure_draws_the_plans_frontier(tmp_path):
    _board(tmp_path)
    tables, _ = summarize(load_results(tmp_path)[0])
    spec = next(s for s in figure_specs(tables) if s["kind"] == "gflops")
    (front,) = spec["frontiers"]
    assert front["model"] == "net" and front["plans"] == sorted(PLANS)
    assert [p["model"] for p in front["frontier"]] == ["net_ccc", "net_cbc", "net_bbb"]
    json.dumps(spec)  # the figure's JSON holds exactly these numbers


def test_a_saving_that_rounds_to_zero_is_shown_without_a_sign(tmp_path):
    markdown = _board(tmp_path, routed_gflops=0.0130004)
    assert table_row(markdown, "net")[5] == "0.0% (net_cbc)"
