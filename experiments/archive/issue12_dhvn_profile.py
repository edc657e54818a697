"""Issue 12: where dhvn_nano's sparse eval forward spends its time (torch.profiler, by op and module).

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_dhvn_profile.py --threads 1 --skip 0.75

dhvn_nano as the mnist5k suite builds it (1 x 28 x 28, 10 classes), eval, sparse, batch 64, with
bench's fixed mix skip=P (harness.measure.benchkit.FrozenPolicy: a share P of the samples at each router
takes conv only instead of both). Prints the top ops by self time and the wall time per forward
(min / median / max over rounds).
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
import zoo  # noqa: E402
from harness.measure import benchkit  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="dhvn_nano")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", type=float, default=0.75)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--rows", type=int, default=25)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = zoo.create_model(a.model, num_classes=10, in_chans=1, img_size=28).eval()
    x = torch.randn(a.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    policy = benchkit.FrozenPolicy(benchkit.policy_for(model, {"skip": a.skip}))
    with torch.no_grad(), benchkit.routing_context(model, "sparse", policy):
        for _ in range(3):
            model(x)
        ts = []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            model(x)
            ts.append((time.perf_counter() - t0) * 1e3)
        print(f"{a.model} batch {a.batch} skip {a.skip} sparse eval, {a.threads} thread(s): "
              f"{min(ts):.2f} / {statistics.median(ts):.2f} / {max(ts):.2f} ms (min/med/max), "
              f"loadavg {os.getloadavg()[0]:.2f}")
        from torch.profiler import profile
        with profile() as prof:
            for _ in range(5):
                model(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
