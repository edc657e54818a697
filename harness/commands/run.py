"""`python -m harness run`: train, evaluate and record models on a suite. Its flags are the fields
of `harness.run_options.RunOptions`; the planning and the run itself are `harness.run`'s."""
from __future__ import annotations

import argparse
import os

from ..errors import HarnessError
from ..run_options import RunOptions

__all__ = ["add_parser", "cmd_run"]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(
        "run", help="train (unless --eval-only), evaluate and record models on a suite",
        description="For each matched model and seed: train, evaluate, append a record to the results store.",
        epilog="Examples:\n  python -m harness run --models 'dhvn_*' --suite mnist5k --seeds 0 1 2\n"
               "  python -m harness run --models timm:deit_tiny_patch16_224 --suite mnist5k "
               "--model-kwargs patch_size=4\n"
               "  python -m harness run --models dhvn_nano --suite imagenet --data-root /data/imagenet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    RunOptions.add_arguments(p)
    p.set_defaults(func=cmd_run)
    return "run"


def cmd_run(args, argv=()) -> int:
    if args.device == "cpu":
        # before anything initialises CUDA, so mmengine's get_device() sees none
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from mmengine.dist import is_main_process

    from ..run import plan_runs, run_one
    for plan in plan_runs(RunOptions.from_args(args)):
        records = run_one(plan)
        if records is None:
            print(f"harness: {plan.model} seed {plan.seed} stopped after {plan.cfg.stop_after}; continue with "
                  f"--resume (work dir {plan.cfg.work_dir})")
        elif is_main_process():  # rank 0 reports and records; metrics are already gathered across ranks
            for record in records:
                print(summary(record))
                if not plan.opts.no_record:
                    _append(plan, record)
    return 0


def _append(plan, record: dict) -> None:
    from leaderboard.store import append_record
    try:
        append_record(plan.results, record)
    except OSError as e:
        raise HarnessError(f"could not append {plan.model} seed {plan.seed} to {plan.results} "
                           f"({e.strerror or e}); the store is as it was before this record") from None
    print(f"harness: appended {plan.model} seed {plan.seed}{_at_budget(record)} to {plan.results}")


def _at_budget(record: dict) -> str:
    return f" at budget {record['budget']['target']:g}" if "budget" in record else ""


def summary(record: dict) -> str:
    """The one line a finished run prints: its main metric, speed and routing mix."""
    from ..tasks import get_task
    main_metric = get_task(record["task"]).summary(record["metrics"])
    tp = record["throughput"]
    rate = next((f"{v:.1f} {k.replace('_per_s', '')}/s" for k, v in tp.items() if k.endswith("_per_s")), "")
    mix = "; ".join(f"{layer}: " + " ".join(f"{c}={s:.2f}" for c, s in r["share"].items())
                    for layer, r in record["routing"].items())
    return (f"harness: {record['model']} seed {record['seed']} on {record['suite']}{_at_budget(record)}: "
            f"{main_metric}, {rate}" + (f", routing {mix}" if mix else ""))
