"""Model-wide controls over every Router of a model: find them, read their last decisions,
set how they execute, force their choices, set their temperature. `zoo.routing` is the public
face of these; `zoo.flops` and `zoo.budget` use them from here (below both in the import order).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Optional, Union

import torch
import torch.nn as nn

from .router import EXECUTION_MODES, RouteRecord, Router

__all__ = ["routers", "trace", "execution", "force", "random_policy", "set_tau", "get_tau", "summarize", "setting"]


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
    """Set `attr` of each router to its value for the duration, then restore what it was."""
    saved = [getattr(r, attr) for r in rs]
    for r, v in zip(rs, values):
        setattr(r, attr, v)
    try:
        yield
    finally:
        for r, v in zip(rs, saved):
            setattr(r, attr, v)


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
