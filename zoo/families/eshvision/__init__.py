"""ESH-Vision: per-patch routing between a bidirectional SSM and global attention, with ACT
pondering (`model`); its block (`esh_block`), branches (`vssm`, `rel_attention`), pondering
(`act`) and patch embedding and merging (`patch_stem`, `patch_merging`)."""
from ...layers.family import Bench, Demo, Display, Family, Sweep, image_case, register_family
from .esh_block import ESHBlock
from .model import ESHVision, ESHVisionSpec

__all__ = ["FAMILY", "ESHVision", "ESHVisionSpec", "ESHBlock"]

FAMILY = register_family(Family(
    "eshvision", ESHVision, Display("ESH-Vision", color="#55A868", order=1), suite="mnist5k",
    embedded=("eshvision_xs", "eshvision_xs_soft", "eshvision_xs_ssm", "eshvision_xs_attn"),
    budget_curves={"eshvision_xs": (0.8, 0.85, 0.9, 0.95, 1.0)},
    demo=Demo(suite="mnist5k", model="eshvision_xs", n=4, compare=("eshvision_xs", "eshvision_xs_soft")),
    # "esh": the benchmarks' name for the family, in their flags and rows
    bench=Bench(key="esh", small=("eshvision_xs", ("--batch-size", "64")),
                large=("eshvision_s", ("--batch-size", "64", "--img-size", "32")),
                overhead=tuple(image_case(m, batch, img, ESHBlock.choices)
                               for m, batch, img in (("eshvision_xs", 64, 28), ("eshvision_s", 8, 224))),
                sweep=Sweep.images("eshvision_xs"),
                # GFLOPs per 224 px image: eshvision_s 1.1; convnext_atto 1.1, efficientnet_b0 0.8, deit_tiny 2.5
                peers=("convnext_atto", "efficientnet_b0", "deit_tiny_patch16_224")),
))
