"""benchmarks/bench_train_step.py: the ImageNet recipe's step runs and reports its epoch estimate;
bad input is one line. (The timings themselves are never asserted.)"""
from __future__ import annotations

from benchmark_scripts import load_benchmark


def _script():
    return load_benchmark("bench_train_step")


def test_recipe_step_and_epoch_estimate(capsys):
    code = _script().main(["--models", "dhvn_nano", "--img-size", "32", "--batch-size", "4",
                           "--steps", "2", "--warmup", "1", "--gpus", "8"])
    out = capsys.readouterr().out
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("dhvn_nano"))
    _, ips, *_, one, _, eight, _ = row.split()
    hours_1, hours_8 = float(one), float(eight)
    assert hours_1 == pytest_approx(1_281_167 / float(ips) / 3600, rel=0.01)
    assert hours_8 == pytest_approx(hours_1 / 8, rel=0.01)
    assert "threads" in out and "load before" in out and "load after" in out


def test_odd_batch_and_unknown_model_are_one_line(capsys):
    script = _script()
    assert script.main(["--models", "dhvn_nano", "--img-size", "32", "--batch-size", "3", "--steps", "1",
                        "--warmup", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "even training batch" in err
    assert script.main(["--models", "no_such_model"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_model" in err


def pytest_approx(value, rel):
    import pytest
    return pytest.approx(value, rel=rel)
