"""Issue 12: eval-mode norms on channels-last feature maps at dhvn_nano's shapes, batch 64 (and 16,
the "both" sub-batch at skip 75 %).

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_norm_eval.py --threads 1 2

DHVN's norms are BatchNorm since issue 9 (GroupNorm stays selectable); at eval a BN is a
per-channel affine map. Times, interleaved: torch's BatchNorm2d eval forward on a channels-last
input, the same map as one addcmul(shift, x, scale), and GroupNorm on channels-last and on NCHW
(the issue's question). min / median / max over rounds, loadavg before and after.
(The addcmul form is ~2x faster per call, but swapped into dhvn_nano it changed the whole
sparse forward by 0.98-1.02x at batch 64, 1 thread: within noise, so it was not kept.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--inner", type=int, default=20)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    shapes = [(64, 16, 28, 28), (64, 32, 14, 14), (64, 64, 7, 7), (16, 32, 14, 14), (16, 64, 7, 7)]
    with torch.no_grad():
        for threads in a.threads:
            torch.set_num_threads(threads)
            print(f"--- {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
            for shape in shapes:
                C = shape[1]
                x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
                xn = x.contiguous()
                bn = nn.BatchNorm2d(C).eval()
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2)
                bn.weight.data.normal_()
                bn.bias.data.normal_()
                scale = (bn.weight * (bn.running_var + bn.eps).rsqrt()).view(1, C, 1, 1)
                shift = (bn.bias - bn.running_mean * scale.view(-1)).view(1, C, 1, 1)
                gn = nn.GroupNorm(8, C)
                forms = {"BN eval (torch)": lambda: bn(x), "BN as addcmul": lambda: torch.addcmul(shift, x, scale),
                         "GN channels-last": lambda: gn(x), "GN NCHW": lambda: gn(xn)}
                err = (forms["BN eval (torch)"]() - forms["BN as addcmul"]()).abs().max().item()
                ts = {k: [] for k in forms}
                for f in forms.values():
                    f()
                for _ in range(a.rounds):
                    for k, f in forms.items():
                        t0 = time.perf_counter()
                        for _ in range(a.inner):
                            f()
                        ts[k].append((time.perf_counter() - t0) / a.inner * 1e6)
                med = {k: statistics.median(v) for k, v in ts.items()}
                cells = "  ".join(f"{k} {min(v):.0f}/{med[k]:.0f}/{max(v):.0f}" for k, v in ts.items())
                print(f"{str(shape):18s} {cells} us (min/med/max)  BN torch/addcmul {med['BN eval (torch)'] / med['BN as addcmul']:.2f}x"
                      f"  GN CL/NCHW {med['GN channels-last'] / med['GN NCHW']:.2f}x  max|diff| BN {err:.1e}", flush=True)
            print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
