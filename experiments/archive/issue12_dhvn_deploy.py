"""This stop's two DHVN levers in one interleaved run: dhvn_nano as trained against its deploy form.

  as trained  the model as `create_model` builds it, with its 1x1 convs dispatched by torch
              (nn.Conv2d.forward: its native kernel at batch < 16 on one thread);
  deploy      `zoo.reparameterize_model` (BatchNorm folded into the conv before it) and the 1x1
              convs on oneDNN (`PointwiseConv2d`, the default now).

Each form is timed in sparse and dense execution and as its static always-full reference
(`harness.measure.static_reference`, the routed weights), all six runs in turn (A B C D E F ...), at
mnist5k's 64 x 1 x 28² and fixed mixes skip=P. Efficiency = median over rounds of t_dense /
t_sparse (or t_static / t_sparse) over the FLOPs ratio, as in `harness bench`; the FLOP counts
are the same for both forms.

    python experiments/archive/issue12_dhvn_deploy.py [--threads 1 2] [--rounds 15] [--skips 0.25 0.5 0.75]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments._timing import prepare  # noqa: E402
from harness.measure import benchkit  # noqa: E402
from harness.measure.static_reference import static_reference  # noqa: E402
import zoo  # noqa: E402
from zoo.families.dhvn.conv_branch import PointwiseConv2d  # noqa: E402

KW = dict(num_classes=10, in_chans=1, img_size=28)
ONEDNN = PointwiseConv2d.forward


def timed(model, x, execution, policy, dispatched: bool):
    step = benchkit.step_fn(model, x, execution, policy, False)

    def run():
        PointwiseConv2d.forward = nn.Conv2d.forward if dispatched else ONEDNN
        try:
            return step()
        finally:
            PointwiseConv2d.forward = ONEDNN
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--skips", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    args = p.parse_args(argv)
    print(prepare(args.threads[0]))
    net = zoo.create_model("dhvn_nano", **KW).eval()
    _, ref = static_reference("dhvn_nano", net, lambda name: zoo.create_model(name, **KW))
    forms = {"as trained": (net, ref, True),
             "deploy": (zoo.reparameterize_model(net), zoo.reparameterize_model(ref), False)}
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    print("| skip | threads | form | sparse ms | dense ms | static ms | eff. vs dense | eff. vs static | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for skip in args.skips:
        policy = benchkit.FrozenPolicy(benchkit.policy_for(net, {"skip": skip}))
        with torch.no_grad(), benchkit.routing_context(net, "sparse", policy):
            sparse_flops = zoo.flops.count_flops(net, x)
        with torch.no_grad(), benchkit.routing_context(net, "dense", policy):
            dense_flops = zoo.flops.count_flops(net, x)
        with torch.no_grad():
            static_flops = zoo.flops.count_flops(ref, x)
        fns = [timed(m, x, ex, policy if ex else None, d) for m, r, d in forms.values()
               for m, ex in ((m, "sparse"), (m, "dense"), (r, None))]
        for threads in args.threads:
            torch.set_num_threads(threads)
            before = os.getloadavg()[0]
            times = benchkit.alternate(fns, 2, args.rounds)
            load = f"{before:.2f} → {os.getloadavg()[0]:.2f}"
            for i, name in enumerate(forms):
                sp, de, st = times[3 * i: 3 * i + 3]
                eff_d = benchkit.median_ratio(de, sp) / (dense_flops / sparse_flops)
                eff_s = benchkit.median_ratio(st, sp) / (static_flops / sparse_flops)
                ms = [f"{statistics.median(t) * 1e3:.1f} ({min(t) * 1e3:.1f}–{max(t) * 1e3:.1f})" for t in (sp, de, st)]
                print(f"| {skip:g} | {threads} | {name} | {' | '.join(ms)} | {eff_d:.2f} | {eff_s:.2f} | {load} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
