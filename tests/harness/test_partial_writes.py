"""Figures and their JSON are written through a temporary name and a rename, so a writer
killed half-way leaves the old file or the new one; `leaderboard --check` notices a cut or
empty PNG or JSON beside the page."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOOD = dict(model="dhvn_nano", suite="mnist5k", seed=0, task="image-classification",
            metrics=dict(top1=50.0, top5=90.0, loss=1.0), params=1000, throughput=dict(samples_per_s=10.0),
            flops=dict(executed_gflops=0.01, dense_gflops=0.02))


def test_a_picture_whose_save_fails_half_way_leaves_the_old_files(tmp_path):
    from harness.viz.common import plt, save_picture
    pyplot = plt()
    save_picture(pyplot.figure(figsize=(2, 2)), str(tmp_path), "pic", dict(v=1))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fig = pyplot.figure(figsize=(3, 3))

    def killed(path, **kw):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    fig.savefig = killed
    with pytest.raises(KeyboardInterrupt):
        save_picture(fig, str(tmp_path), "pic", dict(v=2))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left either


def _leaderboard(results, page, *extra):
    return subprocess.run([sys.executable, "-m", "harness", "leaderboard", "--results-dir", str(results),
                           "--out", str(page), *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MPLBACKEND="Agg"))


def test_check_notices_a_cut_png_and_an_empty_json(tmp_path):
    results = tmp_path / "board" / "results"
    results.mkdir(parents=True)
    (results / "mnist5k.jsonl").write_text(json.dumps(GOOD) + "\n")
    page = tmp_path / "board" / "PAGE.md"
    assert _leaderboard(results, page).returncode == 0
    assert _leaderboard(results, page, "--check").returncode == 0
    figures = tmp_path / "board" / "figures"
    png = sorted(figures.glob("*.png"))[0]
    whole = png.read_bytes()
    png.write_bytes(whole[: len(whole) // 2])
    p = _leaderboard(results, page, "--check")
    assert p.returncode == 1 and f"{png} is cut short" in p.stderr
    png.write_bytes(whole)
    js = sorted(figures.glob("*.json"))[0]
    js.write_bytes(b"")
    p = _leaderboard(results, page, "--check")
    assert p.returncode == 1 and f"{js} is cut short or empty" in p.stderr
