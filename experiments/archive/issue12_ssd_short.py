"""SSD on sequences shorter than one chunk: padded to a whole chunk (before) or scanned as they are.

ESH-Vision's late stages scan short sequences: a 4x4 grid at 224 px, 2x2 and 1x1 when eshvision_s
runs at 32 px. `ssd_scan` used to pad every sequence to a multiple of its chunk (16), so an L=1
scan cost as much as L=16. Padding with delta = 0 changes nothing (no decay, no input), so the old
computation is exactly `ssd_scan` on the zero-padded input, sliced back: that is the "padded"
form here, against `ssd_scan` on the input as it is, interleaved, medians of --rounds.

    python experiments/archive/issue12_ssd_short.py [--threads 1] [--rounds 21]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments._timing import interleaved, min_med_max, prepare  # noqa: E402
from zoo.ops.selective_scan import ssd_scan  # noqa: E402

# (Bt = 2 directions x 64 images, L, d_inner, heads): eshvision_s at 32 px, stages 1-2 (L=4, 1),
# and a 16-token sequence, which was never padded (the control)
CASES = [(128, 1, 1024, 32), (128, 1, 512, 16), (128, 4, 512, 16), (128, 16, 512, 16)]


def ssd_inputs(Bt: int, L: int, Dm: int, H: int, N: int):
    """u, delta, A, B, C, D for `ssd_scan` at these sizes (small positive deltas, stable A)."""
    u, B, C = torch.randn(Bt, L, Dm), torch.randn(Bt, L, N), torch.randn(Bt, L, N)
    return u, torch.rand(Bt, L, H) * 0.1, -torch.rand(H), B, C, torch.ones(Dm)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=21)
    a = p.parse_args()
    print(f"{prepare(a.threads)}; ms min/median/max")
    for Bt, L, Dm, H in CASES:
        pad = (-L) % 16
        u, d, A, B, C, D = ssd_inputs(Bt, L, Dm, H, 16)
        padded = [F.pad(t, (0, 0, 0, pad)) for t in (u, d, B, C)]

        def before():
            return ssd_scan(padded[0], padded[1], A, padded[2], padded[3], D)[:, :L]

        def now():
            return ssd_scan(u, d, A, B, C, D)
        err = (before() - now()).abs().max().item()
        med, cells = min_med_max(interleaved({"padded": before, "as is": now}, a.rounds))
        print(f"  Bt={Bt} L={L} Dm={Dm} H={H}: {cells}  padded / as is {med['padded'] / med['as is']:.2f}x  "
              f"max|diff| {err:.1e}")


if __name__ == "__main__":
    main()
