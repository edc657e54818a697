"""Runs that survive faults: a kill at any instant, a second run in the same work dir, a store
that cannot be written, a checkpoint that does not fit, a full disk."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from harness_testutils import TINY_DATA, assert_one_line_error, read_jsonl, run_cli, tiny_run_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a child that runs `python -m harness ARGS`, but at save number KILL_AT_SAVE writes part of
# the file, touches MARKER and hangs, so the parent can kill -9 it in the middle of a save
DRIVER = """
import os, sys, time
import mmengine.runner.runner as runner_module
real = runner_module.save_checkpoint
count = [0]
def save(checkpoint, filename, *args, **kwargs):
    count[0] += 1
    if count[0] == int(os.environ["KILL_AT_SAVE"]):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        open(os.environ["MARKER"], "w").close()
        time.sleep(120)
    return real(checkpoint, filename, *args, **kwargs)
runner_module.save_checkpoint = save
from harness.cli import main
main(sys.argv[1:])
"""


def _args(tmp_path, work, *extra):
    return ["run", "--models", "dhvn_nano", "--suite", "mnist5k", "--seeds", "3", "--batch-size", "16",
            "--max-iters", "6", "--work-dir", str(work), "--results", str(tmp_path / "r.jsonl"),
            "--cfg-options", *TINY_DATA, "default_hooks.checkpoint.interval=2", *extra]


def _run(argv, env=None):
    return subprocess.run([sys.executable, "-m", "harness", *argv], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)


def _weights(path):
    from harness.engine.checkpoint import load_checkpoint_file
    return load_checkpoint_file(str(path))["state_dict"]


def test_kill_during_a_checkpoint_save_then_resume_equals_an_uninterrupted_run(tmp_path):
    full = _run(_args(tmp_path, tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-2000:]
    work, marker = tmp_path / "killed", tmp_path / "saving"
    env = dict(os.environ, KILL_AT_SAVE="2", MARKER=str(marker))   # the save at iteration 4
    child = subprocess.Popen([sys.executable, "-c", DRIVER, *_args(tmp_path, work)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), "the child never reached its second save"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # the kill left the previous checkpoint complete, and last_checkpoint naming it
    named = (work / "last_checkpoint").read_text().strip()
    assert os.path.basename(named) == "iter_2.pth" and (work / "iter_2.pth").exists()
    resumed = _run(_args(tmp_path, work, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "full" / "iter_6.pth"), _weights(work / "iter_6.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first, second = read_jsonl(tmp_path / "r.jsonl")
    assert first["metrics"] == second["metrics"] and first["routing"] == second["routing"]
    assert not list(work.glob(".*.tmp"))  # the torn temporary was replaced by the resumed save


# a child that trains, then hangs in its final evaluation (after the last checkpoint), touching MARKER
EVAL_DRIVER = """
import os, sys, time
import harness.run as run_module
def hang(*args, **kwargs):
    open(os.environ["MARKER"], "w").close()
    time.sleep(120)
run_module._evaluate = hang
from harness.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_kill_during_the_final_evaluation_then_resume_writes_the_uninterrupted_record(tmp_path):
    full = _run(_args(tmp_path, tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-2000:]
    work, marker = tmp_path / "killed", tmp_path / "evaluating"
    child = subprocess.Popen([sys.executable, "-c", EVAL_DRIVER, *_args(tmp_path, work)], cwd=REPO,
                             env=dict(os.environ, MARKER=str(marker)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not marker.exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), "the child never reached its final evaluation"
    finally:
        child.kill()
        child.wait()
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 1  # the killed run wrote no record
    resumed = _run(_args(tmp_path, work, "--resume"))   # refused before: "already at or past this run's budget"
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at the end of the budget (iteration 6); evaluating it" in resumed.stdout
    first, second = read_jsonl(tmp_path / "r.jsonl")
    assert first["config"]["sha256"] == second["config"]["sha256"]
    wall = first["train"].pop("wall_s"), second["train"].pop("wall_s")
    assert first["train"] == second["train"] and first["train"]["iters"] == 6 and first["train"]["sessions"] == 1
    assert wall[0] > 0 and wall[1] > 0  # the resumed record's is the killed session's, from its checkpoint
    assert first["metrics"] == second["metrics"] and first["routing"] == second["routing"]


def test_a_second_run_in_a_busy_work_dir_is_refused(tmp_path, capsys):
    from filelock import FileLock
    work = tmp_path / "work"
    work.mkdir()
    with FileLock(str(work / ".harness-run.lock")):   # what a running run holds
        code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "1", work_dir=work), capsys)
    assert_one_line_error(code, err, f"work dir {work} is in use by another run")
    assert not (tmp_path / "results.jsonl").exists()


def test_a_store_that_cannot_be_written_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "1", results=blocker / "r.jsonl"), capsys)
    assert_one_line_error(code, err, "the results store", "cannot be written", "nothing was run")
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").glob("*.pth"))
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "1", work_dir=blocker / "w"), capsys)
    assert_one_line_error(code, err, "the work dir", "cannot be written")


def test_a_full_disk_leaves_no_torn_record(tmp_path, capsys, monkeypatch):
    from leaderboard import store
    path = tmp_path / "results.jsonl"
    store.append_record(path, dict(model="m", suite="s", seed=0, metrics={}))
    before = path.read_bytes()

    def full(f, data):  # the disk fills half-way through the line
        f.write(data[:len(data) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store, "_write", full)
    with pytest.raises(OSError):
        store.append_record(path, dict(model="m", suite="s", seed=1, metrics={}))
    assert path.read_bytes() == before
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "1"), capsys)
    assert_one_line_error(code, err, "could not append dhvn_nano seed 0", "No space left on device",
                          "as it was before")
    assert path.read_bytes() == before


def test_resume_from_a_checkpoint_that_does_not_fit_or_is_done(tmp_path, capsys, trained_checkpoint):
    work, _ = trained_checkpoint
    ckpt = str(sorted(work.glob("*.pth"))[-1])
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", "--resume", ckpt, model="eshvision_xs"),
                           capsys)
    assert_one_line_error(code, err, "does not fit eshvision_xs", "missing keys")
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", "--resume", ckpt), capsys)
    assert_one_line_error(code, err, "is at iteration 8, past this run's budget of 2 iterations")
    assert not (tmp_path / "results.jsonl").exists()


def test_auto_resume_goes_through_the_safe_loader(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "last_checkpoint").write_text(str(work / "iter_9.pth"))
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", "--resume", work_dir=work), capsys)
    assert_one_line_error(code, err, "last_checkpoint names", "iter_9.pth, which does not exist")

    class Shell:
        def __reduce__(self):
            return (os.system, ("true",))
    torch.save({"state_dict": {}, "x": Shell()}, work / "iter_9.pth")
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", "--resume", work_dir=work), capsys)
    assert_one_line_error(code, err, "refused: the checkpoint", "names posix.system, which is not an allowed class")
    assert "weights_only=False" not in err


def test_outputs_that_cannot_be_written_fail_before_drawing(tmp_path, capsys, trained_checkpoint):
    from leaderboard.store import append_record
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    work, rec = trained_checkpoint
    code, _, err = run_cli(["visualize", "--model", "dhvn_nano", "--checkpoint", str(work), "--suite", "mnist5k",
                            "--out", str(blocker / "pics")], capsys)
    assert_one_line_error(code, err, "the output folder", "cannot be written", "nothing was drawn")
    code, _, err = run_cli(["visualize", "--readme", "--work-dirs-root", str(work), "--out", str(blocker / "pics")],
                           capsys)
    assert_one_line_error(code, err, "the output folder", "cannot be written")

    results = tmp_path / "board" / "results"
    append_record(results / "mnist5k.jsonl", rec)
    page = tmp_path / "board" / "PAGE.md"
    code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(blocker / "PAGE.md")], capsys)
    assert_one_line_error(code, err, "the leaderboard page", "cannot be written", "nothing was written")
    # the figures go beside the results dir: when they cannot be written, the page is kept as it was
    committed = "# Leaderboard\n<!-- GENERATED FILE: do not edit by hand. -->\nthe page as committed\n"
    page.write_text(committed)  # a page the leaderboard wrote: the only kind it replaces
    (tmp_path / "board" / "figures").write_text("a file where the figures folder would be")
    code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(page)], capsys)
    assert_one_line_error(code, err, "the figures folder", "cannot be written")
    assert page.read_text() == committed
    (tmp_path / "board" / "figures").unlink()
    code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(page)], capsys)
    assert code == 0, err
    assert "dhvn_nano" in page.read_text() and not list(page.parent.glob(".*.tmp"))
