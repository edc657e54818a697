"""What every zoo model shares: the timm vision contract and the causal-LM contract.

Families subclass `ZooVisionModel` or `ZooCausalLM`, set `family` (the name their
`zoo.layers.family.Family` registers) and `objectives`, and implement `forward_features` (vision)
or `forward` (LM); `aux_losses()` is written once, here. A family whose registered static form
is not its always-full model overrides `static_reference`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from .objectives import Objective
from .router import LastForward, Route, Router, check_budget_target
from ..specs import Spec

__all__ = ["VisionSpec", "LMSpec", "ZooVisionModel", "ZooCausalLM",
           "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD", "init_linear", "drop_path_rates", "take_indices"]

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VisionSpec(Spec):
    num_classes: int = 1000
    in_chans: int = 3
    img_size: int = 224
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD
    drop_rate: float = 0.0
    # stochastic depth (timm's drop_path_rate): each residual branch is dropped per sample in
    # training, with a rate rising linearly from 0 at the first block to this at the last
    drop_path_rate: float = 0.0

    def __post_init__(self):
        if not 0.0 <= float(self.drop_path_rate) < 1.0:
            raise ValueError(f"drop_path_rate must lie in [0, 1), got {self.drop_path_rate}")
        for name in ("num_classes", "in_chans", "img_size"):
            if int(getattr(self, name)) < (0 if name == "num_classes" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        # an in_chans override keeps RGB statistics meaningful: one grey value per channel
        for name in ("mean", "std"):
            stats = tuple(float(v) for v in getattr(self, name))
            if len(stats) != self.in_chans:
                stats = (sum(stats) / len(stats),) * self.in_chans
            object.__setattr__(self, name, stats)


@dataclass(frozen=True)
class LMSpec(Spec):
    vocab_size: int = 49152
    max_seq_len: int = 1024

    def __post_init__(self):
        if self.vocab_size < 2 or self.max_seq_len < 1:
            raise ValueError(f"vocab_size must be >= 2 and max_seq_len >= 1, got "
                             f"{self.vocab_size}, {self.max_seq_len}")


class _ZooModel(nn.Module):
    family: str = ""
    task: str = ""
    #: the routing objectives this family trains with (`zoo.layers.objectives`)
    objectives: Tuple[Objective, ...] = ()

    def __init__(self):
        super().__init__()
        # family-specific graph tensors of the last forward (ESH's variance and ponder terms);
        # the routes themselves stay on their routers (`Router.last_route`)
        self._last = LastForward()
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch: in training, each block's activations are recomputed in the backward
        instead of kept. The recompute replays the block's random draws (Gumbel noise, drop
        path), so it takes the same routes and gives the same gradients."""
        self.grad_checkpointing = bool(enable)

    def run_block(self, block: nn.Module, *args):
        """block(*args), checkpointed when grad checkpointing is on and gradients are taken."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint
            return checkpoint(block, *args, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), _stats_kept(block)))
        return block(*args)

    @classmethod
    def routing_of(cls, spec: Spec) -> str:
        """'sample', 'patch', 'token' or 'static' for a spec of this class."""
        raise NotImplementedError

    def _all_routers(self) -> List[Router]:
        # (not `routers`: Exp11 keeps its routers in a ModuleList of that name)
        return [m for m in self.modules() if isinstance(m, Router)]

    def last_routes(self) -> List[Route]:
        """The routes of the last forward, in module order, with their graphs (for aux losses)."""
        return [r.last_route for r in self._all_routers() if r.last_route is not None]

    def non_router_modules(self) -> Iterator[nn.Module]:
        """Every module outside the routers: routers keep their own (zero) init."""
        inside = {id(m) for r in self._all_routers() for m in r.modules()}
        return (m for m in self.modules() if id(m) not in inside)

    def aux_losses(self) -> Dict[str, torch.Tensor]:
        """Unweighted auxiliary losses of the last forward, one per objective that has something
        to add (empty for static models and before any forward)."""
        out = {}
        for objective in self.objectives:
            value = objective.loss(self)
            if value is not None:
                out[objective.name] = value
        return out

    def last_value(self, name: str):
        """A family's own value from the last forward (ESH's alphas, ponder cost), or None."""
        return getattr(self._last, name, None)

    #: how `zoo.static_reference` names this family's static reference ({arch}: the routed
    #: model's name, {static_form}: its registered static form)
    static_reference_label = "{static_form}"

    def static_reference(self, build_static_form: Callable[[], nn.Module]) -> nn.Module:
        """This model's always-full static reference: the model without routing that computes
        everything its full path computes (docs/DESIGN.md, glossary). By default the registered
        static form, as `build_static_form()` builds it at this model's input shapes, given this
        model's weights wherever a name and shape match; a family whose static form is not
        always-full overrides this (Exp11). `zoo.static_reference(arch, net)` calls it."""
        ref = build_static_form()
        own = ref.state_dict()
        ref.load_state_dict({k: v for k, v in self.state_dict().items() if k in own and own[k].shape == v.shape},
                            strict=False)
        return ref

    def check_budget_target(self) -> None:
        """ValueError (one line, naming the floor) when the spec's compute target lies
        below the share of compute its routers can reach (`zoo.layers.router.budget_floor`)."""
        router_spec = getattr(self.spec, "router", None)
        if router_spec is None or router_spec.mode == "soft":
            return
        check_budget_target(self._all_routers(), router_spec.compute_target, type(self).__name__)


GLOBAL_POOLS = ("avg", "max", "avgmax", "")


class ZooVisionModel(_ZooModel):
    task = "image-classification"
    #: total downsampling of forward_features; inputs must be divisible by it
    stride: int = 1

    def __init__(self, spec: VisionSpec):
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes
        self.in_chans = spec.in_chans
        self.drop_rate = spec.drop_rate
        self.global_pool = "avg"

    @classmethod
    def default_input_size(cls, spec: VisionSpec) -> tuple:
        return (spec.in_chans, spec.img_size, spec.img_size)

    def model_cfg(self) -> dict:
        """The cfg fields this model itself decides (input, classes, layers), and ImageNet's usual
        evaluation for a model without weights; `zoo.pretrained.model_cfg` adds a tag's."""
        from ..pretrained import UNTAGGED
        cfg = dict(
            input_size=self.default_input_size(self.spec), mean=tuple(self.spec.mean),
            std=tuple(self.spec.std), num_classes=self.num_classes, first_conv=self.first_conv,
            classifier="head", architecture=self.family, **UNTAGGED,
        )
        pool = self.pool_size()
        if pool is not None:
            cfg["pool_size"] = pool
        return cfg

    @property
    def pretrained_cfg(self) -> dict:
        """timm's pretrained_cfg, one dict per model as timm keeps it (editable, and assignable:
        `build_model` sets it with the tag's fields and the caller's overlay)."""
        cfg = self.__dict__.get("_pretrained_cfg")
        if cfg is None:  # built outside build_model: what the model itself says
            cfg = self.__dict__["_pretrained_cfg"] = self.model_cfg()
        return cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, value) -> None:
        self.__dict__["_pretrained_cfg"] = dict(value)

    # timm's older name for the same dict
    default_cfg = pretrained_cfg

    first_conv: str = "stem.0"
    feature_info: List[dict] = []   # per stage: num_chs, reduction, module (set by each family)

    def _intermediates(self, x: torch.Tensor):
        """(per-stage feature maps NCHW, in feature_info order; forward_features' output)."""
        raise NotImplementedError

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's backbone API: the stage outputs `indices` selects (None: all; n: the last n; a
        list: those, negatives from the end), and unless intermediates_only, forward_features'
        output first. Every stage runs either way (stop_early changes nothing: the routed blocks
        are cheap to finish), and `norm` is accepted for timm's signature (stage outputs are
        the blocks' own)."""
        if output_fmt != "NCHW":
            raise ValueError(f"{type(self).__name__} gives NCHW intermediates, not {output_fmt!r}")
        take = take_indices(len(self.feature_info), indices)
        stages, final = self._intermediates(x)
        picked = [stages[i] for i in take]
        return picked if intermediates_only else (final, picked)

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """timm's backbone pruning, for a family whose levels are `stages.<i>` (ESH-Vision), with
        perhaps a stem level before them (`<seq>.<k>` inside a Sequential stem): what the
        deepest level `indices` takes does not need goes. Later stages; past a stem level, the
        rest of the stem and `embed_norm`; the final `norm` (prune_norm, or when stages went:
        it was sized for the last one); the head (prune_head, or when stages went). Returns the
        kept indices; forward_features then ends at the deepest kept level."""
        stages = getattr(self, "stages", None)
        if not isinstance(stages, nn.ModuleList):
            raise NotImplementedError(f"{type(self).__name__} has no stages to prune")
        take = take_indices(len(self.feature_info), indices)
        keep = max(take)
        level = self.feature_info[keep]["module"]
        n = int(level.split(".")[1]) + 1 if level.startswith("stages.") else 0
        prune_end = n < len(stages)
        del stages[n:]
        if n == 0:  # a stem level: the stem's later layers and the embedding norm follow it
            seq, k = level.rsplit(".", 1)
            stem = self.get_submodule(seq)
            assert isinstance(stem, nn.Sequential), f"{seq} holds a stem level, so it must be a Sequential"
            for j in range(int(k) + 1, len(stem)):
                stem[j] = nn.Identity()
            if hasattr(self, "embed_norm"):
                self.embed_norm = nn.Identity()
        if hasattr(self, "norm") and (prune_norm or prune_end):
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[keep]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def pool_size(self) -> Optional[tuple]:
        s = self.spec.img_size // self.stride
        return (s, s) if self.stride > 1 else None

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images back to pixel values in [0, 1] (x * std + mean, clamped)."""
        from ..ops.entropy import unnormalize
        return unnormalize(x, self.spec.mean, self.spec.std)

    def check_input(self, x: torch.Tensor) -> None:
        """One-line ValueErrors for inputs the model cannot take, before any shape error inside."""
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects (B, C, H, W) images, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"{type(self).__name__} expects {self.in_chans} input channels "
                             f"(in_chans={self.in_chans}), got {x.shape[1]}")
        H, W = x.shape[-2:]
        if H % self.stride or W % self.stride:
            raise ValueError(f"{type(self).__name__} needs image sides divisible by its stride "
                             f"{self.stride}, got {H}x{W}")

    # head: pooled features -> (dropout) -> linear classifier, as in timm
    def _build_head(self, num_features: int) -> None:
        self.num_features = self.head_hidden_size = num_features
        self.head_drop = nn.Dropout(self.drop_rate)
        self.head = nn.Linear(num_features, self.num_classes) if self.num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def set_global_pool(self, global_pool: str) -> None:
        """timm's pool types that keep num_features: avg, max, avgmax (their mean), or '' (none:
        forward_head then takes pooled or unpooled features as given)."""
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(map(repr, GLOBAL_POOLS))}, got {global_pool!r}")
        self.global_pool = global_pool

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            self.set_global_pool(global_pool)
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.head = (nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()).to(device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> unpooled features (B, num_features, h, w)."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(-2, -1))
        elif self.global_pool == "max":
            x = x.amax(dim=(-2, -1))
        elif self.global_pool == "avgmax":
            x = 0.5 * (x.mean(dim=(-2, -1)) + x.amax(dim=(-2, -1)))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ZooCausalLM(_ZooModel):
    task = "causal-lm"

    def __init__(self, spec: LMSpec):
        super().__init__()
        self.spec = spec
        self.vocab_size = spec.vocab_size
        self.max_seq_len = spec.max_seq_len

    @classmethod
    def default_input_size(cls, spec: LMSpec) -> tuple:
        return (spec.max_seq_len,)

    def check_input(self, input_ids: torch.Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"{type(self).__name__} expects (B, T) integer token ids, got "
                             f"{tuple(input_ids.shape)} {input_ids.dtype}")
        if input_ids.shape[1] > self.max_seq_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_seq_len={self.max_seq_len}")
        if torch.compiler.is_compiling():
            # reading the ids on the host would break a traced graph: checked on the device instead
            torch._assert_async((input_ids.min() >= 0) & (input_ids.max() < self.vocab_size)
                                if input_ids.numel() else torch.ones((), dtype=torch.bool))
            return
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")


@contextlib.contextmanager
def _stats_kept(block: nn.Module):
    """The recompute leaves BatchNorm running statistics as the forward left them: without
    this, every checkpointed step would update them twice."""
    norms = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    saved = [[t.clone() for t in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def init_linear(m: nn.Linear, std: float = 0.02) -> None:
    """timm's usual Linear init: truncated normal weights, zero bias."""
    nn.init.trunc_normal_(m.weight, std=std)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def drop_path_rates(rate: float, depth: int) -> List[float]:
    """timm's stochastic-depth rule: 0 at the first block, rising linearly to `rate` at the last."""
    # plain floats: torch.linspace would make meta tensors under a meta-device construction
    return [float(rate) * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


def take_indices(n: int, indices) -> List[int]:
    """timm's feature_take_indices, with a one-line ValueError for an index out of range."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"last-n out_indices {indices} is out of range: this model has {n} stages (1 to {n})")
        return list(range(n - indices, n))
    out = []
    for i in indices:
        if not -n <= int(i) < n:
            raise ValueError(f"out_indices {list(indices)} has {i}, out of range for {n} stages "
                             f"(0 to {n - 1}, or -{n} to -1)")
        out.append(int(i) % n)
    return out
