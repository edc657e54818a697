"""Regenerate every figure of the leaderboard's Performance section, then the leaderboard.

    python benchmarks/perf_report.py                 # all jobs -> leaderboard/perf/*.json, LEADERBOARD.md
    python benchmarks/perf_report.py --only ops dhvn_nano_skip50 --no-leaderboard
    python benchmarks/perf_report.py --list

One JSON file per benchmark under leaderboard/perf/, each holding its results, conditions and
the exact command that produced it (the same command run alone writes the same file). All jobs
run in this one process (one interpreter start-up) one after the other, never in parallel, so
they do not compete for the cores. About 3 minutes on 2 idle cores; over 20 at a load average of
10 (timings taken then are noise: check the load average recorded in each file).

What runs (issue 4's target configurations):
  * efficiency at forced skip 25/50/75 %: dhvn_nano and eshvision_xs at batch 64 on 1x28x28
    digits, exp11_dynamic_tiny at T=1024, B=1 on pydocs text;
  * one larger configuration per family at skip 50 %: dhvn_tiny and eshvision_s at batch 64 on
    32x32 (digits resized; 224x224 does not fit the time), exp11_dynamic at T=1024, B=1;
  * the trained embedded checkpoints (seed 0, work_dirs/embedded/...), routing by their own
    decisions; skipped, and reported as not measured, where the checkpoint is absent;
  * peak memory sparse vs dense (`--memory`) at skip 50 % and on the checkpoints;
  * scan and GDN speedups over their token loops (benchmarks/bench_ops.py);
  * router overhead (benchmarks/bench_router_overhead.py).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

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

SMALL = {  # family -> (model, bench args)
    "dhvn": ("dhvn_nano", ["--batch-size", "64"]),
    "esh": ("eshvision_xs", ["--batch-size", "64"]),
    "exp11": ("exp11_dynamic_tiny", ["--batch-size", "1", "--seq-len", "1024"]),
}
LARGE = {
    "dhvn": ("dhvn_tiny", ["--batch-size", "64", "--img-size", "32"]),
    "esh": ("eshvision_s", ["--batch-size", "64", "--img-size", "32"]),
    "exp11": ("exp11_dynamic", ["--batch-size", "1", "--seq-len", "1024"]),
}
SUITE = {"dhvn": "mnist5k", "esh": "mnist5k", "exp11": "pydocs"}
TIMING = ["--threads", "2", "--warmup", "2", "--iters", "10"]
TIMING_LARGE = ["--threads", "2", "--warmup", "1", "--iters", "3"]


def jobs():
    """[(name, kind, argv, needs)] in run order; argv excludes the --json-out it gets."""
    out = [("ops", "ops", ["--threads", "2", "--repeats", "15", "--warmup", "2"], None),
           ("router_overhead", "overhead", ["--threads", "2", "--rounds", "15", "--warmup", "2"], None)]
    for fam, (model, shape) in SMALL.items():
        for skip in (25, 50, 75):
            extra = ["--memory"] if skip == 50 else []
            out.append((f"bench_{model}_skip{skip}", "bench",
                        ["bench", "--models", model, "--suite", SUITE[fam], *shape, "--execution", "both",
                         "--policy", f"skip={skip / 100:g}", *TIMING, *extra], None))
        ckpt = trained_checkpoint(SUITE[fam], model)
        out.append((f"bench_{model}_trained", "bench",
                    ["bench", "--models", model, "--suite", SUITE[fam], *shape, "--execution", "both",
                     "--checkpoint", ckpt, *TIMING, "--memory"], ckpt))
    for fam, (model, shape) in LARGE.items():
        out.append((f"bench_{model}_skip50", "bench",
                    ["bench", "--models", model, "--suite", SUITE[fam], *shape, "--execution", "both",
                     "--policy", "skip=0.5", *TIMING_LARGE, "--memory"], None))
    return out


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_job(bar, name, kind, args, needs, harness_main, skipped, failed) -> None:
    say = bar.console.print
    if needs and not os.path.exists(needs):
        say(f"perf_report: skip {name}: {needs} is absent (train it with `python -m harness embedded`)")
        skipped.append(name)
        return
    out = os.path.join(PERF_DIR, f"{name}.json")
    t0 = time.perf_counter()
    try:
        if kind == "bench":
            harness_main([*args, "--json-out", out])
        else:
            _script("bench_ops" if kind == "ops" else "bench_router_overhead").main([*args, "--json-out", out])
    except SystemExit as e:  # a failed job (e.g. a checkpoint that no longer fits) stops only itself
        if e.code:
            say(f"perf_report: {name} FAILED (exit {e.code}); {out} was not rewritten")
            failed.append(name)
            return
    say(f"perf_report: {name} done in {time.perf_counter() - t0:.0f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="JOB", help="run only these jobs (see --list)")
    p.add_argument("--list", action="store_true", help="print the jobs and exit")
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate LEADERBOARD.md")
    a = p.parse_args(argv)
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    todo = jobs()
    if a.list:
        for name, kind, args, _ in todo:
            print(f"{name:32s} {kind:9s} {' '.join(args)}")
        return 0
    if a.only:
        unknown = sorted(set(a.only) - {j[0] for j in todo})
        if unknown:
            p.error(f"unknown job(s) {', '.join(unknown)}; see --list")
        todo = [j for j in todo if j[0] in a.only]
    # the full zoo first: bench_ops.py otherwise installs a bare `zoo` package (ops only) that
    # would hide zoo.create_model from the jobs after it
    import zoo  # noqa: F401
    from harness.cli import main as harness_main
    from harness.progress import job_progress
    start, skipped, failed = time.perf_counter(), [], []
    with job_progress() as bar:
        overall = bar.add_task("perf_report", total=len(todo))
        for name, kind, args, needs in todo:
            bar.update(overall, description=f"perf_report {name}")
            _one_job(bar, name, kind, args, needs, harness_main, skipped, failed)
            bar.advance(overall)
    print(f"perf_report: {len(todo) - len(skipped) - len(failed)} jobs in {time.perf_counter() - start:.0f} s"
          + (f"; skipped {', '.join(skipped)}" if skipped else "")
          + (f"; FAILED {', '.join(failed)}" if failed else ""))
    if not a.no_leaderboard:
        harness_main(["leaderboard"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
