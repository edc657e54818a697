"""Routing against the fixed architectures a user could pick instead: the static plans.

A routed model's static plans (`static_plans` in its records, from `zoo.model_info`) are the
same network with each routed layer on one fixed choice and no routers, trained under the
suite's recipe (docs/DESIGN.md, "Static plans"). The honest saving of routing is measured
against the cheapest of them that is as good:

    a plan is *as good* when its mean quality is within one seed std of the routed model's mean,
    or better (std of the routed model; 0 with one seed);
    saved vs best static plan = 1 - executed FLOPs / that plan's executed FLOPs (negative when
    routing costs more).

When no plan on the board is as good, there is no saving to state: routing is better than
every static plan, and the page says so. Quality is the task's `quality` metric (top-1 for
images, bits/byte for LMs, query accuracy for associative recall), in the direction of its
primary metric.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["as_good", "best_static_plan", "with_static_plan_savings", "frontier", "verdicts"]


def _quality(row, spec) -> Tuple[Optional[float], float]:
    stat = row.metrics.get(spec.quality) if hasattr(row, "metrics") else row.metric
    if stat is None or stat.mean is None:
        return None, 0.0
    return stat.mean, stat.std or 0.0


def as_good(candidate: float, routed_mean: float, routed_std: float, higher_is_better: bool) -> bool:
    """Whether a plan's mean quality is within one std of the routed model's, or better."""
    if higher_is_better:
        return candidate >= routed_mean - routed_std
    return candidate <= routed_mean + routed_std


def best_static_plan(mean: Optional[float], std: float, plans: Sequence, spec) -> Optional[Tuple[str, float]]:
    """(name, executed GFLOPs) of the cheapest plan in `plans` as good as (mean, std), or None."""
    if mean is None:
        return None
    good = []
    for plan in plans:
        q, _ = _quality(plan, spec)
        if q is not None and plan.executed_gflops and as_good(q, mean, std, spec.higher_is_better):
            good.append((plan.executed_gflops, plan.model))
    if not good:
        return None
    gflops, name = min(good)
    return name, gflops


def with_static_plan_savings(rows: List, spec) -> List:
    """Each routed row with `best_static` and `saved_vs_best_static` filled in from the plans on
    the same board; rows without plans on the board are left as they are."""
    by_name = {r.model: r for r in rows}
    out = []
    for r in rows:
        plans = [by_name[p] for p in r.static_plans if p in by_name]
        if not plans:
            out.append(r)
            continue
        mean, std = _quality(r, spec)
        best = best_static_plan(mean, std, plans, spec)
        saved = 1.0 - r.executed_gflops / best[1] if best and r.executed_gflops else None
        out.append(dataclasses.replace(r, plans_on_board=tuple(p.model for p in plans),
                                       best_static=best[0] if best else None, saved_vs_best_static=saved))
    return out


def frontier(points: Sequence[Tuple[float, float]], higher_is_better: bool) -> List[Tuple[float, float]]:
    """The Pareto frontier of (cost, quality) points, by cost: the points no other point beats on
    both (cheaper or as cheap, and better or as good, one of them strictly)."""
    best = None
    out = []
    for cost, q in sorted(points, key=lambda p: (p[0], -p[1] if higher_is_better else p[1])):
        if best is None or (q > best if higher_is_better else q < best):
            out.append((cost, q))
            best = q
    return out


def verdicts(rows: Sequence, spec, fmt) -> List[str]:
    """One plain sentence per routed row that has static plans on the board."""
    lines = []
    for r in rows:
        if not getattr(r, "plans_on_board", ()):
            continue
        if r.best_static is None:
            lines.append(f"- `{r.model}`: no static plan on this board reaches its {spec.quality_name} "
                         f"({fmt(r)}); routing is better than every trained plan here.")
        elif r.saved_vs_best_static is not None and r.saved_vs_best_static > 0:
            lines.append(f"- `{r.model}` executes {100 * r.saved_vs_best_static:.1f}% fewer FLOPs than "
                         f"`{r.best_static}`, the cheapest static plan as good as it: routing pays here.")
        elif r.saved_vs_best_static is not None:
            lines.append(f"- `{r.model}` executes {-100 * r.saved_vs_best_static:.1f}% more FLOPs than "
                         f"`{r.best_static}`, a static plan as good as it: routing does not pay here.")
    return lines
