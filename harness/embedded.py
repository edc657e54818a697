"""The README job: the small variant of every family, dynamic and static, plus timm peers,
on the embedded suites, 3 seeds each, then the leaderboard. About 15 minutes on 2 CPU cores.

Fairness: every model on a suite gets the same budget (iterations x batch size), the same
learning rate, schedule and optimiser; dynamic and static forms differ only in routing.
Each job is an ordinary `python -m harness run` command (printed, and recorded per row).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import List

__all__ = ["JOBS", "VISION_BUDGET", "LM_BUDGET", "commands", "run_embedded"]

# one budget per suite, shared by every model on it
VISION_BUDGET = ["--max-iters", "150", "--batch-size", "32", "--lr", "2e-3"]
LM_BUDGET = ["--max-iters", "150", "--batch-size", "8", "--lr", "1e-3"]

JOBS = [
    # (suite, models, extra arguments)
    ("mnist5k", ["dhvn_nano", "dhvn_nano_static", "eshvision_xs", "eshvision_xs_soft"], VISION_BUDGET),
    ("mnist5k", ["timm:resnet18"], VISION_BUDGET),
    # a ViT adapted to 28x28 grey digits: 4x4 patches give a 7x7 grid, one input channel
    ("mnist5k", ["timm:deit_tiny_patch16_224"], VISION_BUDGET + ["--model-kwargs", "patch_size=4"]),
    ("pydocs", ["exp11_baseline_tiny", "exp11_dynamic_tiny"], LM_BUDGET),
]


def commands(seeds: List[int], results_dir: str) -> List[List[str]]:
    """One command per model, so a model that fails (e.g. a NaN) does not take the others down."""
    out = []
    for suite, models, extra in JOBS:
        for model in models:
            out.append(["run", "--suite", suite, "--models", model, "--seeds", *map(str, seeds), *extra,
                        "--work-dir", os.path.join("work_dirs", "embedded", suite),
                        "--results", os.path.join(results_dir, f"{suite}.jsonl")])
    return out


def run_embedded(args) -> int:
    from .cli import cmd_leaderboard, main

    cmds = commands(args.seeds, args.results_dir)
    for c in cmds:
        print("python -m harness " + " ".join(c))
    if args.dry_run:
        return 0
    # this job regenerates the embedded suites' results: keep the previous ones as .bak
    for suite in sorted({j[0] for j in JOBS}):
        path = os.path.join(args.results_dir, f"{suite}.jsonl")
        if os.path.exists(path):
            shutil.move(path, path + ".bak")
            print(f"harness: moved the previous {path} to {path}.bak")
    t0 = time.perf_counter()
    failed = []
    for c in cmds:
        try:
            main(c)
        except SystemExit as e:  # main already printed the one-line reason
            if e.code:
                failed.append(c[c.index("--models") + 1])
    print(f"harness: embedded job ran {len(cmds)} commands ({sum(len(j[1]) for j in JOBS) * len(args.seeds)} "
          f"runs) in {time.perf_counter() - t0:.0f} s")
    code = cmd_leaderboard(argparse.Namespace(check=False, results_dir=args.results_dir, out=args.out))
    if failed:
        print(f"harness: embedded job failed for {', '.join(failed)} (see the errors above)", file=sys.stderr)
        return 1
    return code
