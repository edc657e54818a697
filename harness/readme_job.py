"""The README job: the small variant of every family, dynamic and static, plus a timm peer, on
the embedded suites, 3 seeds each, then each routed model's compute-budget curve, then the
leaderboard.

Fairness: the training recipe is the suite config's (`harness/configs/<suite>.py`), and this
module passes none of its own, so every model on a suite gets the same budget, learning rate,
schedule and optimiser; dynamic and static forms differ only in routing. Each step is an
ordinary `python -m harness run` command (printed, and recorded per row).

Execution: the runs go to `--jobs` worker processes (default: one per CPU core, each at one
thread, which gets more done on 2 cores than one run at 2 threads), with a progress bar over
the whole job (one plain line per finished step, with elapsed time and ETA, when stderr is not a
terminal). Each step writes its records to a store of its own in a staging folder; they replace
the committed results only when every step has succeeded, all files or none
(`harness.job_state.swap_in`), so an interrupted or failed job leaves leaderboard/results/ as
it was.

Resuming: a rerun keeps the steps that finished and skips them, as long as their key holds
(the step's argv, the step it depends on, and the code of zoo/ and harness/:
`harness.job_state`); a changed recipe or code runs them again. `--restart` discards them.
One job at a time: a second one is refused while the first holds work_dirs/embedded's lock.
Ctrl-C, SIGTERM and SIGHUP stop every run (exit 128 + the signal: 130, 143, 129); a SIGHUP
that nohup ignores stays ignored.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["jobs", "budget_curves", "TIMM_PEERS", "Step", "plan", "run_embedded", "ROOT"]

ROOT = os.path.join("work_dirs", "embedded")

# suite -> the timm peers trained beside the zoo's models there (the zoo's models come from the families)
TIMM_PEERS = {"mnist5k": ("timm:resnet18",)}


def jobs() -> List[Tuple[str, Tuple[str, ...]]]:
    """[(suite, models)]: each family's `embedded` models on its `suite` (docs/DESIGN.md,
    "Families"), in display order, then the suite's timm peers. Every model runs the suite's own
    recipe; each routed model beside its static plans (`zoo.model_info(name)["static_plans"]`),
    so the leaderboard can hold it to the cheapest plan as good as it (docs/DESIGN.md, "Static plans")."""
    import zoo
    out: Dict[str, List[str]] = {}
    for name in zoo.list_families():
        family = zoo.get_family(name)
        if family.embedded:
            out.setdefault(family.suite, []).extend(family.embedded)
    return [(suite, (*models, *TIMM_PEERS.get(suite, ()))) for suite, models in out.items()]


def budget_curves() -> Dict[str, Tuple[float, ...]]:
    """Routed model -> the FLOPs budgets (fractions of its full form's FLOPs) its trained
    checkpoints are evaluated at: every family's `budget_curves`."""
    import zoo
    return {model: tuple(curve) for name in zoo.list_families()
            for model, curve in zoo.get_family(name).budget_curves.items()}


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


def step_store(staging: str, name: str) -> str:
    """The records of one step: <staging>/<step name with / as ->.jsonl."""
    return os.path.join(staging, "steps", name.replace("/", "-").replace(":", "-") + ".jsonl")


def plan(seeds: Sequence[int], staging: str, root: str = ROOT) -> List[Step]:
    """Training steps (longest first, so the pool drains evenly), then budget evaluations."""
    train, budget = [], []
    curves = budget_curves()
    for suite, models in jobs():
        for model in models:
            for seed in seeds:
                wd = _work_dir(root, suite, model, seed)
                name = f"{suite}/{model}/seed{seed}"
                train.append(Step(name, ["run", "--suite", suite, "--models", model, "--seeds", str(seed),
                                         "--work-dir", wd, "--results", step_store(staging, name)], wd))
                if model in curves:
                    budget.append(Step(f"{name}/budget", [
                        "run", "--suite", suite, "--models", model, "--seeds", str(seed), "--eval-only",
                        "--checkpoint", "{checkpoint}", "--flops-budget", *map(str, curves[model]),
                        "--work-dir", os.path.join(wd, "budget"),
                        "--results", step_store(staging, f"{name}/budget")], wd, after=name))
    # the LM runs and the timm peer take longest: start them first
    slow = ("pydocs", "timm:")
    train.sort(key=lambda s: not any(k in s.name for k in slow))
    return train + budget


def _checkpoint(work_dir: str) -> str:
    from .engine.checkpoint import latest_checkpoint
    return latest_checkpoint(work_dir)


class Children:
    """The job's `harness run` processes. Starting one and stopping them all hold one lock, so a
    step a worker thread is launching while the job is being stopped is never started (a signal
    that came between Popen and the registration used to leave that run training, orphaned)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs: List[subprocess.Popen] = []
        self.stopping = False

    def start(self, *args, **kwargs) -> Optional[subprocess.Popen]:
        with self._lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(*args, **kwargs)
            self._procs.append(proc)
            return proc

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for p in self._procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except OSError:
                        pass


def _run_step(step: Step, threads: int, children: Children) -> Step:
    argv = [a.replace("{checkpoint}", _checkpoint(step.work_dir)) if "{checkpoint}" in a else a for a in step.argv]
    step.argv = argv
    os.makedirs(step.work_dir, exist_ok=True)
    step.log = os.path.join(step.work_dir, "budget.log" if step.after else "run.log")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    with open(step.log, "w") as log:
        proc = children.start([sys.executable, "-m", "harness", *argv], stdout=log, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)
        code = proc.wait() if proc is not None else 128 + signal.SIGTERM
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


def _flag(argv: Sequence[str], flag: str) -> str:
    return argv[list(argv).index(flag) + 1]


class _Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, stopping the job as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


def _handle_stop_signals(handler) -> dict:
    """Route SIGTERM and SIGHUP to `handler` (an ignored one, as under nohup, stays ignored);
    returns the previous handlers."""
    previous = {}
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    return previous


def run_embedded(args) -> int:
    from .job_state import hold_lock
    staging = os.path.join(ROOT, "results.staging")
    steps = plan(args.seeds, staging)
    if args.dry_run:
        for s in steps:
            print("python -m harness " + shlex.join(s.argv))
        return 0
    lock = hold_lock(ROOT, f"another embedded job is running in {ROOT}; wait for it to finish")
    previous = _handle_stop_signals(_raise_signalled)
    try:
        for s in steps:
            print("python -m harness " + shlex.join(s.argv))
        return _run_locked(args, steps, staging)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()


def _todo(steps: List[Step], staging: str, restart: bool):
    """(keys of every step, finished-steps record, steps to run); a step to run loses the
    records a killed attempt of it left."""
    from .job_state import Finished, code_hash, step_key
    if restart:
        shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "steps"), exist_ok=True)
    code, keys = code_hash(), {}
    for s in steps:  # a step comes after the one it depends on
        keys[s.name] = step_key(s.argv, code, keys.get(s.after))
    finished = Finished(staging)
    todo = []
    for s in steps:
        store = _flag(s.argv, "--results")
        if (finished.holds(s.name, keys[s.name]) and os.path.exists(store)
                and not any(t.name == s.after for t in todo)):
            continue
        if os.path.exists(store):
            os.unlink(store)
        todo.append(s)
    return keys, finished, todo


def _run_locked(args, steps: List[Step], staging: str) -> int:
    from .job_state import finish_swap
    from .progress import job_progress, report_step

    for path in finish_swap(args.results_dir):
        print(f"harness: finished a swap an earlier job left half-done: {path}")
    keys, finished, todo = _todo(steps, staging, bool(getattr(args, "restart", False)))
    if len(todo) < len(steps):
        print(f"harness: resuming: {len(steps) - len(todo)} of {len(steps)} steps finished earlier are kept "
              f"(same argv and code); running {len(todo)}")
    jobs = max(1, int(args.jobs or os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    by_name = {s.name: s for s in steps}
    pending, failed, children = list(todo), [], Children()
    done = {s.name for s in steps} - {s.name for s in todo}
    t0 = time.perf_counter()

    stop_all = children.stop

    try:
        with job_progress() as bar, ThreadPoolExecutor(jobs) as pool:
            task = bar.add_task(f"embedded job ({jobs} workers x {threads} thread)", total=len(todo))
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
                    running[pool.submit(_run_step, s, threads, children)] = s
                if not running:
                    continue
                try:
                    finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    stop_all()  # before the pool's exit waits on the workers
                    raise
                for fut in finished_now:
                    s = running.pop(fut)
                    fut.result()
                    if s.error:
                        failed.append(s)
                    else:
                        done.add(s.name)
                        finished.add(s.name, keys[s.name], s.seconds)
                    report_step(bar, task, f"{'FAILED' if s.error else 'done'} {s.name} in {s.seconds:.0f} s"
                                + (f": {s.error}" if s.error else ""))
    except KeyboardInterrupt as e:
        stop_all()
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"harness: embedded job interrupted ({signal.Signals(signum).name}); leaderboard/results/ is "
              f"unchanged (finished steps are kept in {staging}: run it again to resume)", file=sys.stderr)
        raise SystemExit(128 + signum)
    wall = time.perf_counter() - t0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"harness: embedded job ran {len(todo)} of {len(steps)} steps in {wall:.0f} s ({jobs} workers; "
          f"load average {load:.2f} at the end)")
    if failed:
        for s in failed:
            print(f"harness: error: {s.name}: {s.error} (log: {s.log or '-'})", file=sys.stderr)
        print(f"harness: {len(failed)} step(s) failed; leaderboard/results/ is unchanged, the finished steps are "
              f"kept in {staging} (run it again to resume)", file=sys.stderr)
        return 1
    return _publish(args, steps, staging)


def _merged(steps: List[Step], staging: str) -> List[str]:
    """<staging>/<suite>.jsonl: the steps' records, suite by suite, in plan order."""
    from leaderboard.atomic import atomic_write
    by_suite: Dict[str, List[str]] = {}
    for s in steps:
        by_suite.setdefault(_flag(s.argv, "--suite"), []).append(_flag(s.argv, "--results"))
    paths = []
    for suite, stores in by_suite.items():
        text = ""
        for store in stores:
            if os.path.exists(store):
                with open(store) as f:
                    text += f.read()
        paths.append(os.path.join(staging, f"{suite}.jsonl"))
        atomic_write(paths[-1], text)
    return paths


def _publish(args, steps: List[Step], staging: str) -> int:
    """Swap the results in and regenerate the page; a stop signal waits until both are done."""
    from leaderboard.render import write_leaderboard
    from leaderboard.sections import extra_sections

    from .job_state import swap_in
    held = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                for sig in (signal.SIGINT, *_STOP_SIGNALS) if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        for path in swap_in(_merged(steps, staging), args.results_dir):
            print(f"harness: replaced {path}")
        write_leaderboard(args.results_dir, args.out, extra_sections(args.results_dir, write=True))
        print(f"harness: wrote {args.out}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        print(f"harness: {signal.Signals(held[0]).name} came while the results were swapped in; "
              f"finished first", file=sys.stderr)
        return 128 + held[0]
    return 0
