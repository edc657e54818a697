"""The FLOPs budget, the inference compute knob: one trained checkpoint, a whole
accuracy-against-compute curve (docs/DESIGN.md, glossary: not the training compute target).

    with zoo.routing.flops_budget(model, 0.6, calibration_inputs) as fit:
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
import math
import warnings
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import flops as _flops
from .layers import router_controls as routing

__all__ = ["BudgetFit", "flops_budget", "budget", "budget_range", "fit_budget", "fit_budgets"]


@dataclass(frozen=True)
class BudgetFit:
    target: float           # requested fraction of the full form's FLOPs
    shift: float            # the cost shift applied to every router's logits
    fraction: float         # executed / full FLOPs achieved on the calibration inputs
    reachable: Tuple[float, float]  # (all cheapest, all dearest) fractions on those inputs
    full_flops: int         # the full form's FLOPs on the calibration inputs

    def __post_init__(self):
        # a NaN shift makes every logit NaN, and argmax then sends every item to choice 0 without
        # a word; a fit is applied as it is (flops_budget), so it is checked where it is made
        if not _finite(self.shift):
            raise ValueError(f"BudgetFit.shift must be a finite number, got {self.shift!r}")
        if not (_finite(self.target) and 0.0 < float(self.target) <= 1.0):
            raise ValueError(f"BudgetFit.target is a fraction of the full form's FLOPs in (0, 1], "
                             f"got {self.target!r}")


def _finite(x) -> bool:
    """A finite real number (a numpy or 0-d torch scalar too)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _routers(model: nn.Module):
    rs = routing.routers(model)
    if not rs:
        raise ValueError(f"{type(model).__name__} has no routers: a budget needs a routed model")
    if any(r.spec.mode == "soft" for r in rs):
        raise ValueError(f"{type(model).__name__} routes softly (every branch merged): there is no "
                         "decision for a budget to move")
    return rs


def _shifted(rs, shift: float):
    return routing.setting(rs, "cost_shift", [float(shift)] * len(rs))


def _executed(model: nn.Module, rs, inputs: torch.Tensor, shift: float) -> int:
    with _shifted(rs, shift), routing.execution(model, "sparse"):
        return _flops.count_flops(model, inputs)


def _full(model: nn.Module, inputs: torch.Tensor) -> int:
    return _flops.dense_flops(model, inputs)  # unshifted: the leaderboard's denominator too


def _extreme_shift(rs) -> float:
    """A shift that sends every item to its cheapest choice: logits are clamped to
    +-logit_clamp, so a relative cost gap g needs a shift of 2 * clamp / g. A fixed-capacity
    router compares a score (a logsumexp of logits minus a logit, within +-(2 clamp + log C))
    with a threshold in the same range (`zoo.layers.capacity`), so it needs (4 clamp + log C) / g."""
    shift = 1.0
    for r in rs:
        c = (r.costs / r.costs.max()).tolist()
        gaps = [abs(a - b) for a in c for b in c if abs(a - b) > 0]
        span = 2.0 * r.spec.logit_clamp
        if r.spec.capacity is not None:
            span = 4.0 * r.spec.logit_clamp + math.log(len(c))
        if gaps:
            shift = max(shift, span / min(gaps) + 1.0)
    return shift


def _check_inputs(inputs) -> None:
    """Calibration needs at least one item: a batch of 0 has no FLOPs to divide by (it failed deep
    in a block's reshape)."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 or inputs.shape[0] == 0:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"a budget is fitted on a batch of calibration inputs with at least one item, got {shape}")


def budget_range(model: nn.Module, inputs: torch.Tensor) -> Tuple[float, float]:
    """(fraction with every item at its cheapest declared choice, with every item at its dearest).

    The first need not be the smaller: a choice's declared cost leaves out what it triggers on its
    own (ESH's pondering follows alpha, and moving every patch to attention, the cheaper choice
    at 49 patches, raises alpha past the ponder threshold), so the shipped eshvision_xs executes
    about 1.14 of its dense reference at the "cheapest" end and 0.79 at the "dearest". `fit_budget`
    scans the whole range either way."""
    rs = _routers(model)
    _check_inputs(inputs)
    full, big = _full(model, inputs), _extreme_shift(rs)
    return _executed(model, rs, inputs, big) / full, _executed(model, rs, inputs, -big) / full


def fit_budget(model: nn.Module, fraction: float, inputs: torch.Tensor, tol: float = 0.005) -> BudgetFit:
    """The shift whose executed FLOPs on `inputs` come closest to `fraction` of the full form's.

    ValueError for a fraction outside (0, 1], a model without decisions to move, or a fraction
    the model cannot reach on these inputs (the message gives the reachable range).
    """
    return fit_budgets(model, [fraction], inputs, tol)[0]


def fit_budgets(model: nn.Module, fractions: Sequence[float], inputs: torch.Tensor,
                tol: float = 0.005, grid: int = 33, refine: int = 12) -> List[BudgetFit]:
    """`fit_budget` for several fractions, sharing one scan of the shift.

    Executed FLOPs need not fall monotonically as the shift grows: in ESH-Vision the patches
    that switch first from attention to the state-space branch are the hesitant ones, which
    did not ponder, and the SSM costs them more. So the shift is scanned on a grid first
    (cubically spaced, dense near 0), and each target is then bisected inside the grid interval
    that brackets it; the closest point seen wins.
    """
    for fraction in fractions:
        if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
            raise ValueError(f"a budget is a fraction of the full form's FLOPs in (0, 1], got {fraction!r}")
    rs = _routers(model)
    _check_inputs(inputs)
    full, big = _full(model, inputs), _extreme_shift(rs)
    f = lambda shift: _executed(model, rs, inputs, shift) / full  # noqa: E731
    shifts = [big * (2.0 * k / (grid - 1) - 1.0) ** 3 for k in range(grid)]
    scan = [(sh, f(sh)) for sh in shifts]
    lo_f, hi_f = min(v for _, v in scan), max(v for _, v in scan)
    slack = 0.05  # the knob's promise: within +-0.05 of the target on the calibration inputs
    fits = []
    for fraction in map(float, fractions):
        if fraction < lo_f - slack or fraction > hi_f + slack:
            raise ValueError(f"budget {fraction:g} is out of reach for {type(model).__name__} on these "
                             f"inputs: it executes {lo_f:.3f} to {hi_f:.3f} of its full form's FLOPs")
        seen = list(scan)
        for (a, fa), (b, fb) in zip(scan, scan[1:]):
            if min(abs(v - fraction) for _, v in seen) <= tol:
                break
            if min(fa, fb) <= fraction <= max(fa, fb) and fa != fb:
                for _ in range(refine):
                    mid = 0.5 * (a + b)
                    fm = f(mid)
                    seen.append((mid, fm))
                    if abs(fm - fraction) <= tol:
                        break
                    if (fm - fraction) * (fa - fraction) > 0:
                        a, fa = mid, fm
                    else:
                        b, fb = mid, fm
        # the closest point; among equally close ones the shift nearest 0 (least moved thresholds)
        shift, achieved = min(seen, key=lambda p: (abs(p[1] - fraction), abs(p[0])))
        fits.append(BudgetFit(fraction, shift, achieved, (lo_f, hi_f), full))
    return fits


@contextlib.contextmanager
def flops_budget(model: nn.Module, fraction, inputs: Optional[torch.Tensor] = None, **kwargs) -> Iterator[BudgetFit]:
    """Context: eval routing of `model` spends ~`fraction` of its full form's FLOPs (fitted on
    `inputs`, see `fit_budget`); yields the `BudgetFit`. A `BudgetFit` from an earlier fit is
    applied as it is (no inputs needed). Training forwards are unaffected."""
    if isinstance(fraction, BudgetFit):
        fit = fraction
    elif inputs is None:
        raise ValueError("a budget is fitted on calibration inputs: pass inputs (or a BudgetFit)")
    else:
        fit = fit_budget(model, fraction, inputs, **kwargs)
    with _shifted(_routers(model), fit.shift):
        yield fit


def budget(model: nn.Module, fraction, inputs: Optional[torch.Tensor] = None, **kwargs):
    """Deprecated name of `flops_budget`, kept for one release."""
    warnings.warn("zoo.routing.budget is now zoo.routing.flops_budget; the old name goes in the next release",
                  DeprecationWarning, stacklevel=2)
    return flops_budget(model, fraction, inputs, **kwargs)
