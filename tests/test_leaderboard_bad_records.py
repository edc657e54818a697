"""One bad line or file in the results store never crashes `leaderboard` or `leaderboard --check`:
each unusable record is listed under Problems and the rest of the page renders. A partial last
line that a run is still appending is not a problem."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from leaderboard.store import read_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = dict(model="dhvn_nano", suite="mnist5k", seed=0, task="image-classification",
            metrics=dict(top1=50.0, top5=90.0, loss=1.0), created="2024-05-01T12:00:00Z")
HEAD = '{"model":"m","suite":"mnist5k","seed":0,'

# one line each, and what the Problems list says about it
BAD = {
    "huge metric": (HEAD + '"metrics":{"top1":1' + "0" * 400 + "}}", "integer of 401 digits"),
    "1e400 metric": (HEAD + '"metrics":{"top1":1e400}}', "inf, not a number"),
    "task list": (HEAD + '"metrics":{},"task":["x"]}', "task must be a non-empty string"),
    "year 1": (HEAD + '"metrics":{},"created":"0001-01-01T00:00:00+05:00"}', "converts to UTC"),
    "surrogate": ('{"model":"m\\ud800","suite":"mnist5k","seed":0,"metrics":{}}', "lone surrogate"),
    "deep": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "huge params": (HEAD + '"metrics":{},"params":' + "9" * 500 + "}", "params is an integer"),
    "huge throughput": (HEAD + '"metrics":{},"throughput":{"samples_per_s":1' + "0" * 400 + "}}",
                        "throughput.samples_per_s"),
    "huge share": (HEAD + '"metrics":{},"routing":{"r":{"share":{"a":1' + "0" * 400 + "}}}}", "share.a"),
    "newline name": ('{"model":"m\\nx","suite":"mnist5k","seed":0,"metrics":{}}', "a name cannot have"),
    "html name": ('{"model":"<b>m</b>","suite":"mnist5k","seed":0,"metrics":{}}', "a name cannot have"),
    "negative throughput": (HEAD + '"metrics":{},"throughput":{"samples_per_s":-5}}', "must be >= 0"),
}


def _store(tmp_path, lines, tail=""):
    results = tmp_path / "board" / "results"
    results.mkdir(parents=True)
    text = json.dumps(GOOD) + "\n" + "".join(line + "\n" for line in lines) + tail
    (results / "mnist5k.jsonl").write_text(text, encoding="utf-8", errors="surrogatepass")
    return results


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_record_is_a_problem_and_the_good_one_stays(tmp_path, case):
    line, says = BAD[case]
    records, problems = read_records(_store(tmp_path, [line]) / "mnist5k.jsonl")
    assert [r["model"] for r in records] == ["dhvn_nano"]
    assert len(problems) == 1 and says in problems[0], problems
    problems[0].encode("utf-8")  # a problem line itself can be written on the page


def test_a_partial_last_line_being_written_is_not_a_problem(tmp_path):
    records, problems = read_records(_store(tmp_path, [], tail='{"model":"dhvn_nano","su') / "mnist5k.jsonl")
    assert len(records) == 1 and problems == []


def test_leaderboard_and_check_render_around_every_bad_record_and_a_folder_named_jsonl(tmp_path):
    results = _store(tmp_path, [line for line, _ in BAD.values()], tail='{"model":"x","su')
    (results / "x.jsonl").mkdir()
    page = tmp_path / "board" / "PAGE.md"
    env = dict(os.environ, MPLBACKEND="Agg")
    for argv in ([], ["--check"]):
        p = subprocess.run([sys.executable, "-m", "harness", "leaderboard", "--results-dir", str(results),
                            "--out", str(page), *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                           env=env)
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr
    text = page.read_text(encoding="utf-8")
    assert "dhvn_nano" in text and "Problems" in text
    assert "x.jsonl: not a regular file" in text
    assert text.count("mnist5k.jsonl:") == len(BAD)
