"""Issue 12: does dhvn_nano's transformer branch pay fixed costs on the small sub-batches of skip 75 %?

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_dhvn_transformer_batch.py --threads 1 2

For each hybrid block of dhvn_nano (mnist5k: 1 x 28 x 28), eval, no autograd: the transformer and
conv branches' time per sample at batch 64, 16 and 4 (16 is the "both" sub-batch at skip 75 %),
and the transformer branch at batch 64 run whole or in chunks of 32 / 16 / 8 samples (cat of the
chunks; max abs difference to the whole-batch output). Medians of rounds, loadavg printed.

Measured (loadavg 0.9): per sample, batch 16 costs about what batch 64 does (137-193 us at 1
thread), so skip 75 %'s sub-batches pay no large fixed cost; batch 4 costs 1.2-1.4x per sample.
Chunks of 32 ran the branch alone 1.4-2.2x faster at 14 x 14 grids, but inside the whole
dhvn_nano forward (dense, sparse skip 0-75 %, static) the same chunking measured 0.94-1.11x,
within noise, so it was not adopted.
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

SIZES = {"encoder.0": 28, "encoder.1": 14, "decoder.0.block": 14}


def med_ms(f, rounds):
    f()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=11)
    a = p.parse_args(argv)
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28).eval()
    blocks = [(n, b) for n, b in model.named_modules() if type(b).__name__ == "HybridBlock"]
    with torch.no_grad():
        for threads in a.threads:
            torch.set_num_threads(threads)
            print(f"--- {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
            for name, blk in blocks:
                hw = SIZES[name]
                cin = blk.conv[0].dw.in_channels
                x = torch.randn(64, cin, hw, hw).contiguous(memory_format=torch.channels_last)
                per = []
                for B in (64, 16, 4):
                    xb = x[:B]
                    t, c = med_ms(lambda: blk.trans(xb), a.rounds), med_ms(lambda: blk.conv(xb), a.rounds)
                    per.append(f"B={B}: trans {1e3 * t / B:.0f} conv {1e3 * c / B:.0f} us/sample")
                print(f"{name:16s} " + "; ".join(per))
                ref = blk.trans(x)
                cells = []
                for cs in (64, 32, 16, 8):
                    g = (lambda: blk.trans(x)) if cs == 64 else (lambda cs=cs: torch.cat([blk.trans(c) for c in x.split(cs)]))
                    cells.append(f"chunk {cs}: {med_ms(g, a.rounds):.2f} ms (|diff| {(g() - ref).abs().max().item():.0e})")
                print(f"{'':16s} batch 64 " + ", ".join(cells), flush=True)
            print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
