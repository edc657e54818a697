"""Whole-model parity with dense timm peers, per FLOP (docs/DESIGN.md, "Performance targets").

    python -m benchmarks.bench_peers                                  # 8x3x224x224, 1 and 2 threads
    python -m benchmarks.bench_peers --threads 1 --rounds 3
    python -m benchmarks.bench_peers --max-load 0.5 --max-wait 60 --json-out leaderboard/perf/peers.json

Each zoo vision model runs in sparse execution with fixed mixes (`skip=P`, as `harness bench
--policy`), beside timm models of similar FLOPs that a user would pick instead, all at the same
input, in one interleaved run: every round steps each entry once, in turn, so a noisy neighbour
slows all alike. Trained mixes: no trained checkpoint exists at 3x224x224 (the embedded job
trains dhvn_nano and eshvision_xs on 1x28x28 digits), so where that small model's trained
figure is in leaderboard/perf/, its mean routing shares are applied as a fixed mix and labelled
as such. Per entry and thread count: step time (min / median / max over rounds), images/s,
executed FLOPs of one forward (`zoo.flops.count_flops`, 2 x MACs, the decisions the timed steps
take) and GFLOP/s = FLOPs / median step time.

Target: each zoo model's GFLOP/s >= 0.8 x its best peer's, at every thread count and mix.

`--reparam` times every entry in its deploy form: zoo models through `zoo.reparameterize_model`,
timm peers through torch.fx's conv-BatchNorm fusion (`torch.fx.experimental.optimization.fuse`),
so both sides fold their BatchNorms; a peer fx cannot trace is timed as it is, and its row says so.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import timm

import zoo
from harness import runtime
from harness.measure import benchkit

TARGET = 0.8
# zoo model -> timm peers of similar executed FLOPs per image at 224 (zoo.flops.count_flops): each
# family's `bench.peers` for its `bench.large` model (docs/DESIGN.md, "Families"). (fastvit_t8 and
# convnext_pico, also near, were below the best peer's GFLOP/s in a trial run; left out to keep
# the run short.)
_FAMILIES = [f.bench for f in map(zoo.get_family, zoo.list_families()) if f.bench and f.bench.peers]
PEERS = {bench.large[0]: list(bench.peers) for bench in _FAMILIES}
MIXES = ["skip=0.5", "skip=0.75"]
# the small sibling whose trained routing shares stand in for a trained mix at this input
TRAINED_SIBLING = {bench.large[0]: bench.small[0] for bench in _FAMILIES}


def trained_shares(model: str, perf_dir: str):
    """(policy text, description, label) from the sibling's trained figure in perf_dir, or None."""
    sibling = TRAINED_SIBLING.get(model)
    path = os.path.join(perf_dir, f"bench_{sibling}_trained.json")
    if not sibling or not os.path.exists(path):
        return None
    with open(path) as f:
        doc = json.load(f)
    if doc.get("skipped") or not doc.get("results"):  # perf_report left a "not measured" file
        return None
    mix = doc["results"][0]["routing_mix"]
    choices = list(next(iter(mix.values())))
    mean = {c: sum(m[c] for m in mix.values()) / len(mix) for c in choices}
    shares = {c: round(v, 3) for c, v in mean.items()}
    shares[choices[-1]] = round(1.0 - sum(v for c, v in shares.items() if c != choices[-1]), 3)
    text = ",".join(f"{c}={v:g}" for c, v in shares.items() if v > 0)
    return text, f"trained {sibling}'s mean mix ({text})", f"{model} {sibling}-trained mix"


def fused_peer(module):
    """(module, True) with its conv-BatchNorm pairs folded by torch.fx, or (module, False) when fx
    cannot trace it."""
    from torch.fx.experimental.optimization import fuse
    try:
        return fuse(module), True
    except Exception:  # a symbolic-trace failure takes many types; the row records it
        return module, False


def entries(models, mixes, perf_dir, size, reparam=False):
    """[(label, zoo model or None, module, policy, mix description)] in run order."""
    out = []
    for name in models:
        net = zoo.create_model(name, in_chans=3, num_classes=1000, img_size=size).eval()
        if reparam:
            net = zoo.reparameterize_model(net, inplace=True)
        todo = [(m, m, f"{name} {m}") for m in mixes]
        trained = trained_shares(name, perf_dir)
        if trained:
            todo.append(trained)
        for policy_text, desc, label in todo:
            shares = benchkit.parse_policy(policy_text)
            policy = benchkit.FrozenPolicy(benchkit.policy_for(net, shares), seed=0)
            out.append((label, name, net, policy, desc))
    peers = sorted({p for name in models for p in PEERS[name]})
    for p in peers:
        peer = timm.create_model(p, num_classes=1000).eval()
        desc = "dense"
        if reparam:
            peer, folded = fused_peer(peer)
            desc = "dense, BatchNorm folded (torch.fx)" if folded else "dense (torch.fx could not trace it: not folded)"
        out.append((p, None, peer, None, desc))
    return out


def executed_flops(module, x, policy) -> int:
    from zoo.flops import count_flops
    with benchkit.routing_context(module, "sparse" if policy else None, policy), torch.no_grad():
        return count_flops(module, x)


def parity(rows, models) -> list:
    """Per zoo entry and thread count: its GFLOP/s against its best peer's at that count."""
    out = []
    for r in rows:
        if r["zoo_model"] is None:
            continue
        peers = [p for p in rows if p["threads"] == r["threads"] and p["model"] in PEERS[r["zoo_model"]]]
        best = max(peers, key=lambda p: p["gflops_per_s"])
        fastest = max(peers, key=lambda p: p["images_per_s"])
        ratio = r["gflops_per_s"] / best["gflops_per_s"]
        out.append(dict(model=r["zoo_model"], entry=r["model"], mix=r["mix"], threads=r["threads"],
                        gflops_per_s=r["gflops_per_s"], best_peer=best["model"],
                        best_peer_gflops_per_s=best["gflops_per_s"], ratio=ratio, target=TARGET,
                        met=ratio >= TARGET, images_per_s=r["images_per_s"], fastest_peer=fastest["model"],
                        fastest_peer_images_per_s=fastest["images_per_s"], reliable=r["load"]["reliable"]))
    return out


def run(models, mixes, threads, rounds, warmup, batch, size, gate, perf_dir, reparam=False) -> dict:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    todo = entries(models, mixes, perf_dir, size, reparam)
    flops = {label: executed_flops(m, x, pol) for label, _, m, pol, _ in todo}
    fns = [benchkit.step_fn(m, x, "sparse" if pol else None, pol, False) for _, _, m, pol, _ in todo]
    rows = []
    for n in threads:
        if n:
            torch.set_num_threads(n)
        times, load = gate.run(lambda: benchkit.alternate(fns, warmup, rounds))
        for (label, zoo_model, m, pol, desc), t in zip(todo, times):
            med = statistics.median(t)
            rows.append(dict(model=label, zoo_model=zoo_model, mix=desc, threads=torch.get_num_threads(),
                             params=sum(p.numel() for p in m.parameters()), flops=flops[label],
                             step_ms=benchkit.spread(t, 1e3), images_per_s=batch / med,
                             gflops_per_s=flops[label] / med / 1e9, load=load))
    return dict(rows=rows, parity=parity(rows, models), input_shape=list(x.shape))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--mixes", nargs="+", default=MIXES, help=f"fixed mixes (default {' '.join(MIXES)})")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    p.add_argument("--rounds", type=int, default=4, help="timed rounds (default 4)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--max-load", type=float, help="cores' worth of CPU other processes may use while timing; "
                                                  "above it the figures are marked unreliable (default: record only)")
    p.add_argument("--max-wait", type=float, default=0.0, help="seconds to wait first for other processes to "
                                                               "drop below --max-load (default 0)")
    p.add_argument("--perf-dir", default=os.path.join(ROOT, "leaderboard", "perf"),
                   help="where the small siblings' trained figures are read from")
    p.add_argument("--reparam", action="store_true", help="time every entry's deploy form, BatchNorm folded "
                                                          "(see the module docstring)")
    p.add_argument("--json-out", metavar="FILE", help="write the figures, conditions and command to FILE")
    a = p.parse_args(argv)
    runtime.tune_allocator_or_exit("bench_peers")
    out = run(a.models, a.mixes, a.threads, a.rounds, a.warmup, a.batch_size, a.img_size,
              benchkit.LoadGate(a.max_load, a.max_wait), a.perf_dir, a.reparam)
    print(f"{'model':40s} {'thr':>3s} {'GFLOPs/img':>10s} {'ms (min-max)':>22s} {'img/s':>7s} {'GFLOP/s':>8s}")
    for r in out["rows"]:
        s = r["step_ms"]
        print(f"{r['model']:40s} {r['threads']:3d} {r['flops'] / a.batch_size / 1e9:10.2f} "
              f"{s['median']:8.1f} ({s['min']:.1f}-{s['max']:.1f}) {r['images_per_s']:7.1f} "
              f"{r['gflops_per_s']:8.1f}", flush=True)
    for q in out["parity"]:
        print(f"{q['entry']:40s} {q['threads']} threads: {q['gflops_per_s']:.1f} GFLOP/s = {q['ratio']:.2f} x "
              f"{q['best_peer']} ({q['best_peer_gflops_per_s']:.1f}): {'met' if q['met'] else 'MISSED'}")
    if a.json_out:
        cmd = "python -m benchmarks.bench_peers " + " ".join(
            shlex.quote(t) for t in (sys.argv[1:] if argv is None else argv))
        doc = dict(benchmark="peers", command=cmd.strip(), rounds=a.rounds, warmup=a.warmup, target=TARGET, reparam=a.reparam,
                   batch_size=a.batch_size, input_shape=out["input_shape"], peers=PEERS,
                   conditions=benchkit.conditions("cpu", torch.get_default_dtype()),
                   results=out["rows"], parity=out["parity"])
        os.makedirs(os.path.dirname(os.path.abspath(a.json_out)), exist_ok=True)
        with open(a.json_out, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
