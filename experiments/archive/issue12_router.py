"""Issue 12 lever: the binary router's probabilities as sigmoids instead of softmax(cat([0, z])).

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_router.py --threads 1 2

Times, interleaved, the probability computation alone and the whole Router forward (eval,
training "hard" and "gumbel") at ESH's patch-router shape, against the pre-issue-12 formula
(kept here as `legacy_*`). Prints min / median / max over rounds and the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from zoo.layers.router import Router  # noqa: E402
from zoo.ops.gating import gumbel_straight_through, straight_through  # noqa: E402
from zoo.specs import RouterSpec  # noqa: E402


def legacy_probs(z, tau=1.0):
    return torch.softmax(torch.cat([torch.zeros_like(z), z], dim=-1) / tau, dim=-1)


def new_probs(z, tau=1.0):
    s = z / tau
    return torch.sigmoid(torch.cat([-s, s], dim=-1))


def legacy_forward(r: Router, feats):
    """The Router forward before issue 12 (binary logits as cat([0, z]), a 2-wide softmax)."""
    logits = r.logits(feats)
    tau = float(r.tau) if r.training else r.tau
    probs = torch.softmax(logits / tau, dim=-1)
    if r.training:
        if r.spec.mode == "gumbel":
            weights, decisions, _ = gumbel_straight_through(logits, tau, r.spec.logit_clamp)
        else:
            weights, decisions = straight_through(probs)
    else:
        decisions = logits.argmax(dim=-1)
        weights = F.one_hot(decisions, 2).float()
    return weights, decisions, probs


def bench(fns, rounds, inner):
    times = {k: [] for k in fns}
    for _ in range(2):
        for f in fns.values():
            f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[k].append((time.perf_counter() - t0) / inner * 1e6)
    return times


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--inner", type=int, default=200)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    B, N, D = 64, 49, 97                      # eshvision_s stage-3 patches: 96 channels + entropy
    feats = torch.randn(B, N, D)
    z = torch.randn(B, N, 1) * 3
    for threads in a.threads:
        torch.set_num_threads(threads)
        print(f"--- {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
        cases = {"probs only": (lambda: legacy_probs(z), lambda: new_probs(z))}
        for mode, train in (("eval", False), ("hard", True), ("gumbel", True)):
            r = Router(D - 1, ("ssm", "attention"), "patch", RouterSpec(mode=mode if train else "hard",
                       hidden=32, zero_init=False), binary=True, extra_features=1).train(train)
            ctx = torch.enable_grad if train else torch.no_grad
            def old(r=r, ctx=ctx):
                with ctx():
                    return legacy_forward(r, feats)
            def new(r=r, ctx=ctx):
                with ctx():
                    return r(feats)
            cases[f"Router forward, {mode}"] = (old, new)
        for name, (old, new) in cases.items():
            t = bench({"old": old, "new": new}, a.rounds, a.inner)
            mo, mn = statistics.median(t["old"]), statistics.median(t["new"])
            print(f"{name:26s} old {min(t['old']):7.1f}/{mo:7.1f}/{max(t['old']):7.1f} us  "
                  f"new {min(t['new']):7.1f}/{mn:7.1f}/{max(t['new']):7.1f} us  (min/med/max)  "
                  f"speedup {mo / mn:.2f}x", flush=True)
        print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
