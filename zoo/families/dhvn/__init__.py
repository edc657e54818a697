"""DHVN, the Dynamic Hybrid Vision Network: one conv / transformer / both choice per sample per
block (`model`), its conv branch (`conv_branch`) and its pooled-attention transformer branch
(`pooled_attention`)."""
import torch

from ...layers.family import Bench, Demo, Display, Family, OverheadCase, Sweep, register_family
from .model import CHOICES, DHVN, DHVNSpec, DecoderStage, HybridBlock

__all__ = ["FAMILY", "DHVN", "DHVNSpec", "HybridBlock", "DecoderStage", "CHOICES"]

FAMILY = register_family(Family(
    name="dhvn", model_class=DHVN,
    display=Display(label="DHVN", color="#4C72B0", order=0),
    suite="mnist5k",
    embedded=("dhvn_nano", "dhvn_nano_static", "dhvn_nano_ccc", "dhvn_nano_cbc"),
    budget_curves={"dhvn_nano": (0.3, 0.45, 0.6, 0.8, 1.0)},
    demo=Demo(suite="mnist5k", model="dhvn_nano", n=16, compare=("dhvn_nano", "dhvn_nano_static")),
    bench=Bench(
        key="dhvn",
        small=("dhvn_nano", ("--batch-size", "64")),
        large=("dhvn_tiny", ("--batch-size", "64", "--img-size", "32")),
        overhead=(
            OverheadCase("dhvn_nano", dict(num_classes=10, in_chans=1, img_size=28),
                         lambda: torch.randn(64, 1, 28, 28), ("conv", "transformer"), "batch 64, 1x28x28"),
            OverheadCase("dhvn_tiny", dict(num_classes=10, in_chans=1, img_size=32),
                         lambda: torch.randn(64, 1, 32, 32), ("conv", "transformer"), "batch 64, 1x32x32"),
        ),
        sweep=Sweep("dhvn_nano", "mnist5k", "--img-size", {28: 64, 60: 64, 112: 32, 224: 8},
                    native={28: "mnist5k", 60: "cluttered60", 112: "cluttered112"}),
    ),
))
