"""Eager against torch.compile (inductor) for fixed-capacity routed models (issue 24, part 3;
docs/DESIGN.md, "Compiled execution").

    flock /tmp/cpu-heavy.lock python -m benchmarks.bench_compile            # every family, 1 and 2 threads
    python -m benchmarks.bench_compile --only dhvn --rounds 3 --threads 1   # a quick look

For each family's routed model of the main job at capacity 0.5 with sparse training
(`router=dict(capacity=0.5, train_execution="sparse")`), on its embedded suite's training batch
(dhvn_nano, eshvision_xs: 64 mnist5k digits; exp11_dynamic_tiny: 8 pydocs windows of 256 tokens):

* training step: forward, cross-entropy, backward, SGD step (`harness.measure.benchkit.step_fn`),
  eager against `torch.compile(model)`;
* eval forward (no grad): eager sparse execution of the calibrated threshold's decisions against
  the compiled forward, which runs the dense form (every branch on every item: docs/DESIGN.md,
  "Compiled execution"). The routers' gates are drawn at random (std 1 / sqrt(fan-in) x 4) and the
  threshold calibrated by `--calibrate` training forwards, so about the capacity's share of the
  items takes the expensive path at eval, as in a trained model; an untrained gate ties every score.

Compilation happens in the warm-up calls, timed apart (`compile_s`: the first call, which traces
and generates code, with inductor's on-disk caches off, so a cold compile; later warm-up calls are
dropped). Each thread count compiles afresh (inductor's
CPU kernels fix their thread count when generated). Eager and compiled alternate step by step
(A B A B ...); per figure the median with min–max over rounds, and the load gate of the other
benchmarks (load average before and after, other processes' CPU while timing). `fullgraph=True` is
tried first; where it fails the model is compiled with graph breaks and the record says why.
The JSON goes to leaderboard/perf/compile.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join("leaderboard", "perf", "compile.json")
CASES = [dict(family="dhvn", model="dhvn_nano", suite="mnist5k"),
         dict(family="esh", model="eshvision_xs", suite="mnist5k"),
         dict(family="exp11", model="exp11_dynamic_tiny", suite="pydocs")]
ROUTER = dict(capacity=0.5, train_execution="sparse")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="FAMILY", help="only these families (dhvn, esh, exp11)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first, compilation included (default 3)")
    p.add_argument("--calibrate", type=int, default=3, help="training forwards that set the eval threshold")
    p.add_argument("--max-load", type=float, default=0.5, help="other processes' cores' worth the gate waits out")
    p.add_argument("--max-wait", type=float, default=120.0, help="longest wait for a quiet machine (s)")
    p.add_argument("--json-out", default=OUT)
    return p.parse_args(argv)


def build(case: dict):
    """(model, inputs, targets, description) with random gates and a calibrated eval threshold."""
    import torch
    import zoo
    from zoo import routing
    from benchmarks import training_variants as tv

    cfg, x, y, inputs = tv.suite_setup(case["model"], case["suite"])
    kwargs = {k: v for k, v in dict(cfg.model.get("arch_kwargs") or {}).items() if k != "router"}
    torch.manual_seed(0)
    model = zoo.create_model(case["model"], router=dict(ROUTER, zero_init=False), **kwargs)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for r in routing.routers(model):
            last = r.net[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 4 / math.sqrt(last.in_features))
    model.train()
    with torch.no_grad():
        for _ in range(CALIBRATE):
            model(x)
    return model, x, y, inputs


def _compiled(model, x, call, warmup: int) -> dict:
    """Compile `model` (fullgraph first), make `warmup` calls of `call(compiled)`; the first is the
    compile time. Returns dict(fn, fullgraph, compile_s, why)."""
    import torch
    import torch._dynamo as dynamo
    import torch._functorch.config
    import torch._inductor.config
    # a cold compile every time: inductor's on-disk caches would give a rerun's compile in seconds
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    why = None
    for fullgraph in (True, False):
        dynamo.reset()
        compiled = torch.compile(model, fullgraph=fullgraph, dynamic=False)
        try:
            t0 = time.perf_counter()
            call(compiled)
            compile_s = time.perf_counter() - t0
            break
        except Exception as e:  # a graph break under fullgraph: compile again with breaks, say why
            if not fullgraph:
                raise
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    for _ in range(warmup - 1):
        call(compiled)
    return dict(fn=compiled, fullgraph=fullgraph, compile_s=compile_s, why_not_fullgraph=why)


def bench_case(case: dict, a, gate) -> list:
    import torch
    from harness.measure.benchkit import alternate, conditions, spread, step_fn

    model, x, y, inputs = build(case)
    out = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        rec = dict(family=case["family"], model=case["model"], suite=case["suite"], inputs=inputs,
                   router=ROUTER, threads=threads, conditions=conditions("cpu", torch.float32))
        for phase, train in (("train_step", True), ("eval_forward", False)):
            model.train(train)
            eager = step_fn(model, x, None, None, train, targets=y)
            # a plain function around the compiled module: step_fn's `compiled or model` would ask
            # an OptimizedModule for its len()
            comp = _compiled(model, x, lambda c: step_fn(model, x, None, None, train, targets=y,
                                                         compiled=lambda v: c(v))(), a.warmup)
            compiled = step_fn(model, x, None, None, train, targets=y, compiled=lambda v: comp["fn"](v))
            times, load = gate.run(lambda: alternate([eager, compiled], a.warmup, a.rounds))
            t_e, t_c = times
            rec[phase] = dict(eager_ms=spread(t_e, 1e3), compiled_ms=spread(t_c, 1e3),
                              speedup_median=sorted(e / c for e, c in zip(t_e, t_c))[len(t_e) // 2],
                              compile_s=round(comp["compile_s"], 2), fullgraph=comp["fullgraph"],
                              why_not_fullgraph=comp["why_not_fullgraph"], load=load)
            print(f"{case['model']:20s} {threads}t {phase:12s} eager {rec[phase]['eager_ms']['median']:8.1f} ms  "
                  f"compiled {rec[phase]['compiled_ms']['median']:8.1f} ms  x{rec[phase]['speedup_median']:.2f}  "
                  f"compile {comp['compile_s']:.0f} s  fullgraph={comp['fullgraph']}  "
                  f"load {load.get('loadavg_before')}->{load.get('loadavg_after')}", flush=True)
        out.append(rec)
    return out


CALIBRATE = 3


def main(argv=None) -> int:
    global CALIBRATE
    a = _parse(sys.argv[1:] if argv is None else argv)
    CALIBRATE = a.calibrate
    sys.path.insert(0, ROOT)
    from harness.measure.benchkit import LoadGate
    gate = LoadGate(a.max_load, a.max_wait)
    cases = [c for c in CASES if not a.only or c["family"] in a.only]
    t0 = time.time()
    results = []
    for case in cases:
        try:
            results.extend(bench_case(case, a, gate))
        except Exception as e:  # a compiler failure is a result too: say which and why, go on
            results.append(dict(family=case["family"], model=case["model"], error=f"{type(e).__name__}: "
                                f"{str(e).splitlines()[0][:400]}"))
            print(f"{case['model']}: {results[-1]['error']}", flush=True)
        _write(a, argv, t0, results)
    return 0


def _write(a, argv, t0, results) -> None:
    doc = dict(benchmark="bench_compile", command="python -m benchmarks.bench_compile " + " ".join(argv or sys.argv[1:]),
               wall_s=round(time.time() - t0, 1), backend="inductor", rounds=a.rounds, warmup=a.warmup,
               results=results)
    os.makedirs(os.path.dirname(a.json_out) or ".", exist_ok=True)
    with open(a.json_out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {a.json_out} ({doc['wall_s']} s)")


if __name__ == "__main__":
    sys.exit(main())
