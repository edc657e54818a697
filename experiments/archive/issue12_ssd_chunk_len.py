"""SSD chunk length at ESH-Vision's sequence lengths: 16 (the default) against balanced chunks.

At L=49 a 16-token chunk pads 15 tokens (4 chunks); a 13-token chunk pads 3 (still 4 chunks),
and the intra-chunk product shrinks with Q^2. Not applied in the zoo: a different chunk length
changes the outputs at the 1e-7 level, so eshvision_xs would have to be retrained. Interleaved,
medians of --rounds, ms.

    python experiments/archive/issue12_ssd_chunk_len.py [--threads 1] [--rounds 21]
"""
from __future__ import annotations

import argparse
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments._timing import interleaved, min_med_max, prepare  # noqa: E402
from experiments.archive.issue12_ssd_short import ssd_inputs  # noqa: E402
from zoo.ops.selective_scan import ssd_scan  # noqa: E402

# (Bt, L, d_inner, heads, d_state, chunk lengths): eshvision_xs's stages 0 and 1 at 28 px
# (2 directions x 64 images), eshvision_s's first two stages at 224 px (2 x 8 images)
CASES = [(128, 49, 64, 2, 8, (16, 13, 7)), (128, 16, 128, 4, 8, (16, 8)),
         (16, 196, 256, 8, 16, (16, 14)), (16, 49, 512, 16, 16, (16, 13, 7))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=21)
    a = p.parse_args()
    print(f"{prepare(a.threads)}; ms min/median/max")
    for Bt, L, Dm, H, N, chunks in CASES:
        u, d, A, B, C, D = ssd_inputs(Bt, L, Dm, H, N)
        forms = {f"Q={q}": (lambda q=q: ssd_scan(u, d, A, B, C, D, chunk_size=q)) for q in chunks}
        med, cells = min_med_max(interleaved(forms, a.rounds))
        base = med[f"Q={chunks[0]}"]
        ratios = "  ".join(f"{k}: {base / v:.2f}x" for k, v in med.items() if k != f"Q={chunks[0]}")
        print(f"  Bt={Bt} L={L} Dm={Dm} H={H} N={N}: {cells}  Q=16 / {ratios}")


if __name__ == "__main__":
    main()
