"""ESH-Vision: per-patch routing between a bidirectional SSM and global attention, with ACT
pondering (`model`); its block (`esh_block`), branches (`vssm`, `rel_attention`), pondering
(`act`) and patch embedding and merging (`patch_stem`, `patch_merging`)."""
import torch

from ...layers.family import Bench, Demo, Display, Family, OverheadCase, Sweep, register_family
from .esh_block import ESHBlock
from .model import ESHVision, ESHVisionSpec

__all__ = ["FAMILY", "ESHVision", "ESHVisionSpec", "ESHBlock"]

FAMILY = register_family(Family(
    name="eshvision", model_class=ESHVision,
    display=Display(label="ESH-Vision", color="#55A868", order=1),
    suite="mnist5k",
    embedded=("eshvision_xs", "eshvision_xs_soft", "eshvision_xs_ssm", "eshvision_xs_attn"),
    budget_curves={"eshvision_xs": (0.8, 0.85, 0.9, 0.95, 1.0)},
    demo=Demo(suite="mnist5k", model="eshvision_xs", n=4, compare=("eshvision_xs", "eshvision_xs_soft")),
    bench=Bench(
        key="esh",
        small=("eshvision_xs", ("--batch-size", "64")),
        large=("eshvision_s", ("--batch-size", "64", "--img-size", "32")),
        overhead=(
            OverheadCase("eshvision_xs", dict(num_classes=10, in_chans=1, img_size=28),
                         lambda: torch.randn(64, 1, 28, 28), ("ssm", "attention"), "batch 64, 1x28x28"),
            OverheadCase("eshvision_s", dict(num_classes=10, in_chans=1, img_size=224),
                         lambda: torch.randn(8, 1, 224, 224), ("ssm", "attention"), "batch 8, 1x224x224"),
        ),
        sweep=Sweep("eshvision_xs", "mnist5k", "--img-size", {28: 64, 60: 64, 112: 32, 224: 8},
                    native={28: "mnist5k", 60: "cluttered60", 112: "cluttered112"}),
    ),
))
