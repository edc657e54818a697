"""`python -m harness compare`: curves from real harness training logs, the table from the results
store, resumed sessions stitched in order, one-line errors."""
from __future__ import annotations

import json

import pytest

from harness.commands.compare import read_training_log
from harness.viz.common import DPI, png_size
from harness.viz.compare_plots import CURVES_SIZE, routing_size
from harness_testutils import TINY_DATA, assert_one_line_error, read_jsonl, run_cli

MODELS = ["dhvn_nano", "dhvn_nano_static"]


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    """Both forms of dhvn_nano, 3 iterations each, every iteration logged."""
    from harness.cli import main
    tmp = tmp_path_factory.mktemp("compare")
    main(["run", "--models", *MODELS, "--suite", "mnist5k", "--seeds", "0", "--max-iters", "3",
          "--batch-size", "8", "--work-dir", str(tmp / "work"), "--results", str(tmp / "results" / "mnist5k.jsonl"),
          "--cfg-options", *TINY_DATA, "default_hooks.logger.interval=1"])
    return tmp


def _scalars(work):
    (path,) = list(work.glob("*/vis_data/scalars.json"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_compare_writes_curves_table_and_routing(trained_pair, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", "--models", *MODELS, "--work-dirs", str(trained_pair / "work"),
                                 "--results-dir", str(trained_pair / "results"), "--out", str(out)], capsys)
    assert code == 0, err
    assert png_size(out / "loss_curves.png") == tuple(int(round(v * DPI)) for v in CURVES_SIZE)
    curves = json.loads((out / "loss_curves.json").read_text())
    assert curves["suite"] == "mnist5k" and curves["key"] == "loss_ce"
    for model in MODELS:
        logged = _scalars(trained_pair / "work" / model / "seed0")
        assert [r["iter"] for r in logged] == [1, 2, 3]
        assert curves["series"][model]["mean"] == dict(iter=[1, 2, 3], value=[r["loss_ce"] for r in logged])

    routing = json.loads((out / "routing_training.json").read_text())
    # RoutingLogHook logs the routed model's shares of every logged iteration; the static one has none
    logged = _scalars(trained_pair / "work" / "dhvn_nano" / "seed0")
    share_keys = sorted(k for k in logged[0] if k.startswith("routing/"))
    assert routing["shares_logged"] is True and routing["keys"] == share_keys
    assert {k.split("/")[1] for k in share_keys} == {"encoder.0", "encoder.1", "decoder.0"}
    for key in share_keys:
        assert routing["series"][key] == {"dhvn_nano": dict(iter=[1, 2, 3], value=[r[key] for r in logged])}
    for r in logged:  # the three choices of each router cover its batch
        for layer in ("encoder.0", "encoder.1", "decoder.0"):
            assert sum(r[f"routing/{layer}/{c}"] for c in ("conv", "transformer", "both")) == pytest.approx(1.0)
    assert png_size(out / "routing_training.png") == tuple(int(round(v * DPI)) for v in routing_size(len(share_keys)))
    assert (out / "loss_curves.png").stat().st_size > 5000

    records = {r["model"]: r for r in read_jsonl(trained_pair / "results" / "mnist5k.jsonl")}
    md = (out / "compare.md").read_text()
    assert md in stdout
    for model in MODELS:
        row = next(line for line in md.splitlines() if line.startswith(f"| {model} "))
        assert f"{records[model]['metrics']['top1']:.2f} (n=1)" in row
    assert "static" in next(line for line in md.splitlines() if line.startswith("| dhvn_nano_static "))
    assert "per-iteration routing keys found in the logs" in md


def test_suite_is_inferred_from_the_results(trained_pair, tmp_path, capsys):
    code, _, err = run_cli(["compare", "--models", *MODELS, "--work-dirs", str(trained_pair / "work"),
                            "--results-dir", str(trained_pair / "results"), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "loss_curves.json").read_text())["suite"] == "mnist5k"


@pytest.mark.parametrize("argv, fragments", [
    (["--models", "dhvn_nan", "dhvn_nano", "--suite", "mnist5k"], ["no model matches", "dhvn_nano"]),
    (["--models", "eshvision_xs", "--suite", "mnist5k"], ["nothing to compare for eshvision_xs"]),
    (["--models", "dhvn_nano"], ["give --suite"]),
    (["--models", "dhvn_nano", "--suite", "mnist"], ["unknown suite"]),
])
def test_user_mistakes_are_one_line(argv, fragments, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["compare", *argv, "--results-dir", str(tmp_path / "empty"),
                            "--work-dirs", str(tmp_path), "--out", str(out)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()


def _session(work, stamp, iters, loss0=10.0):
    d = work / stamp / "vis_data"
    d.mkdir(parents=True)
    (d / "scalars.json").write_text("".join(json.dumps(dict(iter=i, step=i, loss=loss0 - i)) + "\n" for i in iters))


def test_training_log_follows_resumes_not_older_runs(tmp_path):
    # an old run to 6, a fresh rerun stopped at 4, then its resume from 5 to 8
    _session(tmp_path, "20260101_000000", [2, 4, 6], loss0=100.0)
    _session(tmp_path, "20260102_000000", [2, 4])
    _session(tmp_path, "20260103_000000", [6, 8])
    log = read_training_log(str(tmp_path))
    assert [r["iter"] for r in log] == [2, 4, 6, 8]
    assert [r["loss"] for r in log] == [8.0, 6.0, 4.0, 2.0]


def test_logs_without_routing_shares_fall_back_to_the_aux_losses(tmp_path, capsys):
    # logs written before RoutingLogHook existed hold only the weighted auxiliary terms
    work = tmp_path / "work" / "dhvn_nano" / "seed0"
    d = work / "20260101_000000" / "vis_data"
    d.mkdir(parents=True)
    rows = [dict(iter=i, loss=2.0, loss_ce=2.0, loss_load_balance=0.1 * i) for i in (1, 2, 3)]
    (d / "scalars.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", "--models", "dhvn_nano", "--suite", "mnist5k", "--work-dirs",
                                 str(tmp_path / "work"), "--results-dir", str(tmp_path / "none"),
                                 "--out", str(out)], capsys)
    assert code == 0, err
    routing = json.loads((out / "routing_training.json").read_text())
    assert routing["shares_logged"] is False and routing["keys"] == ["loss_load_balance"]
    assert routing["series"]["loss_load_balance"]["dhvn_nano"]["value"] == pytest.approx([0.1, 0.2, 0.3])
    assert "hold no per-iteration routing shares" in stdout
    assert "no record for mnist5k" in stdout
