"""The embedded job's bookkeeping: resuming (finished steps kept and skipped, a changed recipe
or code runs them again), one job at a time, and a swap of the results that a kill cannot
leave half-done. Steps are faked where the orchestration is under test; the lock and the swap
are tested against real processes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from harness_testutils import assert_one_line_error, read_jsonl, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OLD = '{"model": "kept", "suite": "mnist5k", "seed": 0, "metrics": {"top1": 1.0}}\n'


def _fake_plan(models, recipe="2"):
    def plan(seeds, staging, root=os.path.join("work_dirs", "embedded")):
        from harness.readme_job import Step, step_store
        steps = []
        for model in models:
            name = f"mnist5k/{model}/seed0"
            wd = os.path.join(root, "mnist5k", model, "seed0")
            steps.append(Step(name, ["run", "--suite", "mnist5k", "--models", model, "--max-iters", recipe,
                                     "--work-dir", wd, "--results", step_store(staging, name)], wd))
        steps.append(Step(f"{steps[0].name}/budget", ["run", "--suite", "mnist5k", "--models", models[0],
                                                      "--checkpoint", "{checkpoint}", "--work-dir", wd,
                                                      "--results", step_store(staging, "budget")],
                          steps[0].work_dir, after=steps[0].name))
        return steps
    return plan


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A job of fake steps: each writes one record to its store; `ran` lists the steps run,
    `fail` names steps that fail."""
    import harness.readme_job as readme_job
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "mnist5k.jsonl").write_text(OLD)
    ran, fail = [], set()

    def fake_step(step, threads, stop):
        ran.append(step.name)
        if step.name in fail:
            step.error = "harness: error: failed on purpose"
            return step
        store = step.argv[step.argv.index("--results") + 1]
        model = step.argv[step.argv.index("--models") + 1]
        with open(store, "a") as f:
            f.write(json.dumps(dict(model=model, suite="mnist5k", seed=0, metrics={"top1": 0.5})) + "\n")
        step.seconds = 0.01
        return step
    monkeypatch.setattr(readme_job, "_run_step", fake_step)
    monkeypatch.setattr(readme_job, "_checkpoint", lambda work_dir: "ckpt.pth")
    return readme_job, ran, fail


def _embedded(tmp_path, capsys, *extra):
    return run_cli(["embedded", "--jobs", "1", "--results-dir", str(tmp_path / "results"),
                    "--out", str(tmp_path / "PAGE.md"), *extra], capsys)


def test_a_rerun_keeps_finished_steps_and_a_changed_recipe_or_code_runs_them_again(job, tmp_path, capsys,
                                                                                  monkeypatch):
    readme_job, ran, fail = job
    monkeypatch.setattr(readme_job, "plan", _fake_plan(["a", "b"]))
    fail.add("mnist5k/b/seed0")
    code, out, err = _embedded(tmp_path, capsys)
    assert code == 1 and ran == ["mnist5k/a/seed0", "mnist5k/b/seed0", "mnist5k/a/seed0/budget"]
    assert (tmp_path / "results" / "mnist5k.jsonl").read_text() == OLD
    # off a terminal: one plain line per finished step, with elapsed time and ETA
    assert re.search(r"^\[1/3 0:\d\d elapsed, eta 0:\d\d\] done mnist5k/a/seed0 in 0 s$", err, re.M), err

    fail.clear()
    ran.clear()
    code, out, err = _embedded(tmp_path, capsys)
    assert code == 0, err
    assert ran == ["mnist5k/b/seed0"] and "resuming: 2 of 3 steps finished earlier are kept" in out
    assert sorted(r["model"] for r in read_jsonl(tmp_path / "results" / "mnist5k.jsonl")) == ["a", "a", "b"]

    ran.clear()  # a changed recipe: that step and the budget curve that depends on it run again
    monkeypatch.setattr(readme_job, "plan", _fake_plan(["a", "b"], recipe="3"))
    assert _embedded(tmp_path, capsys)[0] == 0
    assert sorted(ran) == ["mnist5k/a/seed0", "mnist5k/a/seed0/budget", "mnist5k/b/seed0"]

    ran.clear()  # changed code under zoo/ or harness/: everything runs again
    import harness.job_state as job_state
    monkeypatch.setattr(job_state, "code_hash", lambda: "other code")
    assert _embedded(tmp_path, capsys)[0] == 0 and len(ran) == 3
    ran.clear()
    assert _embedded(tmp_path, capsys, "--restart")[0] == 0 and len(ran) == 3
    assert len(read_jsonl(tmp_path / "results" / "mnist5k.jsonl")) == 3   # no record twice


def test_the_code_hash_follows_every_python_file_of_zoo_and_harness(tmp_path):
    from harness.job_state import code_hash
    for package in ("zoo", "harness"):
        (tmp_path / package / "sub").mkdir(parents=True)
        (tmp_path / package / "sub" / "m.py").write_text("x = 1\n")
    before = code_hash(str(tmp_path))
    (tmp_path / "zoo" / "notes.txt").write_text("not code")
    assert code_hash(str(tmp_path)) == before
    (tmp_path / "harness" / "sub" / "m.py").write_text("x = 2\n")
    assert code_hash(str(tmp_path)) != before


def test_a_second_job_is_refused_while_one_runs(job, tmp_path, capsys, monkeypatch):
    readme_job, ran, _ = job
    monkeypatch.setattr(readme_job, "plan", _fake_plan(["a"]))
    lock = tmp_path / "work_dirs" / "embedded" / ".harness-run.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(60)",
                               str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"   # a running job holds it
        code, out, err = _embedded(tmp_path, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert_one_line_error(code, err, "another embedded job is running in work_dirs/embedded", str(lock))
    assert ran == [] and out == "" and not (tmp_path / "work_dirs" / "embedded" / "results.staging").exists()
    assert (tmp_path / "results" / "mnist5k.jsonl").read_text() == OLD and not (tmp_path / "PAGE.md").exists()
    assert _embedded(tmp_path, capsys)[0] == 0 and ran == ["mnist5k/a/seed0", "mnist5k/a/seed0/budget"]


# a child that swaps two staged files in, and is killed (SIGKILL, itself) at os.replace number KILL_AT
SWAP_DRIVER = """
import os, signal, sys
from harness import job_state
real, count = os.replace, [0]
def replace(src, dst):
    count[0] += 1
    if count[0] == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
job_state.swap_in(sys.argv[2:], sys.argv[1])
"""


@pytest.mark.parametrize("kill_at, seen_before_repair", [(1, "old"), (3, "mixed")],
                         ids=["before_the_journal", "between_the_two_renames"])
def test_a_swap_killed_midway_is_all_or_nothing(tmp_path, kill_at, seen_before_repair):
    from harness.job_state import JOURNAL, finish_swap
    results, staged = tmp_path / "results", tmp_path / "staging"
    results.mkdir()
    staged.mkdir()
    for suite in ("mnist5k", "pydocs"):
        (results / f"{suite}.jsonl").write_text(f"old {suite}\n")
        (staged / f"{suite}.jsonl").write_text(f"new {suite}\n")
    child = subprocess.run([sys.executable, "-c", SWAP_DRIVER, str(results), str(staged / "mnist5k.jsonl"),
                            str(staged / "pydocs.jsonl")], cwd=REPO, env=dict(os.environ, KILL_AT=str(kill_at)),
                           timeout=120)
    assert child.returncode == -9

    def state():
        return {p.read_text().split()[0] for p in results.glob("*.jsonl")}
    assert state() == ({"old"} if seen_before_repair == "old" else {"old", "new"})
    assert (results / JOURNAL).exists() == (seen_before_repair == "mixed")
    finish_swap(str(results))   # what the next `embedded` does first
    assert state() == ({"old"} if seen_before_repair == "old" else {"new"})
    assert sorted(p.name for p in results.iterdir()) == ["mnist5k.jsonl", "pydocs.jsonl"]  # no leftovers


def test_the_swap_stages_beside_the_target(tmp_path, monkeypatch):
    """Each file is renamed from the results folder itself (same file system), never moved across."""
    import harness.job_state as job_state
    (tmp_path / "results").mkdir()
    (tmp_path / "staging").mkdir()
    (tmp_path / "staging" / "mnist5k.jsonl").write_text("new\n")
    renames, real = [], os.replace
    monkeypatch.setattr(job_state.os, "replace", lambda a, b: (renames.append((a, b)), real(a, b)))
    job_state.swap_in([str(tmp_path / "staging" / "mnist5k.jsonl")], str(tmp_path / "results"))
    assert renames and all(os.path.dirname(a) == os.path.dirname(b) for a, b in renames)
    assert (tmp_path / "results" / "mnist5k.jsonl").read_text() == "new\n"
    assert (tmp_path / "staging" / "mnist5k.jsonl").exists()   # the staged copy stays for a rerun
