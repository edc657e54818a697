"""`python -m harness bench`: throughput, sparse-vs-dense speedup, FLOPs ratio and efficiency.

In the manner of timm's benchmark.py: per model, `--warmup` untimed steps then `--iters` timed
steps of one batch; step time (median and min) and samples/s (tokens/s for LMs), with the
conditions (device, dtype, threads, batch size, torch version, load average).

`--execution both` runs sparse and dense steps alternately (A B A B ...) and reports the median
of the per-pair speedups t_dense / t_sparse, the FLOPs ratio dense / sparse of one forward
(`zoo.flops.count_flops`, FLOPs = 2 x MACs, same weights, same decisions), and
efficiency = speedup / FLOPs ratio (1.0: the clock saves exactly what the FLOPs save).
`--policy` fixes the routing mix (see `harness.benchkit`); without it the model routes by its
own (argmax) decisions, e.g. on `--checkpoint` weights. `--memory` adds the peak tensor memory
of one eval forward per execution mode. `--train` times forward + backward + an SGD step; the
FLOPs ratio printed beside it is still that of one eval forward.

`--static-reference` adds the model's static always-full form (`harness.static_reference`) to
the alternation and reports speedup, FLOPs ratio and efficiency against it as well: the dense
mode's weighted mix is overhead a static model never pays. `--threads 1 2` times every model at
each thread count (one result per count). Every result carries the spread of its steps (min /
median / max) and the load around its timing (`harness.benchkit.LoadGate`); with `--max-load`
the run waits up to `--max-wait` seconds for other processes to quiet down and marks figures
that still saw more load unreliable.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
from typing import Optional

from . import options
from .bench_report import format_result, write_csv
from .errors import HarnessError
from .tasks import TASKS, get_task, size_options

__all__ = ["add_parser", "cmd_bench", "bench_model"]

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
    options.add(p, "suite", help="input shapes (and model kwargs) of this suite; default mnist5k for "
                                 "image models, pydocs for LMs. Embedded suites feed their real test data")
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
    for path, what in ((args.results_file, "results file"), (args.json_out, "JSON output")):
        if path:
            options.check_writable(path, what, done="nothing was timed")


def cmd_bench(args, argv=()) -> int:
    from .run import check_tasks, resolve_models
    from .suites import get_suite
    from . import benchkit

    _validate(args)
    models = resolve_models(args.models)
    if args.checkpoint and len(models) > 1:
        raise HarnessError(f"--checkpoint holds one model's weights; the patterns matched {len(models)} models")
    if args.suite:
        suites = {m: get_suite(args.suite) for m in models}
        check_tasks(models, suites[models[0]])
    else:
        from .run import model_task
        suites = {m: get_suite(get_task(model_task(m)).bench_suite) for m in models}
    shares = benchkit.parse_policy(args.policy) if args.policy else None
    gate = benchkit.LoadGate(args.max_load, args.max_wait)
    model_kwargs = dict(args.model_kwargs)
    command = "python -m harness " + " ".join(shlex.quote(a) for a in argv) if argv else None
    # a static model named outright with --execution/--policy is a mistake; one that a pattern
    # swept in beside routed models is timed once, with a note
    named = set(args.models)
    device = options.resolve_device(args.device)
    from .progress import job_progress
    results = []
    with job_progress(transient=True) as bar:
        task = bar.add_task("bench", total=len(models))
        for m in models:
            bar.update(task, description=f"bench {m}")
            results += bench_model(m, suites[m], args, shares, model_kwargs, strict=m in named, device=device,
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


def build_inputs(suite, task: str, batch: int, seq_len: Optional[int], img_size: Optional[int],
                 arch_kwargs: dict):
    """(inputs, targets, description): the task's inputs (`harness.tasks`) at the size asked for."""
    t = get_task(task)
    return t.inputs(suite, batch, seq_len if t.size_option == "seq_len" else img_size, arch_kwargs)


def bench_model(arch: str, suite, args, shares, model_kwargs: dict, strict: bool = True,
                device: str = "cpu", gate=None) -> list:
    """One result per thread count of `args.threads` (the current count when none is given)."""
    import torch
    import zoo
    from . import benchkit
    from .run import model_task

    task = model_task(arch)
    t = get_task(task)
    for option in size_options():
        if getattr(args, option) and option != t.size_option:
            takers = " and ".join(n for n, other in TASKS.items() if other.size_option == option)
            raise HarnessError(f"--{option.replace('_', '-')} applies to {takers} models; {arch} is a {task} "
                               f"model (use --{t.size_option.replace('_', '-')})")
    from .loading import network_from_config, suite_config
    overrides = {}
    base_kwargs = suite_config(arch, suite, device=device)[0].model["arch_kwargs"]
    if t.size_option == "seq_len" and args.seq_len:
        overrides["max_seq_len"] = max(args.seq_len, int(base_kwargs.get("max_seq_len", 0)))
    if t.size_option == "img_size" and args.img_size:
        overrides["img_size"] = args.img_size
    overrides.update(model_kwargs)
    cfg, _ = suite_config(arch, suite, overrides, device=device)
    arch_kwargs = cfg.model["arch_kwargs"]
    net = network_from_config(cfg, arch, args.checkpoint, device)
    routed = bool(zoo.routing.routers(net))
    note = None
    execution = args.execution
    if not routed and (execution or shares):
        flags = " and ".join(f for f, given in (("--execution", execution), ("--policy", shares)) if given)
        if strict:
            raise HarnessError(f"{arch} has no routers; {flags} applies to routed models only")
        note = f"static model (no routers): timed once; {flags} not applied"
        execution, shares = None, None
    modes = {"both": ["sparse", "dense"], None: ["sparse"] if routed else [None]}.get(execution, [execution])
    policy_desc = None
    policy = None
    if shares:
        per_router = benchkit.policy_for(net, shares)
        policy = benchkit.FrozenPolicy(per_router, seed=args.policy_seed)
        policy_desc = per_router
    x, y, input_desc = build_inputs(suite, task, args.batch_size, args.seq_len, args.img_size, arch_kwargs)
    x, y = x.to(device), y.to(device)
    reference = None
    if execution == "both" and getattr(args, "static_reference", False):
        from .static_reference import static_reference

        def build(name):
            return network_from_config(suite_config(name, suite, overrides, device=device)[0], name, None, device)
        reference = static_reference(arch, net, build)
    reparam = bool(getattr(args, "reparam", False))
    if reparam:  # after the reference took the routed model's weights, which it folds alike
        net = deploy_form(arch, net)
        if reference:
            reference = (reference[0], zoo.reparameterize_model(reference[1], inplace=True))
    base = dict(model=arch, suite=suite.name, task=task, train=bool(args.train), batch_size=args.batch_size,
                param_count=sum(p.numel() for p in net.parameters()),
                input_shape=list(x.shape), inputs=input_desc, checkpoint=args.checkpoint,
                policy=args.policy if shares else None, policy_shares=policy_desc, warmup=args.warmup,
                iters=args.iters, compile=bool(getattr(args, "compile", False)), reparam=reparam)
    if note:
        base["note"] = note
    if routed:
        with benchkit.routing_context(net, "sparse", policy), torch.no_grad():
            net(x)
        base["routing_mix"] = {layer: r["share"] for layer, r in zoo.routing.summarize(net).items()}
    if execution == "both":
        base["flops"] = _flops(net, x, policy, reference[1] if reference else None)
    if args.memory:
        base["memory"] = dict(method="torch.profiler memory timeline: peak tensor bytes on CPU, one eval forward",
                              **{f"{m or 'static'}_peak_bytes": benchkit.peak_memory_bytes(net, x, m, policy)
                                 for m in modes})
    gate = gate or benchkit.LoadGate()
    # compiled once: every thread count then times the same compiled model
    compiled = (torch.compile(net), torch.compile(reference[1]) if reference else None) \
        if getattr(args, "compile", False) else (None, None)
    out = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        out.append(_timed_result(base, net, x, y, modes, policy, reference, args, task, device, gate, compiled))
    return out


def deploy_form(arch: str, net):
    """`net` re-parameterised in place for inference: the zoo's walk for zoo models, timm's own
    `reparameterize_model` for timm:NAME (which calls its blocks' fuse / reparameterize)."""
    import zoo
    net.eval()
    if arch.startswith("timm:"):
        from timm.utils.model import reparameterize_model
        return reparameterize_model(net, inplace=True)
    return zoo.reparameterize_model(net, inplace=True)


def _timed_result(base, net, x, y, modes, policy, reference, args, task, device, gate,
                  compiled=(None, None)) -> dict:
    """`base` plus the timings, at the current thread count, of the modes (and the reference)."""
    import copy
    import torch
    from . import benchkit
    if args.train:
        net.train()
    fns = [benchkit.step_fn(net, x, m, policy, args.train, y, compiled[0]) for m in modes]
    if reference:
        reference[1].train(args.train)
        fns.append(benchkit.step_fn(reference[1], x, None, None, args.train, y, compiled[1]))
    times, load = gate.run(lambda: benchkit.alternate(fns, args.warmup, args.iters))
    net.eval()
    if reference:
        reference[1].eval()
    per_step, unit = get_task(task).items(x), get_task(task).unit
    runs = {}
    for m, t in zip(modes + (["reference"] if reference else []), times):
        med = statistics.median(t)
        runs[m or "static"] = dict(step_ms_median=med * 1e3, step_ms_min=min(t) * 1e3, step_ms_max=max(t) * 1e3,
                                   **{f"{unit}_per_s": per_step / med})
    out = copy.deepcopy(base)
    out.update(conditions=benchkit.conditions(device, torch.get_default_dtype()), load=load, runs=runs)
    if "flops" in out:
        fl = out["flops"]
        out.update(_versus(times[1], times[0], fl.get("ratio")))
        if reference:
            out["reference"] = dict(
                model=reference[0], flops_ratio=fl.get("reference_ratio"),
                **_versus(times[2], times[0], fl.get("reference_ratio")),
                # what the dense mode costs over the plain static model: the flattery it adds
                dense_over_reference=benchkit.spread(benchkit.pair_ratios(times[1], times[2])))
    return out


def _versus(slow, fast, flops_ratio) -> dict:
    """Speedup of `fast` over `slow` (median and spread over step pairs) and efficiency =
    speedup / FLOPs ratio (None without a ratio)."""
    from . import benchkit
    speedups = benchkit.pair_ratios(slow, fast)
    median = statistics.median(speedups)
    return dict(speedup_median=median, speedup_spread=benchkit.spread(speedups),
                efficiency=median / flops_ratio if flops_ratio else None,
                efficiency_spread=benchkit.spread(speedups, 1 / flops_ratio) if flops_ratio else None)


def _flops(net, x, policy, reference=None) -> dict:
    try:
        from zoo.flops import UNIT, count_flops
    except ImportError as e:  # the counter is optional for timing
        return dict(error=f"zoo.flops unavailable: {e}")
    from . import benchkit
    import torch
    counts = {}
    for m in ("sparse", "dense"):
        with benchkit.routing_context(net, m, policy), torch.no_grad():
            counts[m] = count_flops(net, x)
    out = dict(unit=UNIT, sparse=counts["sparse"], dense=counts["dense"],
               ratio=counts["dense"] / counts["sparse"] if counts["sparse"] else None)
    if reference is not None:
        with torch.no_grad():
            out["reference"] = count_flops(reference, x)
        out["reference_ratio"] = out["reference"] / counts["sparse"] if counts["sparse"] else None
    return out
