"""`python -m harness {list,run,leaderboard,embedded}`.

Every user mistake ends as one line on stderr, `harness: error: ...`, and exit status 2,
before any work where it can be detected up front, and never with a partial record.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Optional, Sequence

from . import options, runtime
from .errors import HarnessError

__all__ = ["main", "build_parser"]

DEFAULT_RESULTS_DIR = options.OPTIONS["results_dir"][1]["default"]
DEFAULT_LEADERBOARD = os.path.join("leaderboard", "LEADERBOARD.md")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    # the same parser serves `python -m harness` and the `routing-zoo` console script
    prog = "routing-zoo" if os.path.basename(sys.argv[0]) == "routing-zoo" else "python -m harness"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train and evaluate zoo and timm models on benchmark suites with mmengine runners, "
                    "append results, and regenerate the leaderboard.")
    parser.add_argument("--version", action="version", version=f"routing-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list models (with family, task, routing, params) and suites",
                       description="List zoo models matching PATTERNs (fnmatch; default all) and the suites. "
                                   "Any timm model also works as timm:NAME.")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", default=["*"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="train (unless --eval-only), evaluate and record models on a suite",
                       description="For each matched model and seed: train, evaluate, append a record to "
                                   "the results store.",
                       epilog="Examples:\n  python -m harness run --models 'dhvn_*' --suite mnist5k --seeds 0 1 2\n"
                              "  python -m harness run --models timm:deit_tiny_patch16_224 --suite mnist5k "
                              "--model-kwargs patch_size=4\n"
                              "  python -m harness run --models dhvn_nano --suite imagenet --data-root /data/imagenet",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add(p, "models")
    options.add(p, "suite", help="benchmark suite (see `python -m harness list`); with --config, the "
                                 "config's own `suite` unless given")
    p.add_argument("--config", metavar="PY", help="an mmengine config of your own instead of the suite's; "
                   "its _base_ may be a suite config (harness/configs/<suite>.py); --models, --seeds "
                   "and --cfg-options still apply")
    p.add_argument("--epochs", type=int, help="train for this many epochs (epoch-based loop)")
    p.add_argument("--max-iters", type=int, help="train for this many iterations (iteration-based loop)")
    options.add(p, "batch_size", help="training batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    options.add(p, "seeds")
    p.add_argument("--work-dir", help="checkpoints and logs (default: work_dirs/<suite>/<model>/seed<seed>; "
                                      "with several runs, <work-dir>/<model>/seed<seed>)")
    options.add(p, "data_root")
    options.add(p, "cfg_options")
    options.add(p, "model_kwargs")
    p.add_argument("--eval-only", action="store_true", help="skip training; evaluate --checkpoint")
    options.add(p, "checkpoint", help="weights to evaluate (--eval-only) or to start training from")
    p.add_argument("--budget", type=float, nargs="+", metavar="F",
                   help="with --eval-only: evaluate a routed model once per compute budget F in (0, 1], "
                        "a fraction of its full form's FLOPs (zoo.routing.budget, calibrated on the "
                        "training split); one record per budget")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue training from the latest checkpoint in the work dir (or from CKPT)")
    options.add(p, "device")
    p.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper; bf16 on CPU)")
    options.add(p, "compile", help="torch.compile the training step (mmengine's cfg.compile)")
    p.add_argument("--results", help="results store (default: leaderboard/results/<suite>.jsonl)")
    p.add_argument("--no-record", action="store_true", help="do not append to the results store")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                   help="distributed launcher, e.g. under torchrun: --launcher pytorch")
    p.add_argument("--verbose", action="store_true",
                   help="mmengine's full console output (environment, config, hooks, every log key); "
                        "the log file in the work dir has it either way")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("leaderboard", help="regenerate leaderboard/LEADERBOARD.md from the results store",
                       description="Regenerate the markdown leaderboard from <results-dir>/*.jsonl.")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the committed file differs from what would be generated")
    options.add(p, "results_dir")
    p.add_argument("--out", default=DEFAULT_LEADERBOARD)
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("embedded", help="the README job: small variants of every family on the embedded suites",
                       description="Train and evaluate the small variants of all three families (dynamic and "
                                   "static) and timm peers on mnist5k/pydocs with one budget, then regenerate "
                                   "the leaderboard.")
    options.add(p, "seeds", default=[0, 1, 2], help="seeds of every run (default: 0 1 2)")
    options.add(p, "results_dir")
    p.add_argument("--out", default=DEFAULT_LEADERBOARD)
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument("--jobs", type=int, help="runs at a time, each at cores/jobs threads (default: one per core)")
    p.add_argument("--restart", action="store_true",
                   help="discard the steps an earlier job finished (by default a rerun keeps and skips those "
                        "whose argv and code are unchanged)")
    p.set_defaults(func=cmd_embedded)

    # commands in modules of their own; each imports its heavy dependencies only when it runs
    from . import bench, compare, export, flops_cmd, visualize
    for command in (bench, flops_cmd, visualize, compare, export):
        command.add_parser(sub)
    return parser


# ---------------------------------------------------------------- commands


def cmd_list(args) -> int:
    import zoo
    from tabulate import tabulate
    from .suites import SUITES

    names = zoo.list_models(args.patterns)
    if args.patterns and not names:
        from .run import resolve_models
        resolve_models(args.patterns)  # raises the one-line "no model matches ...; closest: ..."
    rows = []
    for n in names:
        info = zoo.model_info(n)
        rows.append([n, info["family"], info["task"], info["routing"], f"{info['params']:,}"])
    if rows:
        print(tabulate(rows, headers=["model", "family", "task", "routing", "params"]))
    else:
        print(f"no zoo model matches {' '.join(args.patterns)}")
    print("\n(any timm model also works as timm:NAME, e.g. timm:resnet18)\n")
    print(tabulate([[s.name, s.task, s.description] for s in SUITES.values()],
                   headers=["suite", "task", "data"]))
    return 0


def _check_buildable(plans, budgeted: bool = False) -> None:
    """Bad --model-kwargs fail here, in one line, before any model trains; so does a --budget
    for a model with no routing decisions to move."""
    from .wrappers import check_buildable
    checked = set()
    for plan in plans:
        model = plan.model
        if model not in checked:
            net = check_buildable(model, plan.cfg.model["arch_kwargs"])
            checked.add(model)
            if budgeted:
                import zoo
                routers = zoo.routing.routers(net)
                if not routers or all(r.spec.mode == "soft" for r in routers):
                    kind = "routes softly (every branch merged)" if routers else "is static"
                    raise HarnessError(f"--budget needs a routed model, and {model} {kind}: "
                                       f"it has no routing decision to move")


def cmd_run(args, argv: Sequence[str] = ()) -> int:
    if args.device == "cpu":
        # before anything initialises CUDA, so mmengine's get_device() sees none
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from .distributed import init_cpu_distributed
    from .run import (RunOptions, RunPlan, build_config, check_tasks, preflight,
                      resolve_models, resolve_resume, run_one)
    from .suites import get_suite, suite_of_config

    if args.config:
        suite = suite_of_config(args.config, args.suite)
    elif args.suite:
        suite = get_suite(args.suite)
    else:
        raise HarnessError("run needs --suite (or --config)")
    models = resolve_models(args.models)
    check_tasks(models, suite)
    if args.eval_only and not args.checkpoint:
        raise HarnessError("--eval-only needs --checkpoint PATH")
    if args.eval_only and len(models) > 1:
        raise HarnessError(f"--eval-only evaluates one checkpoint; the patterns matched {len(models)} models")
    if args.budget is not None:
        if not args.eval_only:
            raise HarnessError("--budget evaluates a trained checkpoint: use it with --eval-only --checkpoint PATH")
        bad = [b for b in args.budget if not (math.isfinite(b) and 0 < b <= 1)]
        if bad:
            raise HarnessError(f"--budget is a fraction of the full form's FLOPs in (0, 1], got {bad[0]:g}")
    options.check_at_least_one(args, "epochs", "max_iters", "batch_size")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise HarnessError(f"--lr must be a finite number > 0, got {args.lr}")
    bad_seeds = [s for s in args.seeds if not 0 <= s < 2**32]
    if bad_seeds:
        raise HarnessError(f"--seeds must lie in [0, 2**32), got {bad_seeds[0]}")
    options.check_data_root(suite, args.data_root, args.cfg_options)
    device = options.resolve_device(args.device)
    init_cpu_distributed(args.launcher, device)
    many = len(models) * len(args.seeds) > 1
    if args.results is not None and not args.results.endswith(".jsonl"):
        # "" would fall back to the committed store; any other name would become a store no
        # leaderboard reads (it reads <results-dir>/*.jsonl)
        raise HarnessError(f"--results is a JSON Lines store and must end in .jsonl, got {args.results!r}")
    results = args.results or os.path.join(DEFAULT_RESULTS_DIR, f"{suite.name}.jsonl")

    def options_for(model: str, seed: int) -> RunOptions:
        work_dir = args.work_dir
        if work_dir and many:
            work_dir = os.path.join(work_dir, options.work_dir_name(model), f"seed{seed}")
        return RunOptions(epochs=args.epochs, max_iters=args.max_iters, batch_size=args.batch_size,
                          lr=args.lr, work_dir=work_dir, data_root=args.data_root,
                          cfg_options=dict(args.cfg_options), model_kwargs=dict(args.model_kwargs),
                          eval_only=args.eval_only, checkpoint=args.checkpoint, resume=args.resume,
                          device=device, amp=args.amp, launcher=args.launcher, results=results,
                          budgets=args.budget, device_flag=args.device, verbose=args.verbose,
                          compile=args.compile)

    # data problems surface before the first model trains; the data may define num_classes
    first = options_for(models[0], args.seeds[0])
    num_classes = preflight(build_config(suite, models[0], args.seeds[0], first, device), suite)
    plans = [RunPlan(suite, model, seed, opts, build_config(suite, model, seed, opts, device, num_classes))
             for model in models for seed in args.seeds for opts in [options_for(model, seed)]]
    _check_buildable(plans, budgeted=args.budget is not None)
    for plan in plans:
        resolve_resume(plan)
    # before any training: a store or work dir that cannot be written fails now, not after it
    if not args.no_record:
        options.check_writable(results, "results store")
    for plan in plans:
        options.check_writable(plan.cfg.work_dir, "work dir", folder_only=True)

    from mmengine.dist import is_main_process
    for plan in plans:
        model, seed, cfg = plan.model, plan.seed, plan.cfg
        records = run_one(plan)
        if records is None:
            print(f"harness: {model} seed {seed} stopped after {cfg.stop_after}; continue with --resume "
                  f"(work dir {cfg.work_dir})")
            continue
        if not is_main_process():
            continue  # rank 0 reports and records; metrics are already gathered across ranks
        for record in records:
            _print_summary(record)
            if not args.no_record:
                from leaderboard.store import append_record
                try:
                    append_record(results, record)
                except OSError as e:
                    raise HarnessError(f"could not append {model} seed {seed} to {results} ({e.strerror or e}); "
                                       f"the store is as it was before this record") from None
                at = f" at budget {record['budget']['target']:g}" if "budget" in record else ""
                print(f"harness: appended {model} seed {seed}{at} to {results}")
    return 0


def _print_summary(record: dict) -> None:
    from .tasks import get_task
    main_metric = get_task(record["task"]).summary(record["metrics"])
    tp = record["throughput"]
    rate = next((f"{v:.1f} {k.replace('_per_s', '')}/s" for k, v in tp.items() if k.endswith("_per_s")), "")
    mix = "; ".join(f"{layer}: " + " ".join(f"{c}={s:.2f}" for c, s in r["share"].items())
                    for layer, r in record["routing"].items())
    at = f" at budget {record['budget']['target']:g}" if "budget" in record else ""
    print(f"harness: {record['model']} seed {record['seed']} on {record['suite']}{at}: {main_metric}, {rate}"
          + (f", routing {mix}" if mix else ""))


def cmd_leaderboard(args, argv=()) -> int:
    from leaderboard.render import check_leaderboard, write_leaderboard
    from leaderboard.sections import extra_sections
    _check_leaderboard_paths(args.results_dir, args.out)
    if args.check:
        from leaderboard.atomic import cut_files
        from leaderboard.figures import FIGURES_DIRNAME
        ok = check_leaderboard(args.results_dir, args.out, extra_sections(args.results_dir, write=False))
        # the page can match while a figure it links was cut short (a killed writer)
        for path in cut_files(os.path.join(os.path.dirname(os.path.abspath(args.results_dir)), FIGURES_DIRNAME)):
            print(f"{path} is cut short or empty", file=sys.stderr)
            ok = False
        if not ok:
            print(f"harness: {args.out} is out of date; run `python -m harness leaderboard`", file=sys.stderr)
            return 1
        print(f"harness: {args.out} is up to date")
        return 0
    from leaderboard.figures import FIGURES_DIRNAME
    # before anything is drawn: a page or figures folder that cannot be written loses nothing
    # a symlinked page is written through: its target is replaced, the link stays
    page = options.check_writable(args.out, "leaderboard page", done="nothing was written")
    figures = os.path.join(os.path.dirname(os.path.abspath(args.results_dir)), FIGURES_DIRNAME)
    options.check_writable(figures, "figures folder", done="nothing was written", folder_only=True)
    write_leaderboard(args.results_dir, page, extra_sections(args.results_dir, write=True))
    print(f"harness: wrote {args.out}")
    return 0


def _check_leaderboard_paths(results_dir: str, out: str) -> None:
    """A results dir that is not one, and a page that would land among the records, are refused:
    either would replace the committed page with a wrong one (or feed the page back in)."""
    if not os.path.isdir(results_dir):
        # a mistyped path must not regenerate (and so empty) the committed page
        raise HarnessError(f"results dir {results_dir} does not exist; nothing was written "
                           f"(the default is {DEFAULT_RESULTS_DIR})")
    if out.endswith(".jsonl"):
        raise HarnessError(f"--out {out} would be read back as results (the store is *.jsonl): the page is "
                           f"markdown; nothing was written")
    page = os.path.realpath(out)
    if os.path.dirname(page) == os.path.realpath(results_dir) \
            or os.path.exists(os.path.join(results_dir, os.path.basename(DEFAULT_LEADERBOARD))):
        raise HarnessError(f"results dir {results_dir} holds the leaderboard page, not results (*.jsonl); "
                           f"nothing was written (the default is {DEFAULT_RESULTS_DIR})")


def cmd_embedded(args, argv=()) -> int:
    from .readme_job import run_embedded
    return run_embedded(args)


def _one_line(e: Exception) -> str:
    """The error's own line. A HarnessError raised in a data-loader worker comes back wrapped in
    the worker's traceback ("Caught HarnessError in DataLoader worker process 0 ..."): its last
    line is the message."""
    text = str(e).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split("HarnessError: ", 1)[-1]
    return text.splitlines()[0] if text else type(e).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        runtime.tune_allocator()
        code = args.func(args, argv) if args.func is not cmd_list else args.func(args)
    except HarnessError as e:
        print(f"harness: error: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:
        print("harness: interrupted; no record written for the unfinished run", file=sys.stderr)
        raise SystemExit(130)
    except BrokenPipeError:
        # the reader went away (`routing-zoo list | head`): stop quietly, as a shell tool does; the
        # rest of the output goes nowhere instead of raising again at interpreter exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141)
    if code:
        raise SystemExit(code)
    return 0
