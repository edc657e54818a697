"""DHVN, the Dynamic Hybrid Vision Network: one conv / transformer / both choice per sample per
block (`model`, `hybrid_block`), its conv branch (`conv_branch`) and its pooled-attention
transformer branch (`pooled_attention`)."""
from ...layers.family import Bench, Demo, Display, Family, Sweep, image_case, register_family
from .model import CHOICES, DHVN, DHVNSpec, DecoderStage, HybridBlock

__all__ = ["FAMILY", "DHVN", "DHVNSpec", "HybridBlock", "DecoderStage", "CHOICES"]

_BRANCHES = ("conv", "transformer")

FAMILY = register_family(Family(
    name="dhvn", model_class=DHVN, suite="mnist5k",
    display=Display(label="DHVN", color="#4C72B0", order=0),
    embedded=("dhvn_nano", "dhvn_nano_static", "dhvn_nano_ccc", "dhvn_nano_cbc"),
    budget_curves={"dhvn_nano": (0.3, 0.45, 0.6, 0.8, 1.0)},
    demo=Demo(suite="mnist5k", model="dhvn_nano", n=16, compare=("dhvn_nano", "dhvn_nano_static")),
    bench=Bench(key="dhvn", small=("dhvn_nano", ("--batch-size", "64")),
                large=("dhvn_tiny", ("--batch-size", "64", "--img-size", "32")),
                overhead=(image_case("dhvn_nano", 64, 28, _BRANCHES), image_case("dhvn_tiny", 64, 32, _BRANCHES)),
                sweep=Sweep.images("dhvn_nano"),
                # GFLOPs per 224 px image: dhvn_tiny 3.6 (skip 75 %) to 7.4 (skip 50; 1.8 all conv, 13.8
                # static); resnet10t 2.2, convnext_femto 1.6, resnet18 3.6, resnet34 7.3
                peers=("resnet10t", "convnext_femto", "resnet18", "resnet34")),
))
