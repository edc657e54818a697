"""What a routed model's training step costs in each training mode, against its static form
(issue 24, part 4; docs/DESIGN.md, "Performance targets").

    flock /tmp/cpu-heavy.lock python -m benchmarks.bench_training_modes     # every family, 1 and 2 threads
    python -m benchmarks.bench_training_modes --only dhvn --rounds 3 --no-leaderboard

For each family's routed model of the main job, on its embedded suite's training shapes and batch
(dhvn_nano and eshvision_xs: 64 mnist5k digits; exp11_dynamic_tiny: 8 pydocs windows of 256 tokens),
one full training step (forward, task loss plus the weighted auxiliary objectives, backward, gradient
clip, AdamW) of every variant in `benchmarks/training_variants.py`: dense training, sparse training at
the trained mix and at forced shares 25/50/75 % of the items on the expensive path, fixed-capacity
training at 0.25/0.5/0.75, and the static comparators (the registered static form, the always-full
static reference where it differs, the cheapest static plan). All variants of a family step in turn
(A B C ... A B C ...; `harness.measure.benchkit.alternate`), warm-up rounds dropped, at each thread
count, under the load gate of the other benchmarks (`LoadGate`: load average before and after, other
processes' CPU while timing, a run they disturbed made once more, else marked unreliable).

Per variant: the median step time with min–max over rounds; its training FLOPs (3 x the forward's
executed FLOPs, `training_variants` says how they are counted); and against each comparator the
speedup (median over rounds of t_static / t_variant), the training-FLOPs ratio (static / variant)
and efficiency = speedup / FLOPs ratio. Target (issue 24): efficiency >= 0.8 against the static form
at capacity <= 0.5, at 1 thread. The JSON goes to leaderboard/perf/training_modes.json, which the
Performance section's "Training" table reads (leaderboard/training_perf.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join("leaderboard", "perf", "training_modes.json")
TARGET, TARGET_CAPACITY, TARGET_THREADS = 0.8, 0.5, 1
PROG = "bench_training_modes"


def _parse(argv):
    from benchmarks.perf_report import add_run_options
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="FAMILY", help="only these families (dhvn, esh, exp11, ...)")
    p.add_argument("--rounds", type=int, default=9, help="timed rounds (default 9)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--batch-size", type=int, help="instead of each suite's training batch (smoke tests)")
    p.add_argument("--json-out", default=OUT, help=f"where the results go (default {OUT})")
    add_run_options(p, "family's timing")
    return p.parse_args(argv)


def _versus(t_static, t_variant, f_static, f_variant) -> dict:
    """Against one comparator timed in the same rounds."""
    from harness.measure.benchkit import pair_ratios, spread
    speedups = pair_ratios(t_static, t_variant)
    median = statistics.median(speedups)
    ratio = f_static / f_variant if f_variant else None
    return dict(speedup_median=median, speedup_spread=spread(speedups), flops_ratio=ratio,
                efficiency=median / ratio if ratio else None,
                efficiency_spread=spread(speedups, 1 / ratio) if ratio else None)


def bench_case(case: dict, a, gate) -> list:
    """One result per thread count for one family's routed model."""
    import torch
    from harness.measure.benchkit import alternate, conditions, spread
    from benchmarks import training_variants as tv

    torch.manual_seed(0)  # Gumbel draws and explore shares of the routed variants
    cfg, x, y, inputs = tv.suite_setup(case["model"], case["suite"], a.batch_size)
    weights = tv.trained_weights(case["model"], case["suite"], cfg)
    variants = tv.build_variants(case["model"], cfg, x, weights)
    fns = [tv.step_fn(v, x, y, cfg) for v in variants]
    roles = {role: v.name for v in variants for role in v.roles}
    flops = {v.name: tv.forward_flops(v, x, y) for v in variants}  # the same at any thread count
    out = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        times, load = gate.run(lambda: alternate(fns, a.warmup, a.rounds))
        a.wait_budget -= load.get("waited_s") or 0.0  # once the waits add up to it, later timings do not wait
        gate.max_wait_s = max(0.0, min(a.max_wait, a.wait_budget))
        timed = dict(zip((v.name for v in variants), times))
        rows = []
        for v in variants:
            f = 3 * flops[v.name]["forward"]
            row = dict(name=v.name, label=v.label, kind=v.kind, execution=v.execution, share=v.share,
                       capacity=v.capacity, roles=v.roles, expensive_share=flops[v.name]["expensive_share"],
                       step_ms=spread(timed[v.name], 1e3), train_flops=f, forward_flops=flops[v.name]["forward"],
                       versus={role: _versus(timed[name], timed[v.name], 3 * flops[name]["forward"], f)
                               for role, name in roles.items() if name != v.name})
            rows.append(row)
        out.append(dict(family=case["family"], model=case["model"], suite=case["suite"], inputs=inputs,
                        input_shape=list(x.shape), threads=threads, weights=weights[1] if weights else None,
                        comparators={role: next(v.label for v in variants if v.name == name)
                                     for role, name in roles.items()},
                        variants=rows, load=load, rounds=a.rounds, warmup=a.warmup,
                        conditions=conditions("cpu", torch.get_default_dtype())))
    return out


def target_met(result: dict, row: dict):
    """The issue's target on a fixed-capacity row at capacity <= 0.5 at 1 thread; None elsewhere."""
    eff = (row["versus"].get("static_form") or {}).get("efficiency")
    if row.get("capacity") is None or row["capacity"] > TARGET_CAPACITY or result["threads"] != TARGET_THREADS \
            or eff is None:
        return None
    return eff >= TARGET


def print_result(r: dict) -> None:
    comps = ", ".join(f"{role.replace('_', ' ')}: {name}" for role, name in r["comparators"].items())
    print(f"\n{r['model']} on {r['inputs']}, {r['threads']} thread(s), "
          f"{r['weights'] or 'untrained router'}; {comps}")
    load = r["load"] or {}
    print(f"load average {load.get('loadavg_before')} -> {load.get('loadavg_after')}, other processes "
          f"{load.get('other_load')} cores" + ("  UNRELIABLE" if load.get("reliable") is False else ""))
    head = f"{'variant':<34}{'step ms (min-max)':>24}{'train GFLOPs':>14}{'share':>7}"
    head += f"{'vs static form: speedup':>25}{'FLOPs ratio':>12}{'eff':>6}{'vs cheapest: eff':>18}"
    print(head)
    for row in r["variants"]:
        s = row["step_ms"]
        vs, cheap = row["versus"].get("static_form") or {}, row["versus"].get("cheapest_plan") or {}
        share = "" if row["expensive_share"] is None else f"{row['expensive_share']:.2f}"
        met = target_met(r, row)
        print(f"{row['label'][:33]:<34}{_ms(s):>24}{row['train_flops'] / 1e9:>14.3f}{share:>7}"
              f"{_num(vs.get('speedup_median'), 'x'):>25}{_num(vs.get('flops_ratio'), 'x'):>12}"
              f"{_num(vs.get('efficiency')):>6}{_num(cheap.get('efficiency')):>18}"
              + ("" if met is None else ("  target met" if met else "  target MISSED")))


def _ms(s: dict) -> str:
    return f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})"


def _num(v, suffix="") -> str:
    return "-" if v is None else f"{v:.2f}{suffix}"


def main(argv=None) -> int:
    a = _parse(argv)
    from harness.runtime import tune_allocator_or_exit
    tune_allocator_or_exit(PROG)
    from benchmarks import training_variants as tv
    from harness.errors import HarnessError
    from harness.measure.benchkit import LoadGate, loadavg
    if a.json_out != OUT:
        a.json_out = os.path.abspath(a.json_out)  # the user's path, from where they ran it
    os.chdir(ROOT)
    if a.rounds < 1 or a.warmup < 0 or any(t < 1 for t in a.threads) or (a.batch_size is not None and a.batch_size < 2):
        print(f"{PROG}: error: --rounds and --threads must be >= 1, --warmup >= 0, --batch-size >= 2", file=sys.stderr)
        return 2
    cases = tv.family_cases(a.only)
    if not cases:
        print(f"{PROG}: error: no family matches {' '.join(a.only or [])}", file=sys.stderr)
        return 2
    gate = LoadGate(a.max_load, a.max_wait)
    started, load_before, results = time.perf_counter(), loadavg(), []
    print(f"{PROG}: threads {' '.join(map(str, a.threads))}, {a.rounds} rounds after {a.warmup} warm-up, "
          f"load average before {load_before}")
    try:
        for case in cases:
            results += bench_case(case, a, gate)
            for r in results[-len(a.threads):]:
                print_result(r)
    except HarnessError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    load_after = loadavg()
    print(f"\n{PROG}: {time.perf_counter() - started:.0f} s, load average before {load_before}, after {load_after}")
    from leaderboard.atomic import atomic_write
    command = " ".join(["python -m benchmarks.bench_training_modes", *(argv if argv is not None else sys.argv[1:])])
    doc = dict(benchmark="training", command=command, target=dict(efficiency=TARGET, capacity_at_most=TARGET_CAPACITY,
                                                                  threads=TARGET_THREADS),
               flops_convention="training FLOPs = 3 x the executed FLOPs of the training forward (FLOPs = 2 x MACs, "
                                "zoo.flops.count_flops, the forward's decisions replayed)",
               lr=tv.LR, loadavg_before=load_before, loadavg_after=load_after, results=results)
    atomic_write(a.json_out, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"{PROG}: wrote {a.json_out}")
    if not a.no_leaderboard:
        from harness.cli import main as harness_main
        harness_main(["leaderboard"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
