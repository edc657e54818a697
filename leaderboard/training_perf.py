"""The "Training" table of the Performance section: each family's routed model's training step in
dense, sparse and fixed-capacity training against its static comparators
(`python -m benchmarks.bench_training_modes` writes the file it reads, perf/training_modes.json).

Efficiency = speedup over the static form / training-FLOPs ratio (static / variant), the measure of
issue 24; its target (>= 0.8 at capacity <= 0.5, at 1 thread, against the static form) is judged on
the rows it applies to, "–" elsewhere, and a figure measured under too much load says so.
"""
from __future__ import annotations

from typing import List, Optional

from .families import family_name, rank
from .perf_tables import DASH, load_cell, ranged, table, trusted

__all__ = ["training_parts", "TRAINING_FILE"]

TRAINING_FILE = "training_modes"
REGENERATE = "python -m benchmarks.bench_training_modes"
ROLES = ("static_form", "static_reference", "cheapest_plan")


def _met(doc: dict, result: dict, row: dict) -> Optional[bool]:
    target = doc.get("target") or {}
    eff = (row["versus"].get("static_form") or {}).get("efficiency")
    if row.get("capacity") is None or eff is None or row["capacity"] > target.get("capacity_at_most", 0.5) \
            or result.get("threads") != target.get("threads", 1):
        return None
    return eff >= target.get("efficiency", 0.8)


def _versus(row: dict, role: str, with_ratio: bool = True) -> List[str]:
    vs = row["versus"].get(role)
    if not vs:
        return [DASH, DASH, DASH][: 3 if with_ratio else 2]
    cells = [ranged(vs["speedup_median"], vs.get("speedup_spread"), suffix="x")]
    if with_ratio:
        cells.append(f"{vs['flops_ratio']:.2f}x" if vs.get("flops_ratio") else DASH)
    cells.append(ranged(vs.get("efficiency"), vs.get("efficiency_spread")))
    return cells


def _variant(row: dict) -> str:
    if row["kind"] == "static":
        roles = ", ".join(r.replace("_", " ") for r in row.get("roles") or [])
        return f"`{row['label']}` ({roles})"
    return row["label"]


def _rows(doc: dict, results: List[dict]) -> List[dict]:
    order = {}
    for r in results:
        for i, row in enumerate(r["variants"]):
            order.setdefault(row["name"], i)
    cells = []
    for r in results:
        for row in r["variants"]:
            share = row.get("expensive_share")
            form, form_ratio, form_eff = _versus(row, "static_form")
            cheap_speedup, cheap_eff = _versus(row, "cheapest_plan", with_ratio=False)
            cells.append(((order[row["name"]], r.get("threads") or 0), {
                "Variant": _variant(row), "Threads": str(r.get("threads", DASH)),
                "Step ms": ranged(row["step_ms"]["median"], row["step_ms"], "{:.1f}"),
                "Train GFLOPs": f"{row['train_flops'] / 1e9:.3f}",
                "Expensive share": DASH if share is None else f"{share:.2f}",
                "vs static form: speedup": form, "FLOPs ratio": form_ratio, "Efficiency": form_eff,
                "≥ 0.8 (cap ≤ 0.5, 1 thread)": trusted(_met(doc, r, row), r.get("load")),
                "vs cheapest plan: speedup": cheap_speedup, "efficiency": cheap_eff,
                "Load": load_cell(r.get("load")),
            }))
    return [c for _, c in sorted(cells, key=lambda kv: kv[0])]


def _tally(doc: dict) -> str:
    judged = [_met(doc, r, row) for r in doc.get("results") or [] for row in r["variants"]]
    judged = [m for m in judged if m is not None]
    return f"{sum(judged)} of {len(judged)}" if judged else DASH


def training_parts(doc: Optional[dict]) -> List[str]:
    """Markdown parts of the Training subsection (empty when the benchmark never ran)."""
    if not doc:
        return []
    head = ["### Training: the step in each routing mode against the static form",
            "One full training step of each family's routed model of the main job, on its embedded suite's "
            "training batch: the harness's loss (task loss plus the weighted auxiliary objectives), backward, "
            "gradient clip and AdamW (`benchmarks/training_variants.py`). Dense: every branch on every item "
            "(how the harness trained until issue 24); sparse: a branch runs on the items that chose it, at the "
            "trained mix (the weights named under each table) or forced to a share of the items on the expensive "
            "path at every router; capacity k: sparse, with exactly round(k·n) items of each row on the "
            "expensive path by top-k. Every variant and comparator steps in turn (A B C … A B C …), warm-up "
            "dropped. Training FLOPs = 3 × the executed FLOPs of the training forward (the backward counted as "
            "twice the forward). Speedup = median over rounds of t_static / t_variant; FLOPs ratio = static / "
            "variant training FLOPs; efficiency = speedup / FLOPs ratio. The static form is the registered "
            "comparator (`zoo.model_info`'s `static_form`: DHVN always-both, ESH-Vision soft, Exp11's baseline "
            "plan); the always-full static reference (`zoo.static_reference`) is timed as a row of its own "
            "where it is another model (Exp11); the cheapest plan is the static plan of fewest FLOPs at this "
            "shape. Target "
            "(issue 24): efficiency ≥ 0.8 against the static form at capacity ≤ 0.5, at 1 thread. "
            f"Met: {_tally(doc)}. Regenerate with `{REGENERATE}`."]
    if doc.get("skipped"):
        return head + [f"_Not measured: {doc['skipped']}._"]
    results = doc.get("results") or []
    parts = list(head)
    models = sorted({(family_name(r["model"], r.get("family")), r["model"]) for r in results},
                    key=lambda fm: (rank(fm[0]), fm[1]))
    for family, model in models:
        mine = [r for r in results if r["model"] == model]
        first = mine[0]
        named = first.get("comparators") or {}
        comps = "; ".join(f"{role.replace('_', ' ')} `{named[role]}`" for role in ROLES if role in named)
        parts += [f"**`{model}`**, {first['inputs']}; routers from {first.get('weights') or 'an untrained model'}; "
                  f"{comps}.", table(_rows(doc, mine))]
    return parts
