"""The embedded job as a person runs it: Ctrl-C stops all of it (exit 130, no runs left behind),
and the committed results change only when every step has finished."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness_testutils import TINY_DATA, read_jsonl, run_cli

OLD = '{"model": "kept", "suite": "mnist5k", "seed": 0, "metrics": {"top1": 1.0}}\n'


def _processes_mentioning(text: str) -> list:
    """Processes whose command line names `text`, or that run inside it (the job's `harness run`
    children name their work dirs relative to the job's folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                named = text.encode() in f.read()
            inside = os.readlink(f"/proc/{pid}/cwd").startswith(os.path.dirname(text))
            if named or inside:
                found.append(int(pid))
        except OSError:
            pass
    return found


def _restore_sigint():
    """A job started with `&` from a script inherits SIGINT ignored; Ctrl-C must reach this one."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # as `cmd &` in a script leaves it
    # a terminal's job gets SIGHUP at its default; the test runner itself may run under nohup (as
    # CI does), whose ignored SIGHUP the job rightly keeps ignoring
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds leftover runs through /proc")
@pytest.mark.parametrize("sig, code, preexec", [(signal.SIGINT, 130, _restore_sigint),
                                                (signal.SIGTERM, 143, _ignore_sigint),
                                                (signal.SIGHUP, 129, _ignore_sigint)],
                         ids=["ctrl_c", "sigterm_in_background", "sighup_in_background"])
def test_ctrl_c_stops_the_whole_job_with_130(tmp_path, sig, code, preexec):
    """Ctrl-C (130), and SIGTERM (143) or SIGHUP (129) to a job that ignores SIGINT (started
    with `&`), stop every run it started; the test kills whatever is left in any case."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "mnist5k.jsonl").write_text(OLD)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "embedded", "--seeds", "0", "--jobs", "1",
                             "--results-dir", str(results), "--out", str(tmp_path / "PAGE.md")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)
    try:
        deadline = time.time() + 120
        while (not list((tmp_path / "work_dirs" / "embedded").rglob("run.log")) and time.time() < deadline
               and proc.poll() is None):
            time.sleep(0.5)
        time.sleep(2)  # the first run is training now
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err[-2000:]
        assert f"embedded job interrupted ({sig.name})" in err and "leaderboard/results/ is unchanged" in err
        assert "done " not in out + err  # no later step was started after the interrupt
        assert (results / "mnist5k.jsonl").read_text() == OLD and not (tmp_path / "PAGE.md").exists()
        time.sleep(1)
        assert _processes_mentioning(str(tmp_path / "work_dirs")) == []  # the runs it started are gone
    finally:
        for pid in [proc.pid] + _processes_mentioning(str(tmp_path / "work_dirs")):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.communicate()


def _tiny_plan(fail: bool):
    def plan(seeds, staging, root=os.path.join("work_dirs", "embedded")):
        from harness.readme_job import Step, step_store
        steps = []
        for model in ("dhvn_nano", "no_such_model" if fail else "dhvn_nano_static"):
            wd = os.path.join(root, "mnist5k", model, "seed0")
            steps.append(Step(f"mnist5k/{model}/seed0", [
                "run", "--suite", "mnist5k", "--models", model, "--seeds", "0", "--max-iters", "2",
                "--batch-size", "8", "--work-dir", wd, "--results", step_store(staging, f"mnist5k/{model}/seed0"),
                "--cfg-options", *TINY_DATA], wd))
        return steps
    return plan


@pytest.mark.slow
def test_results_are_swapped_in_only_when_every_step_finished(tmp_path, capsys, monkeypatch):
    import harness.readme_job as job
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    (results / "mnist5k.jsonl").write_text(OLD)
    argv = ["embedded", "--jobs", "2", "--results-dir", str(results), "--out", str(tmp_path / "PAGE.md")]

    monkeypatch.setattr(job, "plan", _tiny_plan(fail=True))
    code, out, err = run_cli(argv, capsys)
    assert code == 1 and "1 step(s) failed" in err and "no model matches 'no_such_model'" in err
    assert (results / "mnist5k.jsonl").read_text() == OLD   # the committed results are as they were
    staged = read_jsonl(tmp_path / "work_dirs" / "embedded" / "results.staging" / "steps" / "mnist5k-dhvn_nano-seed0.jsonl")
    assert [r["model"] for r in staged] == ["dhvn_nano"]    # the finished run's record is kept aside

    monkeypatch.setattr(job, "plan", _tiny_plan(fail=False))
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "resuming: 1 of 2 steps finished earlier are kept" in out  # dhvn_nano did not train again
    assert sorted(r["model"] for r in read_jsonl(results / "mnist5k.jsonl")) == ["dhvn_nano", "dhvn_nano_static"]
    assert "kept" not in (results / "mnist5k.jsonl").read_text()  # replaced, not appended to
    assert "dhvn_nano_static" in (tmp_path / "PAGE.md").read_text()
    assert "[1/1 " in err  # the job's progress (plain lines off a terminal): steps done of all


def test_every_routed_model_of_the_job_trains_beside_its_static_plans():
    """The leaderboard holds a routed model to the cheapest of its trained static plans as good as
    it; a plan missing from the job would leave that comparison out silently."""
    import zoo
    from harness.readme_job import jobs
    routed = []
    for suite, models in jobs():
        for model in models:
            plans = [] if model.startswith("timm:") else zoo.model_info(model)["static_plans"]
            assert set(plans) <= set(models), f"{suite}: {model}'s plans {sorted(set(plans) - set(models))} not trained"
            assert all(zoo.model_info(p)["routing"] == "static" for p in plans)
            routed += [model] if plans else []
    assert routed == ["dhvn_nano", "eshvision_xs", "exp11_dynamic_tiny"]


def test_a_run_launched_while_the_job_stops_is_never_started():
    """Stopping and starting hold one lock: a step a worker launches after the stop began gets
    no process (the race that left a SIGHUP-stopped job's run training, orphaned)."""
    from harness.readme_job import Children
    children = Children()
    sleeper = children.start([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    children.stop()
    assert sleeper.wait(timeout=10) != 0   # killed
    assert children.start([sys.executable, "-c", "pass"]) is None
