"""Public routing API: the only thing the harness, FLOP counter and pictures use.

    trace(model)                -> one RouteRecord per router, from the last forward
    execution(model, "sparse")  -> context: skip unchosen work ("dense" computes every branch)
    force(model, "both")        -> context: every router takes one fixed choice (or a policy)
    set_tau(model, tau)         -> set the Gumbel temperature of every router
    summarize(model)            -> per router: share of each choice, entropy, load balance
    budget(model, 0.6, inputs)  -> context: eval routing spends ~60 % of the full form's FLOPs
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Optional, Union

import torch
import torch.nn as nn

from .blocks.router import EXECUTION_MODES, Route, RouteRecord, Router

__all__ = ["Router", "Route", "RouteRecord", "routers", "trace", "execution", "force",
           "set_tau", "get_tau", "summarize", "random_policy", "budget", "fit_budget", "fit_budgets", "budget_range"]


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
    saved = [r.execution for r in rs]
    for r in rs:
        r.execution = mode
    try:
        yield model
    finally:
        for r, s in zip(rs, saved):
            r.execution = s


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
    saved = [r.forced for r in rs]
    for r, p in zip(rs, policies):
        r.forced = p
    try:
        yield model
    finally:
        for r, s in zip(rs, saved):
            r.forced = s


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


def budget(model: nn.Module, fraction, inputs: Optional[torch.Tensor] = None, **kwargs):
    """Context manager: every router's eval threshold moves so that the model executes about
    `fraction` of its full form's FLOPs on `inputs` (see `zoo.budget`); yields the fit. A fit
    from `fit_budget` is applied as it is."""
    from .budget import budget as _budget  # the knob needs the FLOP counter, which imports this module
    return _budget(model, fraction, inputs, **kwargs)


def fit_budget(model: nn.Module, fraction: float, inputs: torch.Tensor, **kwargs):
    from .budget import fit_budget as _fit
    return _fit(model, fraction, inputs, **kwargs)


def fit_budgets(model: nn.Module, fractions, inputs: torch.Tensor, **kwargs):
    """`fit_budget` for several fractions at once (one shared scan of the threshold shift)."""
    from .budget import fit_budgets as _fit
    return _fit(model, fractions, inputs, **kwargs)


def budget_range(model: nn.Module, inputs: torch.Tensor):
    from .budget import budget_range as _range
    return _range(model, inputs)
