"""Public routing API: the only thing the harness, FLOP counter and pictures use.

    trace(model)                -> one RouteRecord per router, from the last forward
    execution(model, "sparse")  -> context: run each branch on the items that chose it ("dense": every branch)
    force(model, "both")        -> context: every router takes one fixed choice (or a policy)
    set_tau(model, tau)         -> set the Gumbel temperature of every router
    summarize(model)            -> per router: share of each choice, entropy, load balance
    training_mode(model)        -> {"train_execution": "dense" | "sparse", "capacity": float or None}
    capacity_agreement(model, *inputs) -> per capacity router: share of eval threshold decisions
                                   that differ from the top-k it trains with, share above threshold
    flops_budget(model, 0.6, inputs) -> context: eval routing spends ~60 % of the full form's FLOPs
                                   (`budget`: its old name, deprecated)
"""
from __future__ import annotations

from .layers.router import Route, RouteRecord, Router
from .layers.router_controls import (capacity_agreement, execution, force, get_tau, random_policy, routers, set_tau,
                                     summarize, trace, training_mode)
# the compute knob (it counts FLOPs, so it lives above zoo.flops; re-exported here)
from .budget import BudgetFit, budget, budget_range, fit_budget, fit_budgets, flops_budget

__all__ = ["Router", "Route", "RouteRecord", "routers", "trace", "execution", "force",
           "set_tau", "get_tau", "summarize", "random_policy", "flops_budget", "budget", "fit_budget", "fit_budgets", "budget_range",
           "BudgetFit", "training_mode", "capacity_agreement"]
