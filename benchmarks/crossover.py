"""Where sparse execution starts to pay: each family's routed model against its static
always-full form across input sizes (docs/DESIGN.md, "Performance targets").

    flock /tmp/cpu-heavy.lock python -m benchmarks.crossover           # every row, then LEADERBOARD.md
    python -m benchmarks.crossover --only dhvn --no-leaderboard
    python -m benchmarks.crossover --list

Each row is one `python -m harness bench --execution both --static-reference --reparam` run,
which alternates sparse, dense and static steps (A B C A B C ...) so the three see the same
machine, at 1 and 2 threads, with the spread of its steps and the load around it. Its JSON goes
to leaderboard/perf/crossover/<row>.json with the exact command; the Performance section reads
them all and names, per family, routing mix and thread count, the smallest size at which sparse
execution beats the static form in wall-clock with efficiency (speedup / FLOPs ratio) >= 0.9.

Sizes: vision 28, 60, 112 and 224 px (the embedded digits resized, or the cluttered canvases at
their own size), LM 256, 1,024 and 4,096 tokens. Mixes: forced skips of 25, 50 and 75 % (a share
of the items takes each router's cheap choice, the rest its full choice), and the trained mix
wherever the embedded job left a seed-0 checkpoint trained at that size.
"""
from __future__ import annotations

import argparse
import os
import sys

from .perf_report import MAX_LOAD, MAX_WAIT, ROOT, THREADS, add_run_options, run_jobs, trained_checkpoint

OUT_DIR = os.path.join("leaderboard", "perf", "crossover")
SKIPS = (0.25, 0.5, 0.75)
# each family's sweep (`bench.sweep` of its descriptor, docs/DESIGN.md, "Families"): its routed
# model, default suite, size flag, {size: batch} (the batch shrinks with the input so a row takes
# seconds, not minutes, at 1 thread; batch 1 for the LM) and the suites whose inputs are native at
# a size (their trained checkpoints route by their own decisions there); rows are named by family


def sweeps() -> dict:
    """Family name -> its `Sweep`, in display order."""
    import zoo
    families = map(zoo.get_family, zoo.list_families())
    return {f.name: f.bench.sweep for f in families if f.bench and f.bench.sweep}


TIMING = {"small": ["--warmup", "1", "--iters", "7"], "large": ["--warmup", "1", "--iters", "4"]}


def _suite_exists(name: str) -> bool:
    try:
        from harness.suites import SUITES
    except Exception:
        return False
    return name in SUITES


def jobs(threads=THREADS, max_load=MAX_LOAD, max_wait=MAX_WAIT, families=None):
    """[(name, kind, argv, needs)] in run order, as benchmarks.perf_report.jobs."""
    t = ["--threads", *map(str, threads)]
    gate = ["--max-load", f"{max_load:g}", "--max-wait", f"{max_wait:g}"]
    both = ["--execution", "both", "--static-reference", "--reparam"]
    out = []
    for fam, sweep in sweeps().items():
        if families and fam not in families:
            continue
        model, suite, flag = sweep.model, sweep.suite, sweep.size_flag
        for size, batch in sweep.batches.items():
            native = sweep.native.get(size)
            on = native if native and _suite_exists(native) else suite
            timing = TIMING["large" if size >= 112 and flag == "--img-size" or size >= 4096 else "small"]
            base = ["bench", "--models", model, "--suite", on, flag, str(size), "--batch-size", str(batch),
                    *both, *t, *timing, *gate]
            for skip in SKIPS:
                out.append((f"{fam}_{size}_skip{round(skip * 100)}", "bench", [*base, "--policy", f"skip={skip:g}"],
                            None))
            if native and _suite_exists(native):
                ckpt = trained_checkpoint(native, model)
                out.append((f"{fam}_{size}_trained", "bench", [*base, "--checkpoint", ckpt], ckpt))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="FAMILY", choices=sorted(sweeps()), help="run only these families")
    p.add_argument("--list", action="store_true", help="print the rows and exit")
    add_run_options(p, "row")
    a = p.parse_args(argv)
    os.chdir(ROOT)
    todo = jobs(a.threads, a.max_load, a.max_wait, a.only)
    if a.list:
        for name, _, args, _ in todo:
            print(f"{name:24s} {' '.join(args)}")
        return 0
    return run_jobs(todo, a, "crossover", OUT_DIR)


if __name__ == "__main__":
    sys.exit(main())
