"""The inference compute knob: one trained checkpoint, a whole accuracy-against-compute curve.

    with zoo.routing.budget(model, 0.6, calibration_inputs) as fit:
        model(x)            # executes ~60 % of the full form's FLOPs (fit.fraction on calibration)

Every router's eval decision becomes argmax(logits - shift * costs / max(costs)): one scalar
`shift` for the whole model moves each router's threshold towards its cheaper (shift > 0) or
dearer (shift < 0) choices, by what they cost (`Router.set_costs`). The shift is found by
bisection on the calibration inputs, so that the executed FLOPs (`zoo.flops.count_flops`, sparse
execution) come closest to `fraction` of the full form's: the dense reference of
`zoo.flops.flops_report` (every branch for every item, each router at its full choice).
Decisions stay deterministic and per item: the shift is a constant, not noise.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Tuple

import torch
import torch.nn as nn

from . import flops as _flops
from . import routing

__all__ = ["BudgetFit", "budget", "budget_range", "fit_budget"]


@dataclass(frozen=True)
class BudgetFit:
    target: float           # requested fraction of the full form's FLOPs
    shift: float            # the cost shift applied to every router's logits
    fraction: float         # executed / full FLOPs achieved on the calibration inputs
    reachable: Tuple[float, float]  # (all cheapest, all dearest) fractions on those inputs
    full_flops: int         # the full form's FLOPs on the calibration inputs


def _routers(model: nn.Module):
    rs = routing.routers(model)
    if not rs:
        raise ValueError(f"{type(model).__name__} has no routers: a budget needs a routed model")
    if any(r.spec.mode == "soft" for r in rs):
        raise ValueError(f"{type(model).__name__} routes softly (every branch merged): there is no "
                         "decision for a budget to move")
    return rs


@contextlib.contextmanager
def _shifted(rs, shift: float) -> Iterator[None]:
    saved = [r.cost_shift for r in rs]
    for r in rs:
        r.cost_shift = float(shift)
    try:
        yield
    finally:
        for r, s in zip(rs, saved):
            r.cost_shift = s


def _executed(model: nn.Module, rs, inputs: torch.Tensor, shift: float) -> int:
    with _shifted(rs, shift), routing.execution(model, "sparse"):
        return _flops.count_flops(model, inputs)


def _full(model: nn.Module, inputs: torch.Tensor) -> int:
    with routing.execution(model, "dense"), routing.force(model, _flops.full_policy):
        return _flops.count_flops(model, inputs)


def _extreme_shift(rs) -> float:
    """A shift that sends every item to its cheapest choice: logits are clamped to
    +-logit_clamp, so a relative cost gap g needs a shift of 2 * clamp / g."""
    shift = 1.0
    for r in rs:
        c = (r.costs / r.costs.max()).tolist()
        gaps = [abs(a - b) for a in c for b in c if abs(a - b) > 0]
        if gaps:
            shift = max(shift, 2.0 * r.spec.logit_clamp / min(gaps) + 1.0)
    return shift


def budget_range(model: nn.Module, inputs: torch.Tensor) -> Tuple[float, float]:
    """(fraction with every item at its cheapest choice, with every item at its dearest)."""
    rs = _routers(model)
    full, big = _full(model, inputs), _extreme_shift(rs)
    return _executed(model, rs, inputs, big) / full, _executed(model, rs, inputs, -big) / full


def fit_budget(model: nn.Module, fraction: float, inputs: torch.Tensor, tol: float = 0.005,
               max_steps: int = 40) -> BudgetFit:
    """The shift whose executed FLOPs on `inputs` come closest to `fraction` of the full form's.

    ValueError for a fraction outside (0, 1], a model without decisions to move, or a fraction
    the model cannot reach on these inputs (the message gives the reachable range).
    """
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
        raise ValueError(f"a budget is a fraction of the full form's FLOPs in (0, 1], got {fraction!r}")
    rs = _routers(model)
    fraction = float(fraction)
    full, big = _full(model, inputs), _extreme_shift(rs)
    lo_f, hi_f = _executed(model, rs, inputs, big) / full, _executed(model, rs, inputs, -big) / full
    slack = 0.05  # the knob's promise: within +-0.05 of the target on the calibration inputs
    if fraction < lo_f - slack or fraction > hi_f + slack:
        raise ValueError(f"budget {fraction:g} is out of reach for {type(model).__name__} on these inputs: "
                         f"it executes {lo_f:.3f} to {hi_f:.3f} of its full form's FLOPs")
    # executed FLOPs fall as the shift grows: bisect between the dearest and cheapest ends
    lo, hi = -big, big                      # f(lo) = hi_f >= target >= lo_f = f(hi)
    best = min(((abs(hi_f - fraction), -big, hi_f), (abs(lo_f - fraction), big, lo_f)))
    for _ in range(max_steps):
        mid = 0.5 * (lo + hi)
        f = _executed(model, rs, inputs, mid) / full
        best = min(best, (abs(f - fraction), mid, f))
        if best[0] <= tol:
            break
        if f > fraction:
            lo = mid
        else:
            hi = mid
    return BudgetFit(fraction, best[1], best[2], (lo_f, hi_f), full)


@contextlib.contextmanager
def budget(model: nn.Module, fraction: float, inputs: torch.Tensor, **kwargs) -> Iterator[BudgetFit]:
    """Context: eval routing of `model` spends ~`fraction` of its full form's FLOPs (fitted on
    `inputs`, see `fit_budget`); yields the `BudgetFit`. Training forwards are unaffected."""
    fit = fit_budget(model, fraction, inputs, **kwargs)
    with _shifted(routing.routers(model), fit.shift):
        yield fit
