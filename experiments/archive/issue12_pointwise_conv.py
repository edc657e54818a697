"""DHVN's 1x1 convs: nn.Conv2d as torch dispatches it against oneDNN's conv called directly
(`zoo.families.dhvn.conv_branch.PointwiseConv2d`), interleaved, on channels-last maps, no grad.

torch sends a 1x1 conv with batch < 16 at 1 thread to its native kernel; at batch >= 16 or with
more threads both forms are the same oneDNN call. The shapes are dhvn_tiny's at 8 x 3 x 224²
(the peers benchmark's input), one of dhvn_nano's at batch 64, and a single image. Then whole
dhvn_tiny forwards (deploy form, sparse, skip 0.5) with the 1x1 convs as torch dispatches them
(`--model-only` skips the op table).

    python -m experiments.archive.issue12_pointwise_conv [--threads 1 2] [--rounds 8]
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn

from experiments._timing import interleaved, min_med_max, prepare

# (batch, in, out, side)
SHAPES = [(8, 32, 64, 112), (8, 64, 64, 112), (8, 192, 64, 112), (8, 64, 128, 56), (8, 128, 128, 56),
          (8, 256, 256, 28), (64, 32, 32, 14), (1, 64, 64, 56)]


def whole_model(rounds: int) -> None:
    import zoo
    from harness.measure import benchkit
    from zoo.families.dhvn.conv_branch import PointwiseConv2d
    net = zoo.reparameterize_model(zoo.create_model("dhvn_tiny", in_chans=3, num_classes=1000, img_size=224).eval())
    x = torch.randn(8, 3, 224, 224)
    policy = benchkit.FrozenPolicy(benchkit.policy_for(net, {"skip": 0.5}))

    def forward(dispatched: bool):
        def run():
            # the class attribute decides every PointwiseConv2d's forward: nn.Conv2d's or its own
            PointwiseConv2d.forward = nn.Conv2d.forward if dispatched else own
            try:
                with torch.no_grad(), benchkit.routing_context(net, "sparse", policy):
                    return net(x)
            finally:
                PointwiseConv2d.forward = own
        return run
    own = PointwiseConv2d.forward
    forms = {"dispatched": forward(True), "oneDNN": forward(False)}
    diff = (forms["dispatched"]() - forms["oneDNN"]()).abs().max().item()
    med, cells = min_med_max(interleaved(forms, rounds), ".1f")
    print(f"  dhvn_tiny 8x3x224² sparse skip 0.5 forward ms: {cells}  dispatched / oneDNN "
          f"{med['dispatched'] / med['oneDNN']:.2f}  max |diff| {diff:.1e}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--model-only", action="store_true")
    args = p.parse_args(argv)
    for threads in args.threads:
        print(prepare(threads))
        with torch.no_grad():
            for B, C, O, S in [] if args.model_only else SHAPES:
                conv = nn.Conv2d(C, O, 1, bias=True).eval()
                x = torch.randn(B, C, S, S).contiguous(memory_format=torch.channels_last)
                forms = {"dispatched": lambda: conv(x),
                         "oneDNN": lambda: torch.mkldnn_convolution(x, conv.weight, conv.bias, (0, 0), (1, 1),
                                                                    (1, 1), 1)}
                diff = (forms["dispatched"]() - forms["oneDNN"]()).abs().max().item()
                med, cells = min_med_max(interleaved(forms, args.rounds * (5 if B * S * S < 20000 else 1)), ".3f")
                print(f"  1x1 conv {B}x{C}x{S}² -> {O}: {cells}  dispatched / oneDNN "
                      f"{med['dispatched'] / med['oneDNN']:.2f}  max |diff| {diff:.1e}")
        whole_model(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
