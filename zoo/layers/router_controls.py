"""Model-wide controls over every Router of a model: find them, read their last decisions,
set how they execute, force their choices, set their temperature. `zoo.routing` is the public
face of these; `zoo.flops` and `zoo.budget` use them from here (below both in the import order).

Thread safety: the contexts (execution, force, and `zoo.routing.flops_budget` through `setting`) act
on the calling thread only, so one model can serve concurrent requests, each under its own
controls; they nest, and exiting them in any order restores the defaults. `set_tau` changes a
weight-like buffer and is process-wide; `trace` reads the last forward of whichever thread ran
one last (a request that needs its own records runs its forward and `trace` under one lock).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Optional, Union

import torch
import torch.nn as nn

from . import capacity, router_state
from .router import EXECUTION_MODES, RouteRecord, Router
from .router_state import Control

__all__ = ["routers", "trace", "execution", "force", "random_policy", "set_tau", "get_tau", "summarize", "setting",
           "training_mode", "capacity_agreement"]


def routers(model: nn.Module) -> List[Router]:
    return [m for m in model.modules() if isinstance(m, Router)]


def trace(model: nn.Module) -> List[RouteRecord]:
    """Records of the last forward, in module order. Empty for a static model."""
    return [r.last for r in routers(model) if r.last is not None]


@contextlib.contextmanager
def execution(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    if mode not in EXECUTION_MODES:
        raise ValueError(f"execution mode must be one of {EXECUTION_MODES}, got {mode!r}")
    rs = routers(model)
    with setting(rs, "execution", [mode] * len(rs)):
        yield model


@contextlib.contextmanager
def setting(rs: List[Router], attr: str, values: list) -> Iterator[None]:
    """Set control `attr` (execution, forced or cost_shift) of each router to its value for the
    duration, in the calling thread only: other threads keep theirs, and contexts may nest or
    exit out of order (`router_state`)."""
    if not isinstance(getattr(Router, attr, None), Control):
        raise ValueError(f"{attr!r} is not a routing control; the controls are execution, forced, cost_shift")
    token = router_state.push(attr, dict(zip(rs, values)))
    try:
        yield
    finally:
        router_state.pop(token)


Choice = Union[str, Callable[[Router, torch.Size], torch.Tensor]]


@contextlib.contextmanager
def force(model: nn.Module, choice: Choice) -> Iterator[nn.Module]:
    """Force every router to `choice` (a name in its `choices`), or to a policy callable
    `policy(router, item_shape) -> LongTensor of decisions`."""
    rs = routers(model)
    if not rs:
        raise ValueError(f"{type(model).__name__} has no routers to force")
    policies = []
    for r in rs:
        if callable(choice):
            policies.append(choice)
        elif choice in r.choices:
            policies.append(r.choices.index(choice))
        else:
            raise ValueError(f"router {r.layer!r} has choices {r.choices}; cannot force {choice!r}")
    with setting(rs, "forced", policies):
        yield model


def random_policy(shares: dict, generator: Optional[torch.Generator] = None) -> Callable:
    """A policy for `force`: each item independently takes choice c with probability shares[c]."""
    def policy(router: Router, shape: torch.Size) -> torch.Tensor:
        unknown = set(shares) - set(router.choices)
        if unknown:
            raise ValueError(f"router {router.layer!r} has no choice(s) {sorted(unknown)}")
        p = torch.tensor([float(shares.get(c, 0.0)) for c in router.choices])
        idx = torch.multinomial(p / p.sum(), int(torch.Size(shape).numel()), replacement=True,
                                generator=generator)
        return idx.reshape(shape)
    return policy


def set_tau(model: nn.Module, tau: float) -> None:
    if not float(tau) > 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    for r in routers(model):
        r.set_tau(tau)


def get_tau(model: nn.Module) -> Optional[float]:
    rs = routers(model)
    return float(rs[0].tau) if rs else None


def summarize(model_or_records) -> dict:
    """Per router: granularity, choices, share of each choice, entropy (nats), load balance."""
    records = model_or_records if isinstance(model_or_records, list) else trace(model_or_records)
    return {
        rec.layer: dict(granularity=rec.granularity, choices=list(rec.choices),
                        share=rec.shares(), entropy=rec.entropy(), load_balance=rec.load_balance())
        for rec in records
    }


def training_mode(model: nn.Module) -> dict:
    """How the model's routers train when no context overrides them (docs/DESIGN.md, "Training
    execution and fixed capacity"): {"train_execution": "dense" | "sparse", "capacity": float or
    None}. A soft router trains dense whatever its spec says; a model with no routers gives
    {"train_execution": None, "capacity": None}. Routers that disagree: ValueError."""
    modes = {(("dense" if r.spec.mode == "soft" else r.spec.train_execution), r.spec.capacity): r.layer
             for r in routers(model)}
    if len(modes) > 1:
        listed = "; ".join(f"{layer}: train_execution={m[0]}, capacity={m[1]}" for m, layer in modes.items())
        raise ValueError(f"the routers of {type(model).__name__} train in different modes ({listed})")
    execution_mode, share = next(iter(modes), (None, None))
    return {"train_execution": execution_mode, "capacity": share}


@torch.no_grad()
def capacity_agreement(model: nn.Module, *inputs) -> dict:
    """One eval forward of `model(*inputs)`; per fixed-capacity router (by layer): `disagree`, the
    share of items whose threshold decision (the expensive path or not) differs from the top-k the
    router would take in training on the same scores (k per row, `zoo.layers.capacity.capacity_k`);
    `above`, the share of items above the threshold; `capacity` and `threshold`. Under a FLOPs
    budget the scores are the shifted ones. The model's train/eval state is restored."""
    rs = [r for r in routers(model) if r.spec.capacity is not None]
    if not rs:
        raise ValueError(f"{type(model).__name__} has no fixed-capacity routers (RouterSpec.capacity is None)")
    for r in rs:
        r._graph.capacity_scores = None  # left by `zoo.layers.capacity.decide` at eval
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        model.train(was_training)
    out = {}
    for r in rs:
        score = getattr(r._graph, "capacity_scores", None)
        if score is None:
            continue  # not run by this forward (or forced to a choice)
        chosen = torch.zeros_like(score, dtype=torch.bool)
        chosen.scatter_(-1, capacity.topk_selected(score, capacity.capacity_k(r.spec.capacity, score.shape[-1])), True)
        above = r.last.decisions != r.choices.index(r.cheap_choice)
        out[r.layer] = dict(disagree=float((above != chosen).float().mean()), above=float(above.float().mean()),
                            capacity=float(r.spec.capacity), threshold=float(getattr(r, capacity.THRESHOLD)))
    return out
