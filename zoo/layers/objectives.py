"""Routing objectives: the auxiliary losses a routed model trains with, one object each.

An `Objective` has a name, a default weight, an optional warm-up ramp and its loss, read from
what the model's last forward left (its routes, and a family's own values such as ESH's alphas
and ponder cost, `_ZooModel.last_value`). A family lists the objectives it trains with in its
`objectives` class attribute; `aux_losses()` is written once, in the base model, and the
harness takes each objective's default weight and ramp from here, so a suite config names only
the weights it overrides (docs/DESIGN.md, "Routing objectives").

Losses are unweighted and never part of the logits or of an evaluation loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch

from ..ops.gating import alpha_variance_loss, load_balance_loss
from .router import routes_budget_loss

__all__ = ["Objective", "OBJECTIVES", "BUDGET", "LOAD_BALANCE", "GATE_ENTROPY", "ALPHA_VARIANCE", "PONDER",
           "register_objective"]


@dataclass(frozen=True)
class Objective:
    name: str
    weight: float                                   # the default weight in the training loss
    loss: Callable[[torch.nn.Module], Optional[torch.Tensor]]  # None: nothing to add this forward
    # (begin, end) as fractions of training: weight 0 before begin, then a linear ramp to
    # `weight` at end; None: constant
    ramp: Optional[Tuple[float, float]] = None
    doc: str = ""


OBJECTIVES: Dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    if objective.name in OBJECTIVES and OBJECTIVES[objective.name] != objective:
        raise ValueError(f"an objective named {objective.name!r} is already registered")
    OBJECTIVES[objective.name] = objective
    return objective


def _budget(model) -> Optional[torch.Tensor]:
    spec = getattr(model.spec, "router", None)
    routes = model.last_routes()
    if not routes or spec is None or spec.compute_target is None or spec.mode == "soft":
        return None
    return routes_budget_loss(routes, spec.compute_target)


def _load_balance(model) -> Optional[torch.Tensor]:
    routes = model.last_routes()
    if not routes:
        return None
    return torch.stack([load_balance_loss(r.probs, r.decisions) for r in routes]).mean()


def _gate_entropy(model) -> Optional[torch.Tensor]:
    routes = model.last_routes()
    if not routes:
        return None
    # clamp keeps d/dp finite where a probability underflows at low temperature
    return torch.stack([-(r.probs * r.probs.clamp_min(1e-12).log()).sum(-1).mean() for r in routes]).mean()


def _alpha_variance(model) -> Optional[torch.Tensor]:
    alphas = model.last_value("alphas")
    return alpha_variance_loss(alphas) if alphas else None


def _ponder(model) -> Optional[torch.Tensor]:
    return model.last_value("ponder")


BUDGET = register_objective(Objective(
    "budget", 1.0, _budget,
    doc="(expected share of the full routed compute - RouterSpec.compute_target)^2, over every routed item "
        "(zoo.ops.gating.budget_loss); only with a training budget and hard or Gumbel routing"))
# 0 by default: every routed family here chooses between nested options (DHVN's "both" holds
# "conv", Exp11's softmax token keeps its GDN output), where a balance loss pins routing at equal
# shares instead of learning which items need more compute
LOAD_BALANCE = register_objective(Objective(
    "load_balance", 0.0, _load_balance, doc="the Switch load-balance loss N * sum_i f_i P_i, mean over routers"))
GATE_ENTROPY = register_objective(Objective(
    "gate_entropy", 0.01, _gate_entropy, doc="mean entropy of the router probabilities"))
ALPHA_VARIANCE = register_objective(Objective(
    "alpha_variance", 0.1, _alpha_variance,
    doc="minus the per-image spatial variance of alpha (zoo.ops.gating.alpha_variance_loss)"))
# the seed: 0 until step 15k, then up to 0.01; here 0 for the first quarter of training, then a
# linear ramp to its weight at the half
PONDER = register_objective(Objective(
    "ponder", 0.01, _ponder, ramp=(0.25, 0.5), doc="ACT's mean ponder cost N + R (zoo.families.eshvision.act)"))
