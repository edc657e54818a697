"""DHVN's sparse path when one branch covers the whole batch: before (gather every sample into
[conv-only | both] order, run, scatter every row back) and now (`HybridBlock._one_branch_for_all`:
that branch on x as it is, the "both" rows overwritten).

Under a fixed skip mix every sample takes conv or both, so conv always covers the batch. The
"before" path is kept here verbatim. Whole-model eval forwards at batch 64, both paths
interleaved (the first of each pair alternates), medians of --rounds; outputs compared exactly,
also under mixes where the transformer covers the batch and where neither does.

    python experiments/archive/issue12_dhvn_one_branch.py [--threads 1 2] [--rounds 25]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import zoo  # noqa: E402
from harness import runtime  # noqa: E402
from harness.measure import benchkit  # noqa: E402
from zoo.layers.routed import assemble, gather_samples, scaled, single_choice, taken_weight  # noqa: E402
from zoo.families.dhvn import model as dhvn  # noqa: E402
from zoo.ops.dispatch import select_items  # noqa: E402


def before_sparse_pre(self, x, route):
    """HybridBlock._sparse_pre as it was at 3d11708."""
    w = taken_weight(route)
    only = single_choice(route)
    if only is not None:
        return scaled(self._choice(only, x), w)
    B = x.shape[0]
    only_c, only_t, both = (select_items(route.mask(n)) for n in dhvn.CHOICES)
    n_c, n_t, n_b = only_c.numel(), only_t.numel(), both.numel()
    c = self.conv(gather_samples(x, only_c, both)) if n_c + n_b else None
    t = self.trans(gather_samples(x, only_t, both)) if n_t + n_b else None
    parts = []
    if n_c:
        parts.append((only_c, c[:n_c]))
    if n_t:
        parts.append((only_t, t[:n_t]))
    if n_b:
        parts.append((both, self.mix(c[n_c:], t[n_t:])))
    return assemble([(items, scaled(v, None if w is None else w[items])) for items, v in parts], B)


NOW = dhvn.HybridBlock._sparse_pre
FORMS = {"before": before_sparse_pre, "now": NOW}


def forward(model, x, policy, impl):
    dhvn.HybridBlock._sparse_pre = impl
    try:
        with benchkit.routing_context(model, "sparse", policy), torch.no_grad():
            return model(x)
    finally:
        dhvn.HybridBlock._sparse_pre = NOW


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=25)
    a = p.parse_args()
    runtime.tune_allocator()
    torch.manual_seed(0)
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28).eval()
    x = torch.randn(64, 1, 28, 28)
    policies = {m: benchkit.FrozenPolicy(benchkit.policy_for(model, benchkit.parse_policy(m)), seed=0)
                for m in ("skip=0.25", "skip=0.5", "skip=0.75", "transformer=0.5,both=0.5",
                          "conv=0.3,transformer=0.3,both=0.4")}
    for mix, policy in policies.items():
        outs = [forward(model, x, policy, impl) for impl in FORMS.values()]
        print(f"{mix:34s} outputs equal: {torch.equal(*outs)}")
    for threads in a.threads:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread(s), load average {os.getloadavg()[0]:.2f}; ms min/median/max")
        for mix in ("skip=0.25", "skip=0.5", "skip=0.75"):
            ts = {k: [] for k in FORMS}
            for k in range(a.rounds + 2):
                for name in (FORMS if k % 2 else reversed(list(FORMS))):
                    t0 = time.perf_counter()
                    forward(model, x, policies[mix], FORMS[name])
                    if k >= 2:  # two untimed rounds first
                        ts[name].append((time.perf_counter() - t0) * 1e3)
            med = {k: statistics.median(v) for k, v in ts.items()}
            cells = "  ".join(f"{k} {min(v):.2f}/{med[k]:.2f}/{max(v):.2f}" for k, v in ts.items())
            print(f"  {mix:10s} {cells}  before / now {med['before'] / med['now']:.3f}")


if __name__ == "__main__":
    main()
