"""Issue 12 kernels: SSD and Mamba-1 scans before and after, against their token loops, side by side.

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_scans.py --threads 1 2 --before 6e36d8f

`--before REV` loads zoo/ops/selective_scan/chunk.py as it was at that git revision next to the
working tree's, and times, interleaved in each round, the token loop, the old fast form and the
new one (forward, no autograd), at bench_ops.py's shapes and at eshvision_s's first two stages
(batch 8, both directions: Bt=16). Prints min / median / max over rounds, the speedup of the
medians over the loop, and the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks.bench_ops import scan_inputs  # noqa: E402
from experiments._timing import min_med_max  # noqa: E402
from experiments.archive.issue12_delta_rule import load_at  # noqa: E402
from zoo.ops.selective_scan import naive_selective_scan, naive_ssd_scan, selective_scan, ssd_scan  # noqa: E402

SHAPES = [  # (kind, Bt, L, Dm, N, H)
    ("ssd", 8, 196, 256, 16, 4), ("ssd", 8, 196, 256, 16, 8), ("ssd", 8, 784, 256, 16, 4),
    ("ssd", 8, 784, 256, 16, 8), ("ssd", 16, 196, 256, 16, 8), ("ssd", 16, 49, 512, 16, 16),
    ("s6", 8, 196, 256, 16, None), ("s6", 8, 784, 256, 16, None),
]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--before", default="6e36d8f")
    p.add_argument("--kinds", nargs="+", default=["ssd", "s6"])
    a = p.parse_args(argv)
    old = load_at(a.before, "zoo/ops/selective_scan/chunk.py", package="zoo.ops.selective_scan")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for threads in a.threads:
            torch.set_num_threads(threads)
            print(f"--- {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
            for kind, Bt, L, Dm, N, H in SHAPES:
                if kind not in a.kinds:
                    continue
                args = scan_inputs(Bt, L, Dm, N, gen, H=H)
                if kind == "ssd":
                    forms = {"loop": naive_ssd_scan, "before": old.ssd_scan, "after": ssd_scan}
                else:
                    forms = {"loop": naive_selective_scan, "before": old.selective_scan, "after": selective_scan}
                ref = forms["loop"](*args)
                err = {k: (f(*args) - ref).abs().max().item() for k, f in forms.items()}
                ts = {k: [] for k in forms}
                for f in forms.values():
                    f(*args)
                for _ in range(a.rounds):
                    for k, f in forms.items():
                        t0 = time.perf_counter()
                        f(*args)
                        ts[k].append((time.perf_counter() - t0) * 1e3)
                med, cells = min_med_max(ts, "6.2f")
                print(f"{kind:3s} Bt={Bt:2d} L={L:3d} Dm={Dm} N={N} H={H}: {cells} ms (min/med/max)  "
                      f"loop/before {med['loop'] / med['before']:.2f}x  loop/after {med['loop'] / med['after']:.2f}x  "
                      f"max|diff| after {err['after']:.1e}", flush=True)
            print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
