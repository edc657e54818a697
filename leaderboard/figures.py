"""Leaderboard section "Figures": accuracy (or perplexity) against executed GFLOPs and throughput.

A section provider (see `leaderboard.sections`): ``figures_section(results_dir, write)``.
Per suite table it draws, from the same aggregated rows as the tables,
  * the primary metric against executed GFLOPs per sample (records with `flops`), and
  * the primary metric against eval throughput (samples/s or tokens/s),
every zoo and timm model as a point with its seed error bar (± sample std of the metric over
seeds), and each dynamic model joined by a line to its static / always-both / soft form
(`partner`). On the GFLOPs plot each routed model's compute-budget curve (its checkpoints
evaluated under `zoo.routing.flops_budget` at several fractions) is a dotted line of triangles. Images go to <results_dir>/../figures/ (leaderboard/figures/ by default), next to
a JSON of the plotted numbers, and the markdown links them relative to LEADERBOARD.md.

The markdown depends on the results only, never on whether pictures were written, so
``write=False`` (`--check`) returns the same text and touches nothing. Models or suites without
FLOPs are named in the section instead of being drawn at a made-up position.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional, Sequence

from .aggregate import ModelRow, SuiteTable, load_results, summarize
from .atomic import atomic_path, atomic_write
from .families import color as family_color, family_name
from .static_plans import frontier

__all__ = ["figures_section", "partner", "figure_specs", "FIGURE_SIZE", "FIGURES_DIRNAME"]

FIGURES_DIRNAME = "figures"
FIGURE_SIZE = (8.0, 5.5)   # inches, at 100 dpi
DPI = 100
_METRIC_LABEL = {"top1": "top-1 accuracy (%, higher is better)",
                 "perplexity": "perplexity (lower is better)"}
_X = {"gflops": ("executed_gflops", "executed GFLOPs per {item} (FLOPs = 2 x MACs, log scale)"),
      "throughput": ("throughput", "eval throughput ({unit}/s, log scale)")}


def partner(model: str, models: Sequence[str], static_forms: Optional[dict] = None) -> Optional[str]:
    """The dynamic model a static / soft form belongs to, if both are on the board: the model
    whose recorded `static_form` it is, else by name (X_static -> X, X_soft -> X,
    exp11_baseline* -> exp11_dynamic*)."""
    for dynamic, static in (static_forms or {}).items():
        if static == model and dynamic in models:
            return dynamic
    candidates = []
    for suffix in ("_static", "_soft"):
        if model.endswith(suffix):
            candidates.append(model[: -len(suffix)])
    if "baseline" in model:
        candidates.append(model.replace("baseline", "dynamic"))
    return next((c for c in candidates if c in models and c != model), None)


def _family(model: str, families: Optional[dict] = None) -> Optional[str]:
    """The recorded family; for records written before they carried one, the zoo's."""
    return family_name(model, (families or {}).get(model))


def _color(model: str, families: Optional[dict] = None) -> str:
    """The model's family colour (`display.color`, docs/DESIGN.md, "Families"; timm grey)."""
    return family_color(_family(model, families))


def _slug(table: SuiteTable, show_task: bool) -> str:
    return table.suite + (f"-{table.task.name}" if show_task else "")


def figure_specs(tables: Sequence[SuiteTable]) -> List[dict]:
    """What would be drawn (file names, points, what is missing): depends on the results only."""
    suites = [t.suite for t in tables]
    specs = []
    for table in tables:
        metric = table.task.metrics[0]
        rows = [r for r in table.rows if r.metrics[metric].mean is not None]
        names = [r.model for r in rows]
        unit = "tokens" if table.task.throughput_key == "tokens_per_s" else "samples"
        # ModelRow.executed_gflops follows TaskSpec.flops_key: per image, or per token for LMs
        per = "token" if getattr(table.task, "flops_key", "").endswith("_per_token") else (
            "sequence" if unit == "tokens" else "image")
        forms = {r.model: r.static_form for r in rows if r.static_form}
        families = {r.model: r.family for r in rows if r.family}
        for kind, (attr, xlabel) in _X.items():
            with_x = [r for r in rows if getattr(r, attr) is not None and getattr(r, attr) > 0]
            missing = [r.model for r in rows if r not in with_x]
            spec = dict(
                suite=table.suite, task=table.task.name, kind=kind, metric=metric,
                file=f"{_slug(table, suites.count(table.suite) > 1)}_{metric}_vs_{kind}.png",
                xlabel=xlabel.format(item=per, unit=unit),
                points=[_point(r, metric, attr) for r in with_x], missing=missing,
                pairs=sorted({(partner(n, names, forms), n) for n in names if partner(n, names, forms)}),
                static_forms=dict(sorted(forms.items())), families=dict(sorted(families.items())),
                frontiers=_frontiers(rows, metric, attr, table.task.higher_is_better))
            if kind == "gflops":
                spec["curves"] = [dict(model=c.model, points=[
                    dict(budget=p.target, x=p.executed_gflops, y=p.metric.mean, yerr=p.metric.std, n=p.metric.n)
                    for p in c.points if p.executed_gflops and p.metric.mean is not None])
                    for c in table.curves]
            specs.append(spec)
    return specs


def _frontiers(rows: Sequence[ModelRow], metric: str, attr: str, higher_is_better: bool) -> List[dict]:
    """Per routed model with trained static plans on the board: the Pareto frontier of those
    plans (cost, quality), the line its own point and its budget curve have to beat."""
    by_name = {r.model: r for r in rows}
    out = []
    for r in rows:
        plans = [by_name[p] for p in r.static_plans if p in by_name and getattr(by_name[p], attr)]
        if plans:
            pts = [(float(getattr(p, attr)), p.metrics[metric].mean) for p in plans]
            names = {(float(getattr(p, attr)), p.metrics[metric].mean): p.model for p in plans}
            out.append(dict(model=r.model, plans=sorted(p.model for p in plans),
                            frontier=[dict(x=x, y=y, model=names[(x, y)]) for x, y in frontier(pts, higher_is_better)]))
    return out


def _point(row: ModelRow, metric: str, attr: str) -> dict:
    stat = row.metrics[metric]
    return dict(model=row.model, x=float(getattr(row, attr)), y=stat.mean, yerr=stat.std, n=stat.n)


def _markdown(specs: List[dict]) -> str:
    blocks = ["## Figures",
              "Primary metric against executed GFLOPs and against eval throughput, per suite. Error bars: "
              "± sample std over seeds (none with one seed). Hollow points are static: a routed model's "
              "trained static plans and its static or soft form; a dashed line joins a dynamic model (filled) "
              "to its static or soft form. The wide pale staircase is the Pareto frontier of a routed model's "
              "trained static plans: routing pays only where the routed point, or its budget curve, lies "
              "beyond it (cheaper at the same quality, or better at the same cost). Drawn by "
              "`python -m harness leaderboard` (leaderboard/figures.py)."]
    suite = None
    for s in specs:
        if s["suite"] != suite:
            suite = s["suite"]
            blocks.append(f"### {suite}")
        what = "executed GFLOPs" if s["kind"] == "gflops" else "throughput"
        if not s["points"]:
            blocks.append(f"{s['metric']} vs {what}: not drawn, no model on this board has "
                          f"{'executed FLOPs' if s['kind'] == 'gflops' else 'a throughput'} recorded yet.")
            continue
        blocks.append(f"![{suite}: {s['metric']} vs {what}]({FIGURES_DIRNAME}/{s['file']})")
        if s["missing"]:
            blocks.append(f"Left out of the {what} plot (not recorded): {', '.join(s['missing'])}.")
    return "\n\n".join(blocks) + "\n"


def _draw(spec: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    by_model = {p["model"]: p for p in spec["points"]}
    families = spec.get("families")
    plan_names = {name for f in spec.get("frontiers", []) for name in f["plans"]}
    for f in spec.get("frontiers", []):
        # the static plans' frontier as a staircase: below it in cost and above it in quality is
        # what routing has to reach (higher metric better for top-1; a perplexity axis is lower)
        pts = f["frontier"]
        color = _color(f["model"], families)
        ax.step([p["x"] for p in pts], [p["y"] for p in pts], where="post", color=color, lw=2.2, alpha=0.35,
                zorder=0, label=f"{f['model']}: frontier of its trained static plans")
    for dynamic, static in spec["pairs"]:
        if dynamic in by_model and static in by_model:
            a, b = by_model[dynamic], by_model[static]
            ax.plot([a["x"], b["x"]], [a["y"], b["y"]], color=_color(dynamic, families),
                    lw=1, ls="--", alpha=0.7, zorder=1)
    for curve in spec.get("curves", []):
        pts = sorted(curve["points"], key=lambda p: p["x"])
        if not pts:
            continue
        color = _color(curve["model"], families)
        budgets = ", ".join(format(p["budget"], "g") for p in pts)
        ax.errorbar([p["x"] for p in pts], [p["y"] for p in pts],
                    yerr=[p["yerr"] or 0.0 for p in pts], color=color, lw=1.2, ls=":", marker="^", ms=5,
                    capsize=2, alpha=0.85, zorder=1, label=f"{curve['model']} budget curve ({budgets})")
    xs = [math.log10(p["x"]) for p in spec["points"]] + [
        math.log10(p["x"]) for c in spec.get("curves", []) for p in c["points"]]
    x_lo, x_hi = min(xs), max(xs)
    for p in spec["points"]:
        fam = _family(p["model"], families)
        # hollow: a static plan, or the static / soft form, of a dynamic model on the board
        hollow = p["model"] in plan_names or partner(p["model"], list(by_model), spec.get("static_forms")) is not None
        ax.errorbar(p["x"], p["y"], yerr=p["yerr"] if p["yerr"] is not None else None, fmt="s" if fam == "timm" else "o",
                    color=family_color(fam), ms=7, capsize=4, zorder=2,
                    mfc="white" if hollow else None,
                    label=f"{p['model']} (n={p['n']})")
        # a static form is labelled below its point, its dynamic model above, so a pair that
        # lands close together stays readable; points near the right edge are labelled leftwards
        right_edge = x_hi > x_lo and (math.log10(p["x"]) - x_lo) / (x_hi - x_lo) > 0.75
        ax.annotate(p["model"], (p["x"], p["y"]), textcoords="offset points",
                    xytext=(-6 if right_edge else 6, -11 if hollow else 5), fontsize=7,
                    ha="right" if right_edge else "left")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_xscale("log")
    # plain numbers (0.02, 2,000) on the decades and at 2x and 5x between them; other minor
    # ticks unlabelled (labels at every minor tick overlap)
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain if x_hi - x_lo < 2 else NullFormatter())
    ax.margins(x=0.15, y=0.08)  # room for the point labels
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(_METRIC_LABEL.get(spec["metric"], spec["metric"]))
    ax.set_title(f"{spec['suite']}: {spec['metric']} vs "
                 f"{'executed GFLOPs' if spec['kind'] == 'gflops' else 'throughput'} "
                 f"(hollow: static plans and forms; band: static plans' frontier)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.11)
    path.parent.mkdir(parents=True, exist_ok=True)
    # through a temporary name and a rename: a killed run leaves the old picture, never a cut one
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, metadata={"Software": None}, format="png")
    plt.close(fig)
    atomic_write(path.with_suffix(".json"), json.dumps({k: v for k, v in spec.items() if k != "file"}
                                                      | {"png": spec["file"]}, indent=1, sort_keys=True) + "\n")


def figures_section(results_dir, write: bool) -> Optional[str]:
    """Markdown of the Figures section; with write=True also the PNGs (+ JSON) it links."""
    records, _ = load_results(results_dir)
    tables, _ = summarize(records)
    if not tables:
        return None
    specs = figure_specs(tables)
    if write:
        out = Path(results_dir).resolve().parent / FIGURES_DIRNAME
        for spec in specs:
            if spec["points"]:
                _draw(spec, out / spec["file"])
    return _markdown(specs)
