"""The C allocator lever: glibc's default thresholds against `harness.runtime.tune_allocator`.

The setting is per process, so each form runs in its own child process, alternately (system,
tuned, system, tuned ...; the first of each pair swaps every round). A child builds the model,
runs 3 untimed eval forwards, then times `--forwards` more and counts the minor page faults
they took (getrusage). Figures are medians over the rounds; the ratio is the median of the
per-round ratios system / tuned.

    python -m experiments.archive.issue12_allocator [--threads 1 2] [--rounds 5] [--forwards 10]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
# (label, model, create kwargs, input shape, execution, fixed mix)
CASES = [
    ("dhvn_nano sparse skip=0.5", "dhvn_nano", dict(num_classes=10, in_chans=1, img_size=28), (64, 1, 28, 28),
     "sparse", "skip=0.5"),
    ("dhvn_nano dense skip=0.5", "dhvn_nano", dict(num_classes=10, in_chans=1, img_size=28), (64, 1, 28, 28),
     "dense", "skip=0.5"),
    ("dhvn_nano_static", "dhvn_nano_static", dict(num_classes=10, in_chans=1, img_size=28), (64, 1, 28, 28),
     None, None),
    ("eshvision_xs sparse skip=0.5", "eshvision_xs", dict(num_classes=10, in_chans=1, img_size=28),
     (64, 1, 28, 28), "sparse", "skip=0.5"),
    ("eshvision_xs_soft", "eshvision_xs_soft", dict(num_classes=10, in_chans=1, img_size=28), (64, 1, 28, 28),
     None, None),
    ("exp11_dynamic_tiny sparse skip=0.5", "exp11_dynamic_tiny", dict(vocab_size=256, max_seq_len=1024),
     (1, 1024), "sparse", "skip=0.5"),
    ("eshvision_s sparse skip=0.5, 8x3x224", "eshvision_s", dict(), (8, 3, 224, 224), "sparse", "skip=0.5"),
    ("timm resnet18, 8x3x224", "timm:resnet18", dict(), (8, 3, 224, 224), None, None),
    ("timm convnext_atto, 8x3x224", "timm:convnext_atto", dict(), (8, 3, 224, 224), None, None),
]


def child(index: int, threads: int, forwards: int) -> None:
    import resource
    import time

    import timm
    import torch

    import zoo
    from harness import runtime
    from harness.measure import benchkit
    runtime.tune_allocator()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, name, kwargs, shape, execution, mix = CASES[index]
    model = (timm.create_model(name[5:], **kwargs) if name.startswith("timm:")
             else zoo.create_model(name, **kwargs)).eval()
    x = torch.randint(0, 256, shape) if name.startswith("exp11") else torch.randn(*shape)
    policy = (benchkit.FrozenPolicy(benchkit.policy_for(model, benchkit.parse_policy(mix)), seed=0)
              if mix else None)
    with benchkit.routing_context(model, execution, policy), torch.no_grad():
        for _ in range(3):
            model(x)
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ts = []
        for _ in range(forwards):
            t0 = time.perf_counter()
            model(x)
            ts.append((time.perf_counter() - t0) * 1e3)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / forwards
    print(json.dumps(dict(ms=statistics.median(ts), faults=faults, allocator=runtime.allocator_settings())))


def run_child(index: int, threads: int, forwards: int, allocator: str) -> dict:
    env = dict(os.environ, ROUTING_ZOO_ALLOCATOR=allocator)
    out = subprocess.run([sys.executable, "-m", "experiments.archive.issue12_allocator", "--child", str(index), str(threads),
                          str(forwards)], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--forwards", type=int, default=10)
    p.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(*a.child)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'case':38s} {'thr':>3s} {'system ms':>18s} {'tuned ms':>18s} {'faults/fwd sys':>14s} "
          f"{'tuned':>6s} {'sys/tuned':>9s}")
    for threads in a.threads:
        for i, case in enumerate(CASES):
            res = {"system": [], "tuned": []}
            for r in range(a.rounds):
                order = ("system", "tuned") if r % 2 == 0 else ("tuned", "system")
                for alloc in order:
                    res[alloc].append(run_child(i, threads, a.forwards, alloc))
            ms = {k: [x["ms"] for x in v] for k, v in res.items()}
            ratios = [s / t for s, t in zip(ms["system"], ms["tuned"])]
            cell = {k: f"{min(v):.1f}/{statistics.median(v):.1f}/{max(v):.1f}" for k, v in ms.items()}
            print(f"{case[0]:38s} {threads:3d} {cell['system']:>18s} {cell['tuned']:>18s} "
                  f"{statistics.median(x['faults'] for x in res['system']):14.0f} "
                  f"{statistics.median(x['faults'] for x in res['tuned']):6.0f} {statistics.median(ratios):9.2f}",
                  flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
