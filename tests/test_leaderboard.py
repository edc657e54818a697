"""Results store and leaderboard: small hand-written records in tmp dirs."""
import json
import math
import multiprocessing
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaderboard import (append_record, build_leaderboard, check_leaderboard, read_records,
                         summarize, write_leaderboard)
from leaderboard.render import EXTRA_BEGIN, EXTRA_END, human_count


def rec(model="m_a", seed=0, suite="mnist5k", top1=90.0, created="2024-05-01T12:00:00Z", **kw):
    """A minimal classification record; keyword arguments override or add fields."""
    r = dict(model=model, suite=suite, seed=seed, task="image-classification",
             metrics=dict(top1=top1, top5=99.0, loss=0.3), routing={}, flops=None,
             params=1_234_567, throughput=dict(samples_per_s=1000.0, threads=4, device="cpu"),
             env=dict(device="cpu", threads=4, python="3.11.9", torch="2.4.0", timm="1.0.9",
                      mmengine="0.10.4", git_sha="0123456789abcdef", git_dirty=False),
             command=["python", "-m", "harness", "train", "--model", model],
             created=created)
    r.update(kw)
    return r


def lm_rec(model, ppl, seed=0, bpb=1.0, **kw):
    r = dict(model=model, suite="tinylm", seed=seed, task="causal-lm",
             metrics=dict(loss=math.log(ppl), perplexity=ppl, bits_per_byte=bpb),
             throughput=dict(tokens_per_s=5000.0), routing={}, flops=None, params=10_000,
             created="2024-05-01T12:00:00Z")
    r.update(kw)
    return r


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def table_row(markdown, model):
    """The table line of `model`, split into stripped cells."""
    for line in markdown.splitlines():
        if line.startswith(f"| {model} "):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row for {model}:\n{markdown}")


# ----------------------------------------------------------------------------- store


def test_append_then_read_roundtrip(tmp_path):
    path = tmp_path / "deep" / "dir" / "r.jsonl"          # parent dirs are created
    append_record(path, rec(seed=0))
    append_record(path, rec(seed=1, metrics=dict(top1=float("nan"), loss=float("inf"))))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert list(json.loads(lines[0])) == sorted(json.loads(lines[0]))   # sorted keys
    assert "NaN" not in lines[1] and "Infinity" not in lines[1]
    records, problems = read_records(path)
    assert problems == []
    assert [r["seed"] for r in records] == [0, 1]
    assert records[1]["metrics"] == {"top1": None, "loss": None}


def test_append_rejects_invalid_records(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="seed"):
        append_record(path, {"model": "m", "suite": "s", "metrics": {}})
    with pytest.raises(TypeError, match="not JSON"):
        append_record(path, rec(extra=object()))
    assert not path.exists() or path.read_text() == ""


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    path = tmp_path / "r.jsonl"
    write_lines(path, [
        json.dumps(rec(seed=0)),
        "{not json",
        "",                                                  # blank: ignored, not a problem
        "[1, 2]",
        json.dumps({"model": "m", "suite": "s"}),
        json.dumps(rec(seed="zero")),
        '{"model": "m", "suite": "s", "seed": 1, "metrics": {"top1": NaN}}',
        json.dumps(rec(seed=2)),
    ])
    records, problems = read_records(path, label="r.jsonl")
    assert [r["seed"] for r in records] == [0, 2]
    assert [p.split(":")[:2] for p in problems] == [
        ["r.jsonl", "2"], ["r.jsonl", "4"], ["r.jsonl", "5"], ["r.jsonl", "6"], ["r.jsonl", "7"]]
    assert "invalid JSON" in problems[0]
    assert "not a JSON object" in problems[1]
    assert "missing required keys: seed, metrics" in problems[2]
    assert "seed must be an integer" in problems[3]
    assert "NaN" in problems[4]


def test_missing_file_reads_as_empty(tmp_path):
    assert read_records(tmp_path / "none.jsonl") == ([], [])


def test_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"model": "m", "sui')                 # a writer died mid-line
    append_record(path, rec(seed=3))
    records, problems = read_records(path)
    assert [r["seed"] for r in records] == [3]
    assert len(problems) == 1 and ":1:" in problems[0]


def _append_many(path, worker, count):
    # Big lines make an interleaving visible if the lock ever failed.
    for i in range(count):
        append_record(path, rec(model=f"w{worker}", seed=i, pad="x" * 100_000))


def test_concurrent_appends_never_interleave_or_lose_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    procs = [multiprocessing.Process(target=_append_many, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 100
    parsed = [json.loads(line) for line in lines]          # every line is whole JSON
    assert sorted((r["model"], r["seed"]) for r in parsed) == sorted(
        (f"w{w}", i) for w in range(4) for i in range(25))


# ----------------------------------------------------------------------------- aggregation


def test_mean_std_n_over_seeds(tmp_path):
    values = [97.1, 97.3, 97.8]
    for seed, v in enumerate(values):
        append_record(tmp_path / "r.jsonl", rec(seed=seed, top1=v))
    append_record(tmp_path / "r.jsonl", rec(model="m_b", top1=95.0))
    [table], problems = summarize(read_records(tmp_path / "r.jsonl")[0])
    assert problems == []
    row = {r.model: r for r in table.rows}["m_a"]
    stat = row.metrics["top1"]
    assert stat.mean == pytest.approx(statistics.mean(values))
    assert stat.std == pytest.approx(statistics.stdev(values))      # ddof=1
    assert (stat.n, stat.total) == (3, 3)

    markdown, _ = build_leaderboard(tmp_path)
    cells = table_row(markdown, "m_a")
    expected = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n=3)"
    assert cells[1] == expected
    assert table_row(markdown, "m_b")[1] == "95.00 (n=1)"            # one seed: no std
    assert cells[2] == "1.23M"
    assert cells[3] == "1,000.0"


def test_null_metric_counts_against_n_but_is_not_filled(tmp_path):
    append_record(tmp_path / "r.jsonl", rec(seed=0, top1=90.0))
    append_record(tmp_path / "r.jsonl", rec(seed=1, top1=float("nan")))   # diverged
    markdown, _ = build_leaderboard(tmp_path)
    assert table_row(markdown, "m_a")[1] == "90.00 (n=1 of 2)"


def test_newest_record_per_seed_wins_regardless_of_file(tmp_path):
    # The newer record sits in the file read first; a "+02:00" offset is compared as UTC.
    append_record(tmp_path / "a.jsonl", rec(seed=0, top1=80.0, created="2024-05-02T10:00:00+02:00"))
    append_record(tmp_path / "b.jsonl", rec(seed=0, top1=70.0, created="2024-05-02T07:59:59Z"))
    append_record(tmp_path / "b.jsonl", rec(seed=1, top1=60.0, created="2024-01-01T00:00:00Z"))
    markdown, problems = build_leaderboard(tmp_path)
    assert problems == []
    assert table_row(markdown, "m_a")[1] == "70.00 ± 14.14 (n=2)"     # seeds 0 (80) and 1 (60)


def test_null_flops_shown_as_dash_and_measured_flops_shown(tmp_path):
    append_record(tmp_path / "r.jsonl", rec(model="dense", flops=None))
    append_record(tmp_path / "r.jsonl", rec(
        model="routed", top1=91.0,
        flops=dict(executed_gflops=0.0123, dense_gflops=0.02, saved=0.385),
        routing={"L1": dict(granularity="sample", choices=["conv", "trans", "both"],
                            share=dict(conv=0.4, trans=0.35, both=0.25), entropy=1.0,
                            load_balance=0.9)}))
    markdown, _ = build_leaderboard(tmp_path)
    # GFLOPs/sample, saved vs static, saved vs always-both, routing mix
    assert table_row(markdown, "dense")[4:8] == ["–", "–", "–", "static"]
    assert table_row(markdown, "routed")[4:8] == ["0.0123", "–", "38.5%", "L1 conv 40/trans 35/both 25"]


def test_budget_records_make_a_curve_not_a_row(tmp_path):
    append_record(tmp_path / "r.jsonl", rec(model="routed", top1=97.0,
                                           flops=dict(executed_gflops=0.02, dense_gflops=0.03, saved=0.33)))
    for seed in (0, 1):
        for target, top1 in ((0.4, 90.0 + seed), (0.8, 96.0 + seed)):
            append_record(tmp_path / "r.jsonl", rec(
                model="routed", seed=seed, top1=top1, budget=dict(target=target),
                flops=dict(executed_gflops=0.03 * target, dense_gflops=0.03, saved=1 - target)))
    markdown, _ = build_leaderboard(tmp_path)
    assert table_row(markdown, "routed")[1] == "97.00 (n=1)"   # the plain run only
    assert "### mnist5k: compute-budget curves" in markdown
    curve = [line for line in markdown.splitlines() if line.startswith("| routed ") and "0.4" in line.split("|")[2]]
    assert [c.strip() for c in curve[0].strip("|").split("|")] == ["routed", "0.4", "90.50 ± 0.71 (n=2)",
                                                                    "0.012", "–", "60.0%"]


def test_routing_mix_is_mean_over_seeds_in_natural_layer_order(tmp_path):
    def routing(conv):
        info = dict(granularity="patch", choices=["conv", "trans"],
                    share=dict(conv=conv, trans=1 - conv))
        return {"L10": info, "L2": info}
    append_record(tmp_path / "r.jsonl", rec(seed=0, routing=routing(0.2)))
    append_record(tmp_path / "r.jsonl", rec(seed=1, routing=routing(0.4)))
    markdown, _ = build_leaderboard(tmp_path)
    assert table_row(markdown, "m_a")[7] == "L2 conv 30/trans 70; L10 conv 30/trans 70"


def test_rows_sorted_best_first_ties_by_name_and_lm_lower_is_better(tmp_path):
    for model, top1 in [("m_c", 90.0), ("m_b", 95.0), ("m_a", 90.0)]:
        append_record(tmp_path / "cls.jsonl", rec(model=model, top1=top1))
    for model, ppl in [("lm_big", 3.5), ("lm_small", 7.25)]:
        append_record(tmp_path / "lm.jsonl", lm_rec(model, ppl, bpb=ppl / 10))
    markdown, _ = build_leaderboard(tmp_path)
    order = [line.split("|")[1].strip() for line in markdown.splitlines()
             if line.startswith("| m_") or line.startswith("| lm_")]
    assert order == ["m_b", "m_a", "m_c", "lm_big", "lm_small"]
    assert markdown.index("## mnist5k") < markdown.index("## tinylm")   # suites by name
    assert table_row(markdown, "lm_small")[1:3] == ["7.25 (n=1)", "0.725 (n=1)"]
    assert "Tokens/s" in markdown and "Bits/byte" in markdown


def test_conditions_and_commands_below_each_table(tmp_path):
    for seed in range(2):
        append_record(tmp_path / "r.jsonl", rec(
            seed=seed, command=["python", "-m", "harness", "train", "--seed", str(seed)],
            env=dict(device="cpu", threads=4, torch=["2.3.0", "2.4.0"][seed])))
    append_record(tmp_path / "r.jsonl", rec(model="m_b", seed=0, top1=10.0,
                                            env=dict(device="cpu", threads=4, torch="2.4.0")))
    markdown, _ = build_leaderboard(tmp_path)
    assert "Conditions: device cpu; threads 4; torch 2.3.0 / 2.4.0 (mixed)." in markdown
    assert ("- `m_a`: `python -m harness train --seed 0` "
            "(shown for seed 0; commands differ across seeds 0, 1)") in markdown
    assert "- `m_b`: `python -m harness train --model m_b` (seed 0)" in markdown


def test_problems_section_lists_malformed_lines(tmp_path):
    write_lines(tmp_path / "r.jsonl", [json.dumps(rec()), "oops", json.dumps({"model": "x"})])
    markdown, problems = build_leaderboard(tmp_path)
    assert [p.split(":")[:2] for p in problems] == [["r.jsonl", "2"], ["r.jsonl", "3"]]
    section = markdown[markdown.index("## Problems"):]
    assert "r.jsonl:2: invalid JSON" in section and "r.jsonl:3: missing required keys" in section
    assert table_row(markdown, "m_a")                          # the good line still counts

    write_lines(tmp_path / "r.jsonl", [json.dumps(rec())])
    assert "## Problems" not in build_leaderboard(tmp_path)[0]


def test_non_numeric_metric_is_a_problem_not_a_row(tmp_path):
    write_lines(tmp_path / "r.jsonl", [json.dumps(rec(seed=0, top1="abc")), json.dumps(rec(seed=1, top1=True)),
                                       json.dumps(rec(seed=2, top1=91.0))])
    markdown, problems = build_leaderboard(tmp_path)
    assert problems == ["r.jsonl:1: metrics.top1 must be a number or null, got 'abc'",
                        "r.jsonl:2: metrics.top1 must be a number or null, got True"]
    assert "abc" in markdown[markdown.index("## Problems"):]
    assert table_row(markdown, "m_a")[1] == "91.00 (n=1)"  # only the numeric record counts
    with pytest.raises(ValueError, match="metrics.top1 must be a number"):
        append_record(tmp_path / "r.jsonl", rec(seed=3, top1="abc"))


def test_header_and_extra_sections_hook(tmp_path):
    append_record(tmp_path / "r.jsonl", rec())
    markdown, _ = build_leaderboard(tmp_path, extra_sections=["## Performance\n\n![x](x.png)\n"])
    assert "python -m harness leaderboard" in markdown.split("\n## ")[0]
    assert "do not edit by hand" in markdown.lower()
    begin, end = markdown.index(EXTRA_BEGIN), markdown.index(EXTRA_END)
    assert begin < markdown.index("## Performance") < end
    assert markdown.index("Reproduce:") < begin
    assert EXTRA_BEGIN in build_leaderboard(tmp_path)[0]        # the hook is always there


def test_empty_results_dir(tmp_path):
    markdown, problems = build_leaderboard(tmp_path)
    assert problems == [] and "No results yet" in markdown


@pytest.mark.parametrize("n, text", [(999, "999"), (1_234, "1.23K"), (1_234_567, "1.23M"),
                                     (999_999, "1.00M"), (2_500_000_000, "2.50B")])
def test_human_count(n, text):
    assert human_count(n) == text


# ----------------------------------------------------------------------------- determinism


def test_build_is_deterministic_and_ignores_file_arrangement(tmp_path):
    records = [rec(model=m, seed=s, top1=90 + s + len(m) / 10) for m in ("m_a", "m_bb")
               for s in range(3)]
    one, two = tmp_path / "one", tmp_path / "two"
    for r in records:
        append_record(one / "all.jsonl", r)
    for i, r in enumerate(reversed(records)):
        append_record(two / f"part{i % 2}.jsonl", r)
    first, _ = build_leaderboard(one)
    assert build_leaderboard(one)[0] == first
    assert build_leaderboard(two)[0] == first


_value = st.floats(min_value=0, max_value=100, allow_nan=False)
_record = st.builds(lambda m, s, v, c: rec(model=m, seed=s, top1=v,
                                           created=f"2024-05-01T12:00:{c:02d}Z"),
                    st.sampled_from(["m_a", "m_b", "m_c"]), st.integers(0, 3), _value,
                    st.integers(0, 59))


@settings(deadline=None, max_examples=25)
@given(records=st.lists(_record, min_size=1, max_size=12), data=st.data())
def test_page_independent_of_record_order_and_files(tmp_path_factory, records, data):
    """Same records, any order, any split into files: byte-identical page."""
    shuffled = data.draw(st.permutations(records))
    files = data.draw(st.lists(st.integers(0, 2), min_size=len(records),
                               max_size=len(records)))
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    for r in records:
        append_record(one / "r.jsonl", r)
    for r, f in zip(shuffled, files):
        append_record(two / f"f{f}.jsonl", r)
    assert build_leaderboard(one)[0] == build_leaderboard(two)[0]


@settings(deadline=None, max_examples=25)
@given(values=st.lists(_value, min_size=1, max_size=6))
def test_mean_std_match_statistics(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("r") / "r.jsonl"
    for seed, v in enumerate(values):
        append_record(path, rec(seed=seed, top1=v))
    [table], _ = summarize(read_records(path)[0])
    stat = table.rows[0].metrics["top1"]
    assert stat.mean == pytest.approx(statistics.mean(values))
    if len(values) > 1:
        assert stat.std == pytest.approx(statistics.stdev(values), abs=1e-9)
    else:
        assert stat.std is None


# ----------------------------------------------------------------------------- check


def test_check_detects_staleness(tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "LEADERBOARD.md"
    append_record(results / "r.jsonl", rec(seed=0))
    assert not check_leaderboard(results, out)                  # not generated yet
    assert write_leaderboard(results, out) == []
    assert check_leaderboard(results, out)
    capsys.readouterr()

    append_record(results / "r.jsonl", rec(seed=1, top1=50.0))  # a new run lands
    assert not check_leaderboard(results, out)
    err = capsys.readouterr().err
    assert "stale" in err and "python -m harness leaderboard" in err and "\n+" in err

    write_leaderboard(results, out)
    out.write_bytes(out.read_bytes().replace(b"\n", b"\r\n"))   # same text, other line ends
    assert not check_leaderboard(results, out)
    write_leaderboard(results, out)
    assert check_leaderboard(results, out)
    assert not check_leaderboard(results, out, extra_sections=["## Performance"])
