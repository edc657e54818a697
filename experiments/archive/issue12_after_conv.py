"""Where DHVN's conv router overhead goes when the router's own work is 25 us.

bench_router_overhead.py puts dhvn_nano's conv overhead at 15-38 % with no extra counted FLOPs
(the router is one 16 -> 3 Linear over 64 pooled samples). Timed alone, the pooled mean and the
router take about 75 us a layer, 4-5 % of it. This times small ops right after the conv branch
of the first hybrid block (batch 64, 16 x 28 x 28, channels-last) against the same ops right
after themselves, medians of `--rounds`: the first few ops after a large one pay for the cache
state that op leaves behind, whoever they are.

    python experiments/archive/issue12_after_conv.py [--threads 1] [--rounds 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import zoo  # noqa: E402
from experiments._timing import prepare  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=200)
    a = p.parse_args()
    header = prepare(a.threads)
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28).eval()
    seen = []
    block = next(b for b in model.modules() if type(b).__name__ == "HybridBlock" and b.router is not None)
    hook = block.register_forward_pre_hook(lambda m, args: seen.append(args[0]) and None)
    with torch.no_grad():
        model(torch.randn(64, 1, 28, 28))
    hook.remove()
    x = seen[0]
    feats, small = x.mean(dim=(2, 3)), torch.randn(64, 16)
    ops = {"router": lambda: block.router(feats), "pooled mean": lambda: x.mean(dim=(2, 3)),
           "add (64 x 16)": lambda: small + 1}
    res = {f"{name} after {before}": [] for name in ops for before in ("itself", "the conv branch")}
    with torch.no_grad():
        for _ in range(a.rounds):
            for name, op in ops.items():
                for before, prev in (("itself", op), ("the conv branch", lambda: block.conv(x))):
                    prev()
                    t0 = time.perf_counter()
                    op()
                    res[f"{name} after {before}"].append((time.perf_counter() - t0) * 1e6)
    print(f"{header}; us, min / median / max over {a.rounds} rounds")
    for k, v in res.items():
        print(f"  {k:32s} {min(v):8.1f} {statistics.median(v):8.1f} {max(v):9.1f}")


if __name__ == "__main__":
    main()
