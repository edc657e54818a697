"""Specs are config-as-code: frozen dataclasses that say *what* to build.

A variant is a spec plus a name. Modules hold behaviour; specs hold choices.
`spec.to_dict()` and `Spec.from_dict()` round-trip, and `spec.replace(**overrides)`
is how `zoo.create_model(name, **overrides)` edits a variant.

Shared block specs live here so that the three families compose the same parts
(router, attention, SSM, GDN, MLP, conv branch) rather than each redefining them.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
import warnings
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Dict, Optional, Tuple

__all__ = [
    "Spec", "renamed_fields", "RouterSpec", "MlpSpec", "AttentionSpec", "ConvBranchSpec", "SSMSpec",
    "GDNSpec", "ACTSpec",
]


def _plain(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Spec:
    """Base class for every spec. Subclasses are frozen dataclasses."""
    # old field name -> new, accepted for one release (`renamed_fields`)
    _renamed: ClassVar[Dict[str, str]] = {}

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Spec":
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        data = cls._current_names(data)
        cls._check_keys(data)
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in fields(cls):
            if f.name in data:
                kwargs[f.name] = _coerce(hints[f.name], data[f.name])
        return cls(**kwargs)

    def replace(self, **overrides) -> "Spec":
        """Return a copy with fields replaced; nested specs accept dicts of their own fields."""
        overrides = self._current_names(overrides)
        self._check_keys(overrides)
        hints = typing.get_type_hints(type(self))
        kwargs = {}
        for name, value in overrides.items():
            current = getattr(self, name)
            if isinstance(current, Spec) and isinstance(value, dict):
                value = current.replace(**value)
            else:
                value = _coerce(hints[name], value)
            kwargs[name] = value
        return dataclasses.replace(self, **kwargs)

    def changes_from(self, base: "Spec") -> dict:
        """The overrides that make this spec from `base`: `base.replace(**spec.changes_from(base))
        == spec`, a nested spec as a dict of its own changed fields."""
        out = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(base, f.name)
            if mine != theirs:
                nested = isinstance(mine, Spec) and type(mine) is type(theirs)
                out[f.name] = mine.changes_from(theirs) if nested else mine
        return out

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def _current_names(cls, data: dict) -> dict:
        """`data` with each renamed field under its current name (a DeprecationWarning for each old one)."""
        if not any(old in data for old in cls._renamed):
            return data
        out = dict(data)
        for old, new in cls._renamed.items():
            if old in out:
                warnings.warn(f"{cls.__name__}.{old} is now {cls.__name__}.{new}; the old name goes in the next "
                              f"release", DeprecationWarning, stacklevel=3)
                if new in out:
                    raise TypeError(f"{cls.__name__} got both {old} (the old name of {new}) and {new}")
                out[new] = out.pop(old)
        return out

    @classmethod
    def _check_keys(cls, data: dict) -> None:
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise TypeError(
                f"{cls.__name__} got unknown field(s) {', '.join(unknown)}; "
                f"valid keys are: {', '.join(sorted(cls.field_names()))}")


def _coerce(hint: Any, value: Any) -> Any:
    """Turn plain JSON-ish values back into what a spec field holds (tuples, nested specs)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value) if len(non_none) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Spec):
        return hint.from_dict(value) if isinstance(value, dict) else value
    if origin in (tuple, Tuple) and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(value)
    return value


def renamed_fields(**old_to_new: str):
    """Class decorator (outside @dataclass) of a spec whose fields were renamed: each old name is
    still accepted, with a DeprecationWarning, by the constructor, `replace`, `from_dict` (configs
    and checkpoints that carry it) and as an attribute, for one release."""
    def decorate(cls):
        cls._renamed = {**cls._renamed, **old_to_new}
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **cls._current_names(kwargs))
        cls.__init__ = __init__
        for old, new in old_to_new.items():
            setattr(cls, old, property(functools.partial(_old_field, old=old, new=new)))
        return cls
    return decorate


def _old_field(spec: Spec, old: str, new: str):
    name = type(spec).__name__
    warnings.warn(f"{name}.{old} is now {name}.{new}; the old name goes in the next release", DeprecationWarning,
                  stacklevel=3)
    return getattr(spec, new)


# ----------------------------------------------------------------------------- shared block specs

@renamed_fields(budget="compute_target")
@dataclass(frozen=True)
class RouterSpec(Spec):
    """The one gate used at sample, patch and token granularity.

    mode:
      * ``gumbel`` – straight-through Gumbel-softmax from a single draw (training); argmax at eval.
      * ``hard``   – straight-through on the noise-free probabilities (ESH "hard" α > 0.5).
      * ``soft``   – continuous probabilities weight the branches (the seeds' soft merge);
                     every branch always runs, decisions are still traced.
    """
    mode: str = "gumbel"
    hidden: Optional[int] = None      # None: a linear gate; int: a 2-layer MLP gate
    logit_clamp: float = 15.0
    zero_init: bool = True
    tau: float = 1.0
    # the compute target (docs/DESIGN.md, glossary): the share of the full routed compute that
    # training aims to spend (the "budget" objective). None: no such term. Named `budget` until
    # this release, which still accepts that name.
    compute_target: Optional[float] = None
    # in training, this share of the items takes a uniformly random choice: every branch keeps
    # learning on some items whatever the router prefers, so the inference budget knob can move
    # items onto a branch the router rarely picks and still find it trained
    explore: float = 0.0
    # how routed blocks execute in training when no `zoo.routing.execution` context says:
    # "sparse" leaves out the branches no item chose, as eval does (docs/DESIGN.md, "Training
    # execution and fixed capacity"); a soft router merges every branch, so it stays dense
    train_execution: str = "dense"
    # fixed capacity: in training, a share `capacity` of each router's items (per batch for
    # samples, per image or sequence for patches and tokens) takes the expensive path, chosen
    # by top-k of its scores; at eval a calibrated threshold decides each item alone
    # (docs/DESIGN.md, "Training execution and fixed capacity"). None: threshold routing.
    capacity: Optional[float] = None

    def __post_init__(self):
        if self.mode not in ("gumbel", "hard", "soft"):
            raise ValueError(f"router mode must be 'gumbel', 'hard' or 'soft', got {self.mode!r}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"router tau must be a finite number > 0, got {self.tau}")
        if self.compute_target is not None and not 0 < self.compute_target <= 1:
            raise ValueError(f"router compute_target (the training budget) must lie in (0, 1], got "
                             f"{self.compute_target}")
        if not 0 <= self.explore < 1:
            raise ValueError(f"router explore must lie in [0, 1), got {self.explore}")
        if self.train_execution not in ("dense", "sparse"):
            raise ValueError(f"router train_execution must be 'dense' or 'sparse', got {self.train_execution!r}")
        if self.capacity is not None:
            if isinstance(self.capacity, bool) or not isinstance(self.capacity, (int, float)) \
                    or not 0 < self.capacity < 1:
                raise ValueError(f"router capacity must be None or a number in (0, 1), got {self.capacity!r}")
            if self.mode == "soft":
                raise ValueError("router capacity needs hard decisions: a soft router (mode='soft') runs every "
                                 "branch on every item, so it has no capacity to fix")


@dataclass(frozen=True)
class MlpSpec(Spec):
    ratio: float = 4.0
    act: str = "gelu"          # "gelu" (timm Mlp) or "swiglu"
    hidden: Optional[int] = None  # overrides ratio when set (Exp11's 3072)


@dataclass(frozen=True)
class AttentionSpec(Spec):
    num_heads: Optional[int] = None
    head_dim: Optional[int] = None
    qkv_bias: bool = True
    rel_pos_bias: bool = False     # Swin-style relative position bias (vision)
    rope: bool = False             # rotary embeddings (causal LM)
    rope_theta: float = 10000.0
    kv_pool: Optional[int] = None  # pool keys/values to kv_pool x kv_pool (global context at low cost)


@dataclass(frozen=True)
class ConvBranchSpec(Spec):
    """DHVN conv branch: depthwise-separable residual blocks (3x3 dw, GN, ReLU, 1x1, GN)."""
    num_blocks: int = 2
    kernel_size: int = 3
    groups: int = 8                # GroupNorm groups
    norm: str = "group"            # "group", "batch" or "layer" (per-pixel LayerNorm2d)


@dataclass(frozen=True)
class SSMSpec(Spec):
    """Mamba-1 style selective scan (per-channel A) or per-head decay ("ssd")."""
    d_state: int = 16
    expand: int = 2
    d_conv: int = 3
    dt_rank: Optional[int] = None   # None: ceil(dim / 16)
    directions: int = 2             # 2: forward + reverse over the row-major order; 4 adds columns
    kind: str = "mamba1"            # "mamba1" (per-channel A) or "ssd" (one decay per head)
    head_dim: int = 32              # only for kind="ssd"


@dataclass(frozen=True)
class GDNSpec(Spec):
    """Gated DeltaNet mixer in the flash-linear-attention formulation."""
    num_heads: int = 12
    head_k_dim: Optional[int] = None   # None: hidden // num_heads
    head_v_dim: Optional[int] = None   # None: head_k_dim
    conv_size: int = 4
    chunk_size: int = 32  # the op's default: 37 % fewer executed FLOPs than 64 at T=1024 (docs/DESIGN.md)


@dataclass(frozen=True)
class ACTSpec(Spec):
    """Adaptive computation time for patches routed with high confidence."""
    enabled: bool = True
    threshold: float = 0.7        # patches with alpha above this ponder
    max_extra_steps: int = 2
    eps: float = 0.01
