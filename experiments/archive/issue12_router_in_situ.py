"""An Exp11 token router timed where it really runs: right after a Gated DeltaNet layer.

Small ops are several times slower after a large layer than in a tight loop of themselves (cold
caches), so a router's cost in a model is not its cost alone. Each routed layer of
exp11_dynamic_tiny (T=1024, forced to gdn as in bench_router_overhead.py) is timed four ways,
round-robin, so every call follows the previous form's call: the routed layer (router + mixer),
the mixer on a precomputed route, the GDN alone and the router alone (which then runs after a
GDN). µs: median (min) over --rounds.

    python experiments/archive/issue12_router_in_situ.py [--threads 1] [--rounds 40]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import zoo  # noqa: E402
from experiments._timing import prepare  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args(argv)
    import bench_router_overhead as overhead
    _, name, kwargs, make, _, _ = next(c for c in overhead.CONFIGS if c[1] == "exp11_dynamic_tiny")
    for threads in args.threads:
        print(prepare(threads))
        model = zoo.create_model(name, **kwargs).eval()
        x = make()
        with zoo.routing.execution(model, "sparse"), zoo.routing.force(model, "gdn"), torch.no_grad():
            mixers = [m for m in model.modules() if type(m).__name__ == "RoutedMixer"]
            inputs, feats = [], []
            hooks = [m.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for m in mixers]
            hooks.append(model.routers[0].register_forward_pre_hook(lambda m, a: feats.append(a[0])))
            model(x)
            for h in hooks:
                h.remove()
            f = feats[0]
            forms = {}
            for i, (m, h) in enumerate(zip(mixers, inputs)):
                r = model.routers[i]
                route = r(f)
                forms[f"layer {i} routed"] = lambda m=m, h=h, r=r: m(h, r(f))
                forms[f"layer {i} mixer on a given route"] = lambda m=m, h=h, route=route: m(h, route)
                forms[f"layer {i} gdn alone"] = lambda m=m, h=h: m.gdn(h)
                forms[f"layer {i} router (after a gdn)"] = lambda r=r: r(f)
            ts = {k: [] for k in forms}
            for fn in forms.values():
                fn()
            for _ in range(args.rounds):
                for k, fn in forms.items():
                    t0 = time.perf_counter()
                    fn()
                    ts[k].append((time.perf_counter() - t0) * 1e6)
            for k, v in ts.items():
                print(f"  {k:34s} {statistics.median(v):8.0f} us (min {min(v):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
