"""`python -m harness bench`: throughput, sparse-vs-dense speedup, FLOPs ratio and efficiency.

In the manner of timm's benchmark.py: per model, `--warmup` untimed steps then `--iters` timed
steps of one batch; step time (median and min) and samples/s (tokens/s for LMs), with the
conditions (device, dtype, threads, batch size, torch version, load average).

`--execution both` runs sparse and dense steps alternately (A B A B ...) and reports the median
of the per-pair speedups t_dense / t_sparse, the FLOPs ratio dense / sparse of one forward
(`zoo.flops.count_flops`, FLOPs = 2 x MACs, same weights, same decisions), and
efficiency = speedup / FLOPs ratio (1.0: the clock saves exactly what the FLOPs save).
`--policy` fixes the routing mix (see `harness.measure.benchkit`); without it the model routes by its
own (argmax) decisions, e.g. on `--checkpoint` weights. `--memory` adds the peak tensor memory
of one eval forward per execution mode. `--train` times forward + backward + an SGD step; the
FLOPs ratio printed beside it is still that of one eval forward.

`--static-reference` adds the model's static always-full form (`harness.measure.static_reference`) to
the alternation and reports speedup, FLOPs ratio and efficiency against it as well: the dense
mode's weighted mix is overhead a static model never pays. `--threads 1 2` times every model at
each thread count (one result per count). Every result carries the spread of its steps (min /
median / max) and the load around its timing (`harness.measure.benchkit.LoadGate`); with `--max-load`
the run waits up to `--max-wait` seconds for other processes to quiet down and marks figures
that still saw more load unreliable.
"""
from __future__ import annotations

import argparse
import json
import shlex

from .. import options
from ..errors import HarnessError
from ..measure.bench_report import format_result, is_bench_csv, write_csv
from ..tasks import TASKS, get_task, size_options

__all__ = ["add_parser", "cmd_bench"]

def add_parser(subparsers) -> str:
    p = subparsers.add_parser(
        "bench", help="time models: samples/s, sparse vs dense speedup, FLOPs ratio, efficiency",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  python -m harness bench --models dhvn_nano --batch-size 64 --execution both --policy skip=0.5\n"
               "  python -m harness bench --models exp11_dynamic_tiny --seq-len 1024 --batch-size 1 "
               "--execution both --memory\n"
               "  python -m harness bench --models eshvision_xs --execution both --checkpoint "
               "work_dirs/embedded/mnist5k/eshvision_xs/seed0/iter_400.pth")
    options.add(p, "models")
    options.add(p, "suite", help="input shapes (and model kwargs) of this suite; default a shipped tag's own, mnist5k for "
                                 "image models, pydocs for LMs. A suite without --data-root feeds its own test items")
    options.add(p, "batch_size", default=64, help="items per step (default 64)")
    p.add_argument("--seq-len", type=int, help="LM tokens per sequence (default: the suite's max_seq_len)")
    p.add_argument("--img-size", type=int, help="image side (default: the suite's)")
    p.add_argument("--execution", choices=["sparse", "dense", "both"],
                   help="routed models: sparse (default), dense, or both alternated")
    p.add_argument("--policy", help="fixed routing mix: skip=P (share P of items take each router's cheap_choice, the rest its full_choice), "
                                    "NAME=SHARE,... over the router's choices, or one choice NAME")
    p.add_argument("--policy-seed", type=int, default=0, help="seed of the --policy draw (default 0)")
    options.add(p, "checkpoint", help="harness checkpoint (.pth) whose weights to time")
    options.add(p, "model_kwargs", help="model constructor overrides, as for `run`, e.g. depths=1,1")
    options.add(p, "device")
    p.add_argument("--reparam", action="store_true",
                   help="time the deploy form, as timm's benchmark.py --reparam: zoo.reparameterize_model (BatchNorm "
                        "folded into the conv before it) for zoo models and their static reference, timm's "
                        "reparameterize_model for timm:NAME")
    options.add(p, "compile", help="time torch.compile(model) (compiled in the warm-up steps, which are not "
                                   "timed; a new routing mix may recompile)")
    p.add_argument("--train", action="store_true", help="time forward + backward + SGD step")
    p.add_argument("--memory", action="store_true", help="also measure peak tensor memory per execution mode")
    p.add_argument("--threads", type=int, nargs="+", help="torch.set_num_threads; several: time each model at "
                                                          "each count, e.g. 1 2 (default: torch's)")
    p.add_argument("--static-reference", action="store_true",
                   help="with --execution both: also time the static always-full form and report against it")
    p.add_argument("--max-load", type=float, help="cores' worth of CPU other processes may use while a figure is "
                                                  "timed; above it the figure is marked unreliable (default: record only)")
    p.add_argument("--max-wait", type=float, default=0.0, help="seconds to wait, before each figure, for other "
                                                               "processes' load to drop below --max-load (default 0)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode (default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed steps per mode (default 10)")
    options.add(p, "json")
    p.add_argument("--json-out", metavar="FILE", help="also write the results, conditions and command to FILE")
    p.add_argument("--results-file", metavar="CSV", help="also write one row per model and execution mode, with "
                   "the columns of timm's benchmark.py (infer_/train_ samples_per_sec, step_time, batch_size, "
                   "img_size, gmacs, param_count) and the zoo's execution, policy and conditions")
    p.set_defaults(func=cmd_bench)
    return "bench"


def _validate(args) -> None:
    options.check_at_least_one(args, "batch_size", "seq_len", "img_size", "iters")
    for t in args.threads or ():
        if t < 1:
            raise HarnessError(f"--threads must be >= 1, got {t}")
    if args.warmup < 0:
        raise HarnessError(f"--warmup must be >= 0, got {args.warmup}")
    if args.static_reference and args.execution != "both":
        raise HarnessError("--static-reference compares against sparse and dense runs: add --execution both")
    if getattr(args, "reparam", False) and args.train:
        raise HarnessError("--reparam folds BatchNorm statistics for inference; it cannot be timed with --train")
    # before any timing: an output that cannot or must not be written loses no measurement
    # and an existing file is replaced only when bench wrote it (leaderboard/atomic.py)
    for path, what, owns, ours in ((args.results_file, "results file", is_bench_csv, "a CSV file written by bench"),
                                   (args.json_out, "JSON output", _is_bench_json, "a JSON file written by bench")):
        if path:
            options.check_writable(path, what, done="nothing was timed", owns=owns, ours=ours)


def _is_bench_json(path: str) -> bool:
    """bench's --json-out (and every benchmark's JSON) opens with its "benchmark" key (sorted keys)."""
    from leaderboard.atomic import file_head
    return file_head(path, 256).lstrip().startswith(b'{\n  "benchmark":')


def cmd_bench(args, argv=()) -> int:
    from ..measure import benchkit
    from ..names import check_tasks, resolve_models
    from ..suites import get_suite

    _validate(args)
    models = resolve_models(args.models)
    if args.checkpoint and len(models) > 1:
        raise HarnessError(f"--checkpoint holds one model's weights; the patterns matched {len(models)} models")
    if args.suite:
        suites = {m: get_suite(args.suite) for m in models}
        check_tasks(models, suites[models[0]])
    else:
        from ..names import model_task, tag_suite
        # a shipped tag is timed on the suite it was trained on, any other model on its task's
        suites = {m: get_suite(tag_suite(m) or get_task(model_task(m)).bench_suite) for m in models}
    shares = benchkit.parse_policy(args.policy) if args.policy else None
    gate = benchkit.LoadGate(args.max_load, args.max_wait)
    model_kwargs = dict(args.model_kwargs)
    command = "python -m harness " + " ".join(shlex.quote(a) for a in argv) if argv else None
    # a static model named outright with --execution/--policy is a mistake; one that a pattern
    # swept in beside routed models is timed once, with a note
    named = set(args.models)
    device = options.resolve_device(args.device)
    from ..progress import job_progress
    results = []
    with job_progress(transient=True) as bar:
        task = bar.add_task("bench", total=len(models))
        for m in models:
            bar.update(task, description=f"bench {m}")
            results += _bench(m, suites[m], args, shares, model_kwargs, strict=m in named, device=device,
                              gate=gate)
            bar.advance(task)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(format_result(r))
    if args.results_file:
        write_csv(results, args.results_file)
        if not args.json:
            print(f"harness: wrote {args.results_file}")
    if args.json_out:
        from leaderboard.atomic import atomic_write
        doc = dict(benchmark="bench", command=command, results=results)
        atomic_write(args.json_out, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        if not args.json:
            print(f"harness: wrote {args.json_out}")
    return 0


def _bench(arch: str, suite, args, shares, model_kwargs: dict, strict: bool, device: str, gate) -> list:
    """`bench_model` on the network `run` would build for `arch` on `suite`, at the sizes asked for."""
    from zoo.routing import routers

    from ..loading import network_from_config, say_if_untrained, suite_config
    from ..measure import benchkit
    from ..measure.bench_model import bench_model
    from ..names import model_task

    t = get_task(suite.task)   # check_tasks held the model to it: the suite's task sizes and feeds it
    for option in size_options():
        if getattr(args, option) and option != t.size_option:
            takers = " and ".join(sorted({o.model_task for o in TASKS.values() if o.size_option == option}))
            raise HarnessError(f"--{option.replace('_', '-')} applies to {takers} models; {arch} is a "
                               f"{model_task(arch)} model (use --{t.size_option.replace('_', '-')})")
    overrides = {}
    base_kwargs = suite_config(arch, suite, device=device)[0].model["arch_kwargs"]
    if t.size_option == "seq_len" and args.seq_len:
        overrides["max_seq_len"] = max(args.seq_len, int(base_kwargs.get("max_seq_len", 0)))
    if t.size_option == "img_size" and args.img_size:
        overrides["img_size"] = args.img_size
    overrides.update(model_kwargs)
    cfg, _ = suite_config(arch, suite, overrides, device=device)
    net = network_from_config(cfg, arch, args.checkpoint, device, say_untrained=False)
    if shares and routers(net):
        benchkit.policy_for(net, shares)  # a --policy the routers cannot take: its one line, and no note before it
    say_if_untrained(net, arch)

    def build(name):  # a static reference, on the same config
        return network_from_config(suite_config(name, suite, overrides, device=device)[0], name, None, device)
    return bench_model(arch, suite, t.name, net, cfg.model["arch_kwargs"], build, args, shares, strict, device, gate)
