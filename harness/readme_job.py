"""The README job: the small variant of every family, dynamic and static, plus a timm peer, on
the embedded suites, 3 seeds each, then each routed model's compute-budget curve, then the
leaderboard.

Fairness: the training recipe is the suite config's (`harness/configs/<suite>.py`), and this
module passes none of its own, so every model on a suite gets the same budget, learning rate,
schedule and optimiser; dynamic and static forms differ only in routing. Each step is an
ordinary `python -m harness run` command (printed, and recorded per row).

Execution: the runs go to `--jobs` worker processes (default: one per CPU core, each at one
thread, which gets more done on 2 cores than one run at 2 threads), with a progress bar over
the whole job. New records are written to a staging folder and replace the committed results
only when every run has succeeded, so an interrupted or failed job leaves leaderboard/results/
as it was. Ctrl-C stops every run and exits with status 130.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

__all__ = ["JOBS", "BUDGET_CURVES", "Step", "plan", "run_embedded"]

# (suite, models): every model runs the suite's own recipe
# each routed model beside its static plans (`zoo.model_info(name)["static_plans"]`), so the
# leaderboard can hold it to the cheapest plan as good as it (docs/DESIGN.md, "Static plans")
JOBS = (
    ("mnist5k", ("dhvn_nano", "dhvn_nano_static", "dhvn_nano_ccc", "dhvn_nano_cbc",
                 "eshvision_xs", "eshvision_xs_soft", "eshvision_xs_ssm", "eshvision_xs_attn", "timm:resnet18")),
    ("pydocs", ("exp11_dynamic_tiny", "exp11_baseline_tiny", "exp11_ggbs_tiny", "exp11_gbbs_tiny",
                "exp11_gggg_tiny", "exp11_ggss_tiny", "exp11_ssss_tiny")),
)
# routed model -> the budgets (fractions of its full form's FLOPs) its trained checkpoints are
# evaluated at; each family's points lie inside what its routing can reach
BUDGET_CURVES = {
    "dhvn_nano": (0.3, 0.45, 0.6, 0.8, 1.0),
    "eshvision_xs": (0.8, 0.85, 0.9, 0.95, 1.0),
    "exp11_dynamic_tiny": (0.85, 0.9, 0.95, 1.0),
}


@dataclass
class Step:
    """One `python -m harness run` process."""
    name: str
    argv: List[str]
    work_dir: str
    after: Optional[str] = None          # the training step whose checkpoint this one evaluates
    log: str = ""
    seconds: float = 0.0
    error: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)


def _work_dir(root: str, suite: str, model: str, seed: int) -> str:
    from .options import work_dir_name
    return os.path.join(root, suite, work_dir_name(model), f"seed{seed}")


def plan(seeds: Sequence[int], staging: str, root: str = os.path.join("work_dirs", "embedded")) -> List[Step]:
    """Training steps (longest first, so the pool drains evenly), then budget evaluations."""
    train, budget = [], []
    for suite, models in JOBS:
        results = os.path.join(staging, f"{suite}.jsonl")
        for model in models:
            for seed in seeds:
                wd = _work_dir(root, suite, model, seed)
                name = f"{suite}/{model}/seed{seed}"
                train.append(Step(name, ["run", "--suite", suite, "--models", model, "--seeds", str(seed),
                                         "--work-dir", wd, "--results", results], wd))
                if model in BUDGET_CURVES:
                    budget.append(Step(f"{name}/budget", [
                        "run", "--suite", suite, "--models", model, "--seeds", str(seed), "--eval-only",
                        "--checkpoint", "{checkpoint}", "--budget", *map(str, BUDGET_CURVES[model]),
                        "--work-dir", os.path.join(wd, "budget"), "--results", results], wd, after=name))
    # the LM runs and the timm peer take longest: start them first
    slow = ("pydocs", "timm:")
    train.sort(key=lambda s: not any(k in s.name for k in slow))
    return train + budget


def _checkpoint(work_dir: str) -> str:
    from .checkpoint import latest_checkpoint
    return latest_checkpoint(work_dir)


def _run_step(step: Step, threads: int, stop) -> Step:
    argv = [a.replace("{checkpoint}", _checkpoint(step.work_dir)) if "{checkpoint}" in a else a for a in step.argv]
    step.argv = argv
    os.makedirs(step.work_dir, exist_ok=True)
    step.log = os.path.join(step.work_dir, "budget.log" if step.after else "run.log")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    with open(step.log, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "harness", *argv], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        stop.append(proc)
        code = proc.wait()
    step.seconds = time.perf_counter() - t0
    if code:
        step.error = _last_error(step.log) or f"exit status {code}"
    return step


def _last_error(log: str) -> Optional[str]:
    try:
        with open(log) as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return None
    errors = [l for l in lines if l.startswith("harness: error:")]
    return errors[-1] if errors else (lines[-1] if lines else None)


def _swap_in(staging: str, results_dir: str) -> List[str]:
    """Replace the committed results of the embedded suites with the staged ones."""
    os.makedirs(results_dir, exist_ok=True)
    moved = []
    for suite, _ in JOBS:
        src = os.path.join(staging, f"{suite}.jsonl")
        if os.path.exists(src):
            dst = os.path.join(results_dir, f"{suite}.jsonl")
            shutil.move(src, dst)
            moved.append(dst)
    return moved


def run_embedded(args) -> int:
    from .progress import job_progress

    staging = os.path.join("work_dirs", "embedded", "results.staging")
    steps = plan(args.seeds, staging)
    for s in steps:
        print("python -m harness " + shlex.join(s.argv))
    if args.dry_run:
        return 0
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    jobs = max(1, int(args.jobs or os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    by_name = {s.name: s for s in steps}
    pending, done, failed, procs = list(steps), set(), [], []
    t0 = time.perf_counter()
    def stop_all() -> None:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 9)
                except OSError:
                    pass

    try:
        with job_progress() as bar, ThreadPoolExecutor(jobs) as pool:
            task = bar.add_task(f"embedded job ({jobs} workers x {threads} thread)", total=len(steps))
            running: Dict[Future, Step] = {}
            while pending or running:
                ready = [s for s in pending if s.after is None or s.after in done]
                blocked = [s for s in pending if s.after is not None and by_name[s.after] in failed]
                for s in blocked:  # its checkpoint never came
                    pending.remove(s)
                    s.error = f"not run: {s.after} failed"
                    failed.append(s)
                    bar.advance(task)
                while ready and len(running) < jobs:
                    s = ready.pop(0)
                    pending.remove(s)
                    running[pool.submit(_run_step, s, threads, procs)] = s
                if not running:
                    continue
                try:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    stop_all()  # before the pool's exit waits on the workers
                    raise
                for fut in finished:
                    s = running.pop(fut)
                    fut.result()
                    (failed.append(s) if s.error else done.add(s.name))
                    bar.console.print(f"{'FAILED' if s.error else 'done'} {s.name} in {s.seconds:.0f} s"
                                      + (f": {s.error}" if s.error else ""))
                    bar.advance(task)
    except KeyboardInterrupt:
        stop_all()
        print("harness: embedded job interrupted; leaderboard/results/ is unchanged "
              f"(partial records are in {staging})", file=sys.stderr)
        raise SystemExit(130)
    wall = time.perf_counter() - t0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"harness: embedded job ran {len(steps)} steps in {wall:.0f} s ({jobs} workers; load average "
          f"{load:.2f} at the end)")
    if failed:
        for s in failed:
            print(f"harness: error: {s.name}: {s.error} (log: {s.log or '-'})", file=sys.stderr)
        print(f"harness: {len(failed)} step(s) failed; leaderboard/results/ is unchanged, the new records "
              f"are in {staging}", file=sys.stderr)
        return 1
    for path in _swap_in(staging, args.results_dir):
        print(f"harness: replaced {path}")
    from leaderboard.render import write_leaderboard
    from leaderboard.sections import extra_sections
    write_leaderboard(args.results_dir, args.out, extra_sections(args.results_dir, write=True))
    print(f"harness: wrote {args.out}")
    return 0
