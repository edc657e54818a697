"""`python -m harness embedded`: the README job (`harness.readme_job`)."""
from __future__ import annotations

from .. import options

__all__ = ["add_parser", "cmd_embedded"]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(
        "embedded", help="the README job: small variants of every family on the embedded suites",
        description="Train and evaluate the small variants of all three families (dynamic and static) and "
                    "timm peers on mnist5k/pydocs with one budget, then regenerate the leaderboard.")
    options.add(p, "seeds", default=[0, 1, 2], help="seeds of every run (default: 0 1 2)")
    options.add(p, "results_dir")
    options.add(p, "leaderboard_page")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument("--jobs", type=int, help="runs at a time, each at cores/jobs threads (default: one per core)")
    p.add_argument("--restart", action="store_true",
                   help="discard the steps an earlier job finished (by default a rerun keeps and skips those "
                        "whose argv and code are unchanged)")
    p.set_defaults(func=cmd_embedded)
    return "embedded"


def cmd_embedded(args, argv=()) -> int:
    from ..readme_job import run_embedded
    # before the first of ~60 steps: a bad seed failed every step one by one (`--seeds -1`), and
    # the page is written only at the end, an hour in (docs/DESIGN.md, "Bad input")
    options.check_seeds(args.seeds)
    options.check_at_least_one(args, "jobs")
    if not args.dry_run:
        options.check_page(args.out, done="nothing was run")
        options.check_writable(args.results_dir, "results dir", folder_only=True)
    return run_embedded(args)
