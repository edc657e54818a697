"""Exp11: a small causal LM that routes each token to Gated DeltaNet alone or to GDN plus a causal
softmax attention read (`model`), with its mixers (`mixers`, `gdn`, `causal_attention`)."""
from ...layers.family import Bench, Demo, Display, Family, Sweep, register_family, token_case
from .gdn import ShortConv, short_conv_flops
from .mixers import CHOICES
from .model import Exp11, Exp11Spec, PlainBoth, RoutedMixer

__all__ = ["FAMILY", "Exp11", "Exp11Spec", "RoutedMixer", "PlainBoth"]

_T1024 = ("--batch-size", "1", "--seq-len", "1024")

FAMILY = register_family(Family(
    name="exp11", model_class=Exp11, display=Display(label="Exp11", color="#DD8452", order=2), suite="pydocs",
    embedded=("exp11_dynamic_tiny", "exp11_baseline_tiny", "exp11_ggbs_tiny", "exp11_gbbs_tiny",
              "exp11_gggg_tiny", "exp11_ggss_tiny", "exp11_ssss_tiny"),
    budget_curves={"exp11_dynamic_tiny": (0.85, 0.9, 0.95, 1.0)},
    demo=Demo(suite="pydocs", model="exp11_dynamic_tiny", n=1, compare=("exp11_dynamic_tiny", "exp11_baseline_tiny")),
    bench=Bench(key="exp11", small=("exp11_dynamic_tiny", _T1024), large=("exp11_dynamic", _T1024),
                overhead=(token_case("exp11_dynamic_tiny", 1, 1024, CHOICES), token_case("exp11_dynamic", 1, 1024, CHOICES)),
                sweep=Sweep("exp11_dynamic_tiny", "pydocs", "--seq-len", {256: 1, 1024: 1, 4096: 1},
                            native={256: "pydocs", 1024: "shakespeare"})),
    # its short conv's shifted multiply-adds are elementwise code: counted as the conv they are
    module_flops={ShortConv: short_conv_flops},
))
