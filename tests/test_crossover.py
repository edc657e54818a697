"""The crossover table (leaderboard/crossover.py) and the sweep that feeds it (benchmarks/crossover.py)."""
import json

from benchmarks import crossover as sweep
from leaderboard.crossover import crossover_parts, pays


def _result(size, speedup, ratio, reliable=True, task="image-classification", threads=1, policy="skip=0.5"):
    shape = [64, 1, size, size] if task != "causal-lm" else [1, size]
    return {"model": "dhvn_nano", "task": task, "input_shape": shape, "policy": policy,
            "conditions": {"threads": threads}, "load": {"reliable": reliable},
            "reference": {"speedup_median": speedup, "efficiency": speedup / ratio, "flops_ratio": ratio}}


def test_pays_needs_speed_efficiency_and_a_quiet_machine():
    assert pays(_result(60, 1.5, 1.6))            # eff 0.94
    assert not pays(_result(60, 1.2, 1.6))        # eff 0.75: faster, but the clock keeps too little
    assert not pays(_result(60, 0.95, 1.0))       # eff 0.95 but slower
    assert not pays(_result(60, 1.5, 1.6, reliable=False))
    assert pays({"reference": {}}) is None


def _write(tmp_path, results):
    folder = tmp_path / "crossover"
    folder.mkdir()
    for i, r in enumerate(results):
        (folder / f"dhvn_{i}.json").write_text(json.dumps({"benchmark": "bench", "command": f"c{i}", "results": [r]}))
    return tmp_path


def test_pays_from_is_the_smallest_size_after_which_every_size_pays(tmp_path):
    # 28 pays, 60 does not, 112 and 224 pay: the crossover is 112, not 28
    perf = _write(tmp_path, [_result(28, 1.5, 1.6), _result(60, 1.1, 1.6), _result(112, 1.5, 1.6),
                             _result(224, 1.6, 1.6)])
    text = "\n".join(crossover_parts(perf))
    row = next(line for line in text.splitlines() if line.startswith("| `dhvn_nano`"))
    assert row.rstrip(" |").endswith("112")
    assert "**1.50x, eff 0.94**" in row and "1.10x, eff 0.69" in row


def test_a_largest_size_that_does_not_pay_is_none(tmp_path):
    perf = _write(tmp_path, [_result(28, 1.5, 1.6), _result(60, 0.9, 1.6)])
    row = next(line for line in "\n".join(crossover_parts(perf)).splitlines() if line.startswith("| `dhvn_nano`"))
    assert row.rstrip(" |").endswith("none")


def test_no_files_no_section(tmp_path):
    assert crossover_parts(tmp_path) == []


def test_the_sweep_covers_every_size_the_issue_names_at_both_thread_counts():
    rows = sweep.jobs()
    sizes = {}
    for name, kind, argv, _ in rows:
        assert kind == "bench" and "--static-reference" in argv and argv[argv.index("--threads") + 1:][:2] == ["1", "2"]
        fam, size = name.split("_")[:2]
        sizes.setdefault(fam, set()).add(int(size))
    assert sizes == {"dhvn": {28, 60, 112, 224}, "eshvision": {28, 60, 112, 224}, "exp11": {256, 1024, 4096}}
    for fam in sizes:
        mixes = {name.split("_")[2] for name, *_ in rows if name.startswith(fam)}
        assert {"skip25", "skip50", "skip75", "trained"} <= mixes
