"""The leaderboard keeps rows trained in different routing modes apart (issue 24): a record's
`train.routing_mode` names the mode, records without it read as dense, and each mode is a row of
its own, averaged over its own seeds and held to the same static plans."""
from __future__ import annotations

import json

import pytest

from leaderboard import build_leaderboard, summarize
from leaderboard.train_modes import mode_label, row_name

from test_leaderboard import rec, table_row, write_lines


def _mode(execution="dense", capacity=None):
    return dict(routing_mode=dict(train_execution=execution, capacity=capacity))


def _routed(seed, top1, gflops, **train):
    return rec(model="dhvn_nano", seed=seed, top1=top1, static_plans=["dhvn_nano_ccc"], family="dhvn",
               flops=dict(executed_gflops=gflops, saved=0.2), train=dict(iters=400, **train))


@pytest.mark.parametrize("train, label", [
    (None, None),                                               # older records: no train at all
    (dict(iters=400), None),                                    # no routing_mode field
    (dict(routing_mode=None), None),                            # no routers (static plans, timm)
    (_mode("dense"), None),                                     # plain dense: the bare name
    (_mode("sparse"), "train: sparse"),
    (_mode("sparse", 0.5), "train: sparse / cap 0.5"),
    (_mode("dense", 0.25), "train: dense / cap 0.25"),
])
def test_mode_label(train, label):
    record = rec() if train is None else rec(train=train)
    if train is None:
        record.pop("train", None)
    assert mode_label(record) == label
    assert row_name("dhvn_nano", label) == ("dhvn_nano" if label is None else f"dhvn_nano ({label})")


def test_modes_are_rows_of_their_own_and_old_records_read_as_dense():
    records = [
        _routed(0, 97.0, 0.012),                                 # old: no field
        _routed(1, 97.2, 0.012, **_mode("dense")),               # new, dense: the same row
        _routed(0, 95.0, 0.008, **_mode("sparse", 0.5)),
        _routed(1, 96.0, 0.008, **_mode("sparse", 0.5)),
        _routed(0, 90.0, 0.010, **_mode("sparse")),
        rec(model="dhvn_nano_ccc", seed=0, top1=96.0, flops=dict(executed_gflops=0.004, saved=0.0),
            train=dict(routing_mode=None)),
    ]
    tables, problems = summarize(records)
    assert problems == []
    rows = {r.model: r for r in tables[0].rows}
    assert set(rows) == {"dhvn_nano", "dhvn_nano (train: sparse / cap 0.5)", "dhvn_nano (train: sparse)",
                         "dhvn_nano_ccc"}
    dense, capped, sparse = rows["dhvn_nano"], rows["dhvn_nano (train: sparse / cap 0.5)"], \
        rows["dhvn_nano (train: sparse)"]
    # each mode averages its own seeds only
    assert dense.seeds == (0, 1) and dense.metrics["top1"].mean == pytest.approx(97.1)
    assert capped.seeds == (0, 1) and capped.metrics["top1"].mean == pytest.approx(95.5)
    assert sparse.seeds == (0,) and sparse.metrics["top1"].mean == pytest.approx(90.0)
    assert (dense.train_mode, capped.train_mode, sparse.train_mode) == (
        None, "train: sparse / cap 0.5", "train: sparse")
    assert rows["dhvn_nano_ccc"].train_mode is None
    # every mode's row is held to the same static plans on the board
    assert capped.plans_on_board == ("dhvn_nano_ccc",) and capped.best_static == "dhvn_nano_ccc"
    assert capped.saved_vs_best_static == pytest.approx(1 - 0.008 / 0.004)
    assert dense.best_static is None  # 96.0 is not within one std of 97.1


def test_a_rerun_in_another_mode_does_not_replace_the_dense_seed():
    """One record per (model, mode, seed): the newest sparse record of seed 0 leaves the dense one."""
    records = [_routed(0, 97.0, 0.012), _routed(0, 95.0, 0.008, **_mode("sparse"))]
    records[1]["created"] = "2024-06-01T12:00:00Z"  # newer than the dense one
    tables, _ = summarize(records)
    by = {r.model: r.metrics["top1"].mean for r in tables[0].rows}
    assert by == {"dhvn_nano": 97.0, "dhvn_nano (train: sparse)": 95.0}


def test_the_page_names_the_mode_of_each_row(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_lines(results / "mnist5k.jsonl", [json.dumps(r) for r in (
        _routed(0, 97.0, 0.012), _routed(0, 95.0, 0.008, **_mode("sparse", 0.25)))])
    page, _ = build_leaderboard(results)
    assert table_row(page, "dhvn_nano (train: sparse / cap 0.25)")[1].startswith("95.00")
    assert table_row(page, "dhvn_nano")[1].startswith("97.00")
    assert "\"(train: …)\" after a model" in page


def test_a_board_with_dense_rows_only_has_no_mode_note(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_lines(results / "mnist5k.jsonl", [json.dumps(_routed(0, 97.0, 0.012, **_mode("dense")))])
    page, _ = build_leaderboard(results)
    assert "(train:" not in page
