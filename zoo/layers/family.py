"""What a family declares about itself, and the one table of families (docs/DESIGN.md, "Families").

Every family package (`zoo/families/<name>/`) builds one `Family` and registers it. The descriptor
holds what tools outside the zoo used to keep in tables of their own, so that a new family is
one package: its display in the leaderboard, the README's pictures, the budget curves and the
benchmarks' configurations, and the FLOP rules of its modules whose arithmetic is elementwise
code. What a family's *models* compute (its static reference, its routed blocks) is declared
on its classes instead (`ZooModel.static_reference`, `zoo.layers.routed.RoutedBlock`).

    from zoo.layers.family import get_family
    get_family("eshvision").display.color        # "#55A868"
    get_family("exp11").budget_curves            # {"exp11_dynamic_tiny": (0.85, 0.9, 0.95, 1.0)}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch

__all__ = ["Family", "Display", "Demo", "Bench", "OverheadCase", "image_case", "token_case", "Sweep",
           "register_family", "get_family", "list_families", "FAMILIES", "MODULE_FLOPS", "UnknownFamilyError"]


@dataclass(frozen=True)
class Display:
    """How the leaderboard shows the family."""
    label: str    # its name in prose and legends ("ESH-Vision")
    color: str    # its colour in every figure (a matplotlib colour)
    order: int    # its place in tables, smallest first


@dataclass(frozen=True)
class Demo:
    """The README's routing pictures (`python -m harness visualize --readme`)."""
    suite: str
    model: str                      # the routed model drawn
    n: int                          # how many images or texts its pictures show
    compare: Tuple[str, ...] = ()   # the models the comparison figure sets side by side on `suite`


@dataclass(frozen=True)
class OverheadCase:
    """One model of the router-overhead benchmark (`benchmarks.bench_router_overhead`)."""
    model: str
    kwargs: Mapping[str, object]               # create_model overrides
    make_input: Callable[[], torch.Tensor]     # one batch, freshly drawn
    branches: Tuple[str, ...]                  # the choices every item is forced to, one row each
    shape: str                                 # the input, in words


def image_case(model: str, batch: int, img: int, branches: Tuple[str, ...], chans: int = 1,
               classes: int = 10) -> OverheadCase:
    """A vision model's case: `batch` random chans x img x img images, the model built for them."""
    return OverheadCase(model, dict(num_classes=classes, in_chans=chans, img_size=img),
                        lambda: torch.randn(batch, chans, img, img), tuple(branches),
                        f"batch {batch}, {chans}x{img}x{img}")


def token_case(model: str, batch: int, seq_len: int, branches: Tuple[str, ...], vocab: int = 256) -> OverheadCase:
    """A language model's case: `batch` random sequences of `seq_len` token ids."""
    return OverheadCase(model, dict(vocab_size=vocab, max_seq_len=seq_len),
                        lambda: torch.randint(0, vocab, (batch, seq_len)), tuple(branches),
                        f"batch {batch}, T={seq_len}")


@dataclass(frozen=True)
class Sweep:
    """Where sparse execution starts to pay (`benchmarks.crossover`): the routed model at growing sizes."""
    model: str
    suite: str                       # the default suite
    size_flag: str                   # "--img-size" or "--seq-len"
    batches: Mapping[int, int]       # size -> batch (it shrinks as the input grows)
    native: Mapping[int, str] = field(default_factory=dict)  # size -> the suite whose inputs are native there

    @classmethod
    def images(cls, model: str) -> "Sweep":
        """The vision families' sweep: 28 to 224 px, native on the digit suites up to 112."""
        return cls(model, "mnist5k", "--img-size", {28: 64, 60: 64, 112: 32, 224: 8},
                   native={28: "mnist5k", 60: "cluttered60", 112: "cluttered112"})


@dataclass(frozen=True)
class Bench:
    """The family's rows of the Performance section (`benchmarks.perf_report`)."""
    key: str                                  # its name in the benchmarks' --families flags and rows
    small: Tuple[str, Tuple[str, ...]]        # (model, `harness bench` args): timed at three forced skips
    large: Tuple[str, Tuple[str, ...]]        # one larger configuration at skip 50 %
    overhead: Tuple[OverheadCase, ...] = ()
    sweep: Optional[Sweep] = None
    # timm models of about `large`'s executed FLOPs per 3x224x224 image that a user would pick
    # instead (`benchmarks.bench_peers`: GFLOP/s parity, `small`'s trained mix standing in for a
    # trained one); none: the family is not timed against peers
    peers: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str                                  # the models' `family` tag (`zoo.model_info(m)["family"]`)
    model_class: type
    display: Display
    suite: str                                 # the embedded suite its small variants train on
    embedded: Tuple[str, ...] = ()             # the models the embedded job trains on `suite`, in order
    # routed model -> the fractions of its dense reference's FLOPs its trained checkpoints are
    # evaluated at (`zoo.routing.flops_budget`); each inside what its routing can reach
    budget_curves: Mapping[str, Tuple[float, ...]] = field(default_factory=dict)
    demo: Optional[Demo] = None
    bench: Optional[Bench] = None
    # module class -> f(module, args, kwargs, output) -> the FLOPs its elementwise code stands for
    # (`zoo.flops`: the counter sees only matmuls, convolutions and attention kernels)
    module_flops: Mapping[type, Callable] = field(default_factory=dict)


class UnknownFamilyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


FAMILIES: Dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add `family` to the table; registering the same name twice is an error unless it is the same descriptor."""
    old = FAMILIES.get(family.name)
    if old is not None and old is not family:
        raise ValueError(f"a family named {family.name!r} is already registered")
    if getattr(family.model_class, "family", None) != family.name:
        raise ValueError(f"{family.model_class.__name__}.family is {family.model_class.family!r}, "
                         f"not {family.name!r}")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(f"unknown family {name!r}; the zoo has {', '.join(list_families())}") from None


def list_families() -> List[str]:
    """Names in display order."""
    return [f.name for f in sorted(FAMILIES.values(), key=lambda f: (f.display.order, f.name))]


class _ModuleFlops(Mapping):
    """Every family's module FLOP rules as one read-only mapping, as the families stand now."""

    def _merged(self) -> Dict[type, Callable]:
        out: Dict[type, Callable] = {}
        for family in FAMILIES.values():
            out.update(family.module_flops)
        return out

    def __getitem__(self, cls: type) -> Callable:
        return self._merged()[cls]

    def __iter__(self) -> Iterator[type]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())

    def __contains__(self, cls) -> bool:
        return any(cls in f.module_flops for f in FAMILIES.values())


MODULE_FLOPS: Mapping[type, Callable] = _ModuleFlops()
