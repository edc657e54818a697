"""A router's eval forward with its one-hot weights built (before: Router.forward always built
them) and left unbuilt (now: `Route.weights` is built only if read; sparse execution never reads
it). The "before" form is the same forward followed by reading `route.weights`, which builds
exactly the tensor the old forward did. Interleaved, medians of --rounds, no grad.

    python experiments/archive/issue12_router_eval.py [--threads 1] [--rounds 400]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments._timing import interleaved, min_med_max, prepare  # noqa: E402
from zoo.layers.router import Router  # noqa: E402
from zoo.specs import RouterSpec  # noqa: E402

# the ESH patch router of eshvision_xs's first stage (64 images x 49 patches, dim 32 + entropy)
# and DHVN's sample router of dhvn_nano's first hybrid block (64 samples, 16 channels)
CASES = [("ESH patch router, 64 x 49 x 33", Router(32, ("ssm", "attention"), "patch", RouterSpec(mode="hard", hidden=32),
                                                    binary=True, extra_features=1), (64, 49, 33)),
         ("DHVN sample router, 64 x 16", Router(16, ("conv", "transformer", "both"), "sample",
                                                RouterSpec(mode="hard")), (64, 16))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=400)
    a = p.parse_args()
    print(f"{prepare(a.threads)}; us min/median/max")
    for name, router, shape in CASES:
        router.eval()
        feats = torch.randn(*shape)
        with torch.no_grad():
            ts = interleaved({"built": lambda: router(feats).weights, "unbuilt": lambda: router(feats)}, a.rounds)
        med, cells = min_med_max({k: [t * 1e3 for t in v] for k, v in ts.items()}, ".1f")
        print(f"  {name:32s} {cells}  built / unbuilt {med['built'] / med['unbuilt']:.2f}x")


if __name__ == "__main__":
    main()
