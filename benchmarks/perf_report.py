"""Regenerate every figure of the leaderboard's Performance section, then the leaderboard.

    flock /tmp/cpu-heavy.lock python -m benchmarks.perf_report      # everything, then LEADERBOARD.md
    python -m benchmarks.perf_report --only ops peers --no-leaderboard
    python -m benchmarks.perf_report --threads 1 --max-load 1 --max-wait 10
    python -m benchmarks.perf_report --list

One JSON file per benchmark under leaderboard/perf/, each holding its results, conditions and
the exact command that produced it (the same command run alone writes the same file). All jobs run in
this one process one after the other, never in parallel, so they do not compete for the cores.
About 3.5 minutes on 2 idle cores (3 min 23 s at 766f576).

Trust: every figure is measured at each of --threads (default 1 and 2) and records the spread
of its rounds and the load around it. Before each figure the run waits (at most --max-wait
seconds, default 15; once the jobs so far have waited --wait-budget seconds in all, default 120,
later jobs do not wait; the budget is checked between jobs, so one job may overrun it) until other
processes use at most --max-load cores' worth of CPU (default 0.5); a figure whose run still saw more is timed once more, and if that run saw more too it is
marked unreliable in its JSON and in the table.

What runs (the targets of docs/DESIGN.md, "Performance targets"; each family's models, shapes and
suite are its descriptor's `bench` and `suite`, docs/DESIGN.md, "Families"):
  * efficiency at forced skip 25/50/75 %: dhvn_nano and eshvision_xs at batch 64 on 1x28x28
    digits, exp11_dynamic_tiny at T=1024, B=1 on pydocs text, each against the routed model in
    dense execution and against its static always-full form (`zoo.static_reference`);
  * one larger configuration per family at skip 50 %: dhvn_tiny and eshvision_s at batch 64 on
    32x32 (digits resized; 224x224 does not fit the time), exp11_dynamic at T=1024, B=1;
  * the trained embedded checkpoints (seed 0, work_dirs/embedded/...), routing by their own
    decisions; skipped, and reported as not measured, where the checkpoint is absent;
  * peak memory sparse vs dense (`--memory`) at skip 50 % and on the checkpoints;
  * scan and GDN speedups over their token loops and shares of the matmul roof (`python -m benchmarks.bench_ops`);
  * router overhead (`python -m benchmarks.bench_router_overhead`);
  * whole-model GFLOP/s against timm peers at 8x3x224x224 (`python -m benchmarks.bench_peers`).

Every job times deploy forms (`--reparam`: `zoo.reparameterize_model` folds DHVN's conv-then-BatchNorm
pairs into the convs; the static references get the same, and the timm peers torch.fx's fusion), as a
user serving the models would run them, and as timm's benchmark.py does with --reparam.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERF_DIR = os.path.join("leaderboard", "perf")
# the embedded job's seed-0 work dir; its checkpoint is the one mmengine's last_checkpoint names
WORK_DIR = "work_dirs/embedded/{suite}/{model}/seed0"


def trained_checkpoint(suite: str, model: str) -> str:
    work_dir = WORK_DIR.format(suite=suite, model=model)
    try:
        with open(os.path.join(work_dir, "last_checkpoint")) as f:
            name = os.path.basename(f.read().strip())
    except OSError:
        return os.path.join(work_dir, "last_checkpoint")  # absent: the job reports it as skipped
    return os.path.join(work_dir, name)

TIMING = ["--warmup", "2", "--iters", "9"]
TIMING_LARGE = ["--warmup", "1", "--iters", "3"]
THREADS = (1, 2)
# a busy neighbour can last minutes: each figure waits at most MAX_WAIT, the whole run WAIT_BUDGET
MAX_LOAD, MAX_WAIT, WAIT_BUDGET = 0.5, 15.0, 120.0


def jobs(threads=THREADS, max_load=MAX_LOAD, max_wait=MAX_WAIT):
    """[(name, kind, argv, needs)] in run order; argv excludes the --json-out it gets."""
    t = ["--threads", *map(str, threads)]
    gate = ["--max-load", f"{max_load:g}", "--max-wait", f"{max_wait:g}"]
    out = [("ops", "ops", [*t, "--repeats", "15", "--warmup", "2", *gate], None)]
    # every model in its deploy form (BatchNorm folded into the conv before it), references and peers alike
    out.append(("router_overhead", "overhead", [*t, "--rounds", "11", "--warmup", "1", *gate, "--reparam"], None))
    both = ["--execution", "both", "--static-reference", "--reparam"]
    # each family's configurations and its embedded suite, from its descriptor (docs/DESIGN.md, "Families")
    families = [f for f in map(zoo.get_family, zoo.list_families()) if f.bench]
    for f in families:
        model, shape = f.bench.small
        for skip in (25, 50, 75):
            extra = ["--memory"] if skip == 50 else []
            out.append((f"bench_{model}_skip{skip}", "bench",
                        ["bench", "--models", model, "--suite", f.suite, *shape, *both,
                         "--policy", f"skip={skip / 100:g}", *t, *TIMING, *gate, *extra], None))
        ckpt = trained_checkpoint(f.suite, model)
        out.append((f"bench_{model}_trained", "bench",
                    ["bench", "--models", model, "--suite", f.suite, *shape, *both,
                     "--checkpoint", ckpt, *t, *TIMING, *gate, "--memory"], ckpt))
    for f in families:
        model, shape = f.bench.large
        out.append((f"bench_{model}_skip50", "bench",
                    ["bench", "--models", model, "--suite", f.suite, *shape, *both,
                     "--policy", "skip=0.5", *t, *TIMING_LARGE, *gate, "--memory"], None))
    # after the trained jobs: the peers read their routing shares
    out.append(("peers", "peers", [*t, "--rounds", "4", "--warmup", "1", *gate, "--reparam"], None))
    return out


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the script of each non-bench job kind (bench jobs run `python -m harness bench`)
SCRIPTS = {"ops": "bench_ops", "overhead": "bench_router_overhead", "peers": "bench_peers"}


def _write_skipped(out, kind, args, why) -> None:
    """A figure from an earlier code state must not pass for this run's: the file says why it is absent."""
    import json
    prefix = "python -m harness" if kind == "bench" else f"python -m benchmarks.{SCRIPTS[kind]}"
    doc = dict(benchmark=kind, skipped=why, command=" ".join([prefix, *args, "--json-out", out]), results=[])
    with open(out, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")


def _waited(path) -> float:
    """Seconds the figures in a written file waited for a quiet machine."""
    import json
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return 0.0
    loads = [doc.get("load")] + [r.get("load") for r in doc.get("results") or []]
    # the peers' rows at one thread count share one record: count it once
    unique = {json.dumps(x, sort_keys=True): x for x in loads if x}
    return sum(x.get("waited_s") or 0.0 for x in unique.values())


def _with_max_wait(args, seconds):
    if "--max-wait" not in args:
        return args
    i = args.index("--max-wait") + 1
    return [*args[:i], f"{seconds:g}", *args[i + 1:]]


def _one_job(bar, name, kind, args, needs, harness_main, skipped, failed, out_dir=PERF_DIR) -> None:
    say = bar.console.print
    out = os.path.join(out_dir, f"{name}.json")
    if needs and not os.path.exists(needs):
        say(f"perf_report: skip {name}: {needs} is absent (train it with `python -m harness embedded`)")
        _write_skipped(out, kind, args, f"{needs} is absent")
        skipped.append(name)
        return
    t0 = time.perf_counter()
    try:
        if kind == "bench":
            harness_main([*args, "--json-out", out])
        else:
            script = SCRIPTS[kind]
            _script(script).main([*args, "--json-out", out])
    except SystemExit as e:  # a failed job (e.g. a checkpoint that no longer fits) stops only itself
        if e.code:
            say(f"perf_report: {name} FAILED (exit {e.code}); {out} was not rewritten")
            failed.append(name)
            return
    say(f"perf_report: {name} done in {time.perf_counter() - t0:.0f} s")


def add_run_options(p, what: str = "figure") -> None:
    """The options every job runner here shares: --no-leaderboard, --threads and the load gate."""
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate LEADERBOARD.md")
    p.add_argument("--threads", type=int, nargs="+", default=list(THREADS),
                   help=f"thread counts of every {what} (default {' '.join(map(str, THREADS))})")
    p.add_argument("--max-load", type=float, default=MAX_LOAD,
                   help=f"cores' worth of CPU other processes may use during a {what} (default {MAX_LOAD:g})")
    p.add_argument("--max-wait", type=float, default=MAX_WAIT,
                   help=f"seconds to wait before a {what} for them to drop below it (default {MAX_WAIT:g})")
    p.add_argument("--wait-budget", type=float, default=WAIT_BUDGET,
                   help=f"seconds of waiting after which later jobs do not wait (default {WAIT_BUDGET:g}); "
                        f"checked between jobs, so one job may overrun it")


def run_jobs(todo, a, label: str, out_dir: str = PERF_DIR) -> int:
    """Run `todo` ([(name, kind, argv, needs)]) one after the other in this process, each writing
    <out_dir>/<name>.json, then (unless a.no_leaderboard) regenerate the leaderboard; 1 if any failed."""
    from harness.cli import main as harness_main
    from harness.runtime import tune_allocator_or_exit
    tune_allocator_or_exit(label)  # a bad setting stops the run here, not every job in turn
    from harness.progress import job_progress
    os.makedirs(out_dir, exist_ok=True)
    start, skipped, failed = time.perf_counter(), [], []
    with job_progress() as bar:
        overall = bar.add_task(label, total=len(todo))
        budget = a.wait_budget
        for name, kind, args, needs in todo:
            bar.update(overall, description=f"{label} {name}")
            wait = max(0.0, min(a.max_wait, budget))
            _one_job(bar, name, kind, _with_max_wait(args, wait), needs, harness_main, skipped, failed, out_dir)
            if name not in failed:  # a failed job left the previous run's file
                budget -= _waited(os.path.join(out_dir, f"{name}.json"))
            bar.advance(overall)
    print(f"{label}: {len(todo) - len(skipped) - len(failed)} jobs in {time.perf_counter() - start:.0f} s"
          + (f"; skipped {', '.join(skipped)}" if skipped else "")
          + (f"; FAILED {', '.join(failed)}" if failed else ""))
    if not a.no_leaderboard:
        harness_main(["leaderboard"])
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="JOB", help="run only these jobs (see --list)")
    p.add_argument("--list", action="store_true", help="print the jobs and exit")
    add_run_options(p)
    a = p.parse_args(argv)
    os.chdir(ROOT)
    todo = jobs(a.threads, a.max_load, a.max_wait)
    if a.list:
        for name, kind, args, _ in todo:
            print(f"{name:32s} {kind:9s} {' '.join(args)}")
        return 0
    if a.only:
        unknown = sorted(set(a.only) - {j[0] for j in todo})
        if unknown:
            p.error(f"unknown job(s) {', '.join(unknown)}; see --list")
        todo = [j for j in todo if j[0] in a.only]
    return run_jobs(todo, a, "perf_report")


if __name__ == "__main__":
    sys.exit(main())
