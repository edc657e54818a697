"""The measuring core of `python -m harness bench` (`harness.commands.bench`): one model's
throughput, sparse-vs-dense speedup, FLOPs ratio, efficiency and memory, at each thread count,
timed with `harness.measure.benchkit`."""
from __future__ import annotations

import statistics
from typing import Callable, Optional

from ..errors import HarnessError
from ..tasks import get_task
from . import benchkit
from .static_reference import static_reference

__all__ = ["bench_model", "build_inputs", "deploy_form"]


def build_inputs(suite, task: str, batch: int, seq_len: Optional[int], img_size: Optional[int],
                 arch_kwargs: dict):
    """(inputs, targets, description): the task's inputs (`harness.tasks`) at the size asked for."""
    t = get_task(task)
    return t.inputs(suite, batch, seq_len if t.size_option == "seq_len" else img_size, arch_kwargs)


def bench_model(arch: str, suite, task: str, net, arch_kwargs: dict, build: Callable, args, shares,
                strict: bool = True, device: str = "cpu", gate=None) -> list:
    """One result per thread count of `args.threads` (the current count when none is given), for
    `net`, the network `run` builds for `arch` (`arch_kwargs`: its settings); `build(name)` builds
    another model on the same config (the static reference)."""
    import torch
    import zoo

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
