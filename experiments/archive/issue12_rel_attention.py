"""Issue 12 lever: ESH's relative-bias attention as baddbmm + softmax + bmm instead of SDPA with a float mask.

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_rel_attention.py --threads 1 2

Times, interleaved, the attention core (q k^T + bias, softmax, times v) both ways at
eshvision_s's stage shapes, batch 64, with the layouts `RelPosAttention.attend` hands over
(full grid and packed query rows), forward and forward + backward; min / median / max over
rounds, the load average before and after, and the max abs difference of the outputs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from experiments._timing import min_med_max  # noqa: E402
from zoo.families.eshvision.rel_attention import biased_attention  # noqa: E402


def sdpa(q, k, v, b):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=b)


def inputs(B, N, h, d, M, packed, gen):
    q = torch.randn(B, M, h * d, generator=gen).view(B, M, h, d).transpose(1, 2)
    k, v = torch.randn(B, N, 2 * h * d, generator=gen).view(B, N, 2, h, d).permute(2, 0, 3, 1, 4)
    full = torch.randn(h, N, N, generator=gen)
    if not packed:
        return q, k, v, full
    pos = torch.stack([torch.randperm(N, generator=gen)[:M].sort().values for _ in range(B)])
    return q, k, v, full.index_select(1, pos.reshape(-1)).view(h, B, M, N).transpose(0, 1)


def timed(f, args, backward, inner):
    args = [a.detach().requires_grad_(backward) for a in args]
    t0 = time.perf_counter()
    for _ in range(inner):
        out = f(*args)
        if backward:
            out.sum().backward()
    return (time.perf_counter() - t0) / inner * 1e3


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--inner", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    shapes = [(196, 2, 64, 196, False), (49, 4, 64, 49, False), (16, 4, 128, 16, False),
              (196, 2, 64, 98, True), (49, 4, 64, 25, True)]
    for threads in a.threads:
        torch.set_num_threads(threads)
        print(f"--- {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
        for N, h, d, M, packed in shapes:
            args = inputs(a.batch, N, h, d, M, packed, gen)
            err = (biased_attention(*args) - sdpa(*args)).abs().max().item() if not packed else float("nan")
            for backward in (False, True):
                ts = {"sdpa": [], "baddbmm": []}
                for f in (sdpa, biased_attention):
                    timed(f, args, backward, 1)
                for _ in range(a.rounds):
                    ts["sdpa"].append(timed(sdpa, args, backward, a.inner))
                    ts["baddbmm"].append(timed(biased_attention, args, backward, a.inner))
                med, spread = min_med_max(ts)
                print(f"N={N:3d} h={h} d={d:3d} M={M:3d} {'packed' if packed else 'full  '} "
                      f"{'fwd+bwd' if backward else 'fwd    '}  {spread} ms (min/med/max)  "
                      f"sdpa/baddbmm {med['sdpa'] / med['baddbmm']:.2f}x  max|diff| {err:.1e}", flush=True)
        print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
