"""Router overhead: a routed layer with every item forced to one branch, against that branch alone.

Target (docs/DESIGN.md, "Performance targets"): router + gather/scatter <= 5 % of layer time.
Per model, every routed block is fed the inputs it sees in a real forward (`routed_calls`,
docs/DESIGN.md, "Routed blocks") and timed two ways, alternately (routed, direct, routed, direct
...), no grad:

  * routed: sparse execution, `zoo.routing.force(model, BRANCH)`: `call.routed()`, the router on
    the features it read, then the block's item selection, gather / packing, the branch on every
    item and the scatter back;
  * direct: `call.block.run_choice(BRANCH, call.inputs)`, the branch on the same inputs as a
    static model computes it.

  DHVN (per sample)  router(mean(x)) + routed mix of x     vs  the branch on x, fused and normed
  ESH  (per patch)   router([LN(x); H]) + routed mix       vs  x + the branch's update of LN(x)
  Exp11 (per token)  router(feats) + RoutedMixer(h)        vs  gdn(h) | gdn(h) + attn(h)

The models and inputs are each family's `bench.overhead` cases (`zoo.get_family(name)`). The
block's inputs (ESH's LN(x) among them) are computed once, outside both sides. The outputs of both sides
are compared (max abs difference printed) so the two really compute the same thing. The figure is
the median over rounds of sum(routed) / sum(direct) - 1 over the model's routed layers, with the
spread over rounds (min / max) and min(routed) / min(direct) - 1, the least disturbed round of
each side. FLOPs+ is the same ratio in counted FLOPs (`zoo.flops.count_call_flops`): the routers'
own Linear layers. It is the overhead's floor at equal GFLOP/s, so a row whose FLOPs+ is above
the target cannot meet it without a cheaper router. `--threads 1 2` measures every row at each thread count; each row records the load
around it (`harness.measure.benchkit.LoadGate`: with --max-load it waits up to --max-wait seconds for
other processes to quiet down, and marks the row unreliable if they did not).

    python -m benchmarks.bench_router_overhead [--families dhvn esh exp11] [--rounds 15] [--threads 1 2]
        [--max-load 0.5 --max-wait 60] [--reparam] [--json-out F]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

import torch

import zoo
from zoo.layers.routed_block import routed_calls
from harness.measure.benchkit import LoadGate, conditions, spread
from harness.runtime import tune_allocator_or_exit

TARGET = 0.05
# one small and one larger model per family, from its descriptor (docs/DESIGN.md, "Families"):
# (family key, model, create kwargs, input maker, branches, input description). The router's cost
# per call is nearly fixed, so its share falls with scale.
CONFIGS = [(f.bench.key, c.model, dict(c.kwargs), c.make_input, c.branches, c.shape)
           for f in map(zoo.get_family, zoo.list_families()) if f.bench for c in f.bench.overhead]
FAMILIES = sorted({c[0] for c in CONFIGS})


def _timed(fn):
    def run():
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    return run


def layer_pairs(model, x, branch: str):
    """[(routed_fn, direct_fn)] per routed layer, on the inputs of one real forward
    (`zoo.layers.routed_block.routed_calls`, docs/DESIGN.md, "Routed blocks")."""
    return [(call.routed, lambda call=call: call.block.run_choice(branch, call.inputs))
            for call in routed_calls(model, x)]


def measure(config: tuple, branch: str, rounds: int, warmup: int, threads=(None,), gate=None, seed: int = 0,
            reparam: bool = False) -> list:
    """One row per thread count: the routed layers against their branch alone, `rounds` rounds.
    `reparam`: both sides use the deploy form (`zoo.reparameterize_model`)."""
    family, name, kwargs, make, _, shape = config
    torch.manual_seed(seed)
    model = zoo.create_model(name, **kwargs).eval()
    if reparam:
        model = zoo.reparameterize_model(model, inplace=True)
    x = make()
    gate = gate or LoadGate()
    rows = []
    with zoo.routing.execution(model, "sparse"), zoo.routing.force(model, branch), torch.no_grad():
        pairs = layer_pairs(model, x, branch)
        err = max((r() - d()).abs().max().item() for r, d in pairs)
        # the routed side's counted extra work (the routers' Linear layers; gathers are not
        # FLOPs): at equal GFLOP/s the overhead cannot fall below this share
        routed_flops = sum(zoo.flops.count_call_flops(r, model) for r, _ in pairs)
        direct_flops = sum(zoo.flops.count_call_flops(d, model) for _, d in pairs)
        routed_fns = [_timed(r) for r, _ in pairs]
        direct_fns = [_timed(d) for _, d in pairs]
        for n in threads:
            if n:
                torch.set_num_threads(n)
            (tr_all, td_all), load = gate.run(lambda: _rounds(routed_fns, direct_fns, rounds, warmup))
            ratios = [tr / td for tr, td in zip(tr_all, td_all)]
            overhead = statistics.median(ratios) - 1.0
            rows.append(dict(family=family, model=name, branch=branch, shape=shape, layers=len(pairs), reparam=reparam,
                             threads=torch.get_num_threads(), load=load,
                             routed_ms_median=statistics.median(tr_all) * 1e3,
                             direct_ms_median=statistics.median(td_all) * 1e3,
                             routed_ms=spread(tr_all, 1e3), direct_ms=spread(td_all, 1e3),
                             overhead=overhead, overhead_spread=spread([q - 1.0 for q in ratios]),
                             # min/min: the least disturbed run of each side, a second reading on a loaded machine
                             overhead_min_ratio=min(tr_all) / min(td_all) - 1.0,
                             target=TARGET, met=overhead <= TARGET, max_abs_diff=err,
                             flops_overhead=routed_flops / direct_flops - 1.0))
    return rows


def _rounds(routed_fns, direct_fns, rounds: int, warmup: int):
    for _ in range(warmup):
        for r, d in zip(routed_fns, direct_fns):
            r(), d()
    tr_all, td_all = [], []
    for k in range(rounds):
        tr = td = 0.0
        for r, d in zip(routed_fns, direct_fns):
            # layer by layer, alternating which side goes first, so that cache state and a
            # drifting load favour neither
            if k % 2:
                td += d()[0]
                tr += r()[0]
            else:
                tr += r()[0]
                td += d()[0]
        tr_all.append(tr)
        td_all.append(td)
    return tr_all, td_all


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", default=FAMILIES, choices=FAMILIES)
    p.add_argument("--models", nargs="+", metavar="MODEL", choices=[c[1] for c in CONFIGS],
                   help="only these of the configured models (default: all of the chosen families)")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", help="torch.set_num_threads; several: every row at each "
                                                          "(default: torch's)")
    p.add_argument("--max-load", type=float, help="cores' worth of CPU other processes may use while a row is "
                                                  "timed; above it the row is marked unreliable (default: record only)")
    p.add_argument("--max-wait", type=float, default=0.0, help="seconds to wait before each row for other "
                                                               "processes to drop below --max-load (default 0)")
    p.add_argument("--reparam", action="store_true", help="time the deploy form (zoo.reparameterize_model: "
                                                          "BatchNorm folded into the conv before it)")
    p.add_argument("--json-out", metavar="FILE", help="write the figures, conditions and command to FILE")
    a = p.parse_args(argv)
    tune_allocator_or_exit("bench_router_overhead")
    gate = LoadGate(a.max_load, a.max_wait)
    rows = []
    print(f"{'family':6s} {'model':20s} {'branch':12s} {'shape':18s} {'thr':>3s} {'routed ms':>10s} {'direct ms':>10s} "
          f"{'overhead':>9s} {'min/min':>8s} {'FLOPs+':>7s} {'target':>7s} {'max|diff|':>9s} {'load':>5s}")
    for config in CONFIGS:
        if config[0] not in a.families or (a.models and config[1] not in a.models):
            continue
        for branch in config[4]:
            for r in measure(config, branch, a.rounds, a.warmup, a.threads or [None], gate, reparam=a.reparam):
                rows.append(r)
                flag = {False: " UNRELIABLE", True: "", None: ""}[r["load"]["reliable"]]
                print(f"{config[0]:6s} {r['model']:20s} {branch:12s} {r['shape']:18s} {r['threads']:3d} "
                      f"{r['routed_ms_median']:10.2f} {r['direct_ms_median']:10.2f} {r['overhead'] * 100:8.1f}% "
                      f"{r['overhead_min_ratio'] * 100:7.1f}% {r['flops_overhead'] * 100:6.1f}% "
                      f"{'met' if r['met'] else 'MISSED':>7s} "
                      f"{r['max_abs_diff']:9.1e} {r['load']['other_load']}{flag}", flush=True)
    if a.json_out:
        cmd = "python -m benchmarks.bench_router_overhead " + " ".join(
            shlex.quote(t) for t in (sys.argv[1:] if argv is None else argv))
        doc = dict(benchmark="router_overhead", command=cmd.strip(), rounds=a.rounds, warmup=a.warmup, reparam=a.reparam,
                   conditions=conditions("cpu", torch.get_default_dtype()), results=rows)
        os.makedirs(os.path.dirname(os.path.abspath(a.json_out)), exist_ok=True)
        with open(a.json_out, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
