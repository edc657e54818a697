"""The pictures and the table of `python -m harness compare` (see harness/commands/compare.py)."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

from .common import Picture, plt, save_picture

__all__ = ["loss_curves", "routing_training", "markdown_table", "CURVES_SIZE", "routing_size"]

CURVES_SIZE = (9.0, 5.0)
TASK_LOSSES = ("loss_ce", "loss_lm")
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")

Logs = Dict[str, Dict[int, List[dict]]]   # model -> seed -> logged training iterations


def _task_key(logs: Logs) -> str:
    keys = {k for runs in logs.values() for rows in runs.values() for r in rows for k in r}
    return next((k for k in TASK_LOSSES if k in keys), "loss")


def _mean_curve(runs: Dict[int, List[dict]], key: str) -> Tuple[List[int], List[float]]:
    """Mean over the seeds that logged `key` at each iteration."""
    import pandas as pd
    rows = [dict(seed=s, iter=r["iter"], value=r[key]) for s, rs in runs.items() for r in rs
            if isinstance(r.get(key), (int, float))]
    if not rows:
        return [], []
    mean = pd.DataFrame(rows).groupby("iter")["value"].mean()
    return [int(i) for i in mean.index], [float(v) for v in mean.values]


def loss_curves(logs: Logs, out_dir: str, meta: dict) -> Picture:
    pyplot = plt()
    key = _task_key(logs)
    fig, ax = pyplot.subplots(figsize=CURVES_SIZE)
    series = {}
    for k, (model, runs) in enumerate(logs.items()):
        color = _COLORS[k % len(_COLORS)]
        per_seed = {}
        for seed, rows in runs.items():
            pts = [(r["iter"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), color=color, lw=0.8, alpha=0.35)
                per_seed[str(seed)] = dict(iter=[p[0] for p in pts], value=[p[1] for p in pts])
        iters, mean = _mean_curve(runs, key)
        if iters:
            ax.plot(iters, mean, color=color, lw=2.2, marker="o", ms=3,
                    label=f"{model} (mean of {len(per_seed)} seed{'s' if len(per_seed) != 1 else ''})")
        series[model] = dict(seeds=per_seed, mean=dict(iter=iters, value=mean))
    ax.set_xlabel("training iteration")
    ax.set_ylabel(f"{key} (nats, running mean over the logger window)")
    ax.set_title(f"{meta['suite']}: training loss (task term only; thin lines are single seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    if series and any(s["mean"]["iter"] for s in series.values()):
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no training logs found", transform=ax.transAxes, ha="center")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.91, bottom=0.12)
    return save_picture(fig, out_dir, "loss_curves", dict(meta, kind="compare_loss_curves", key=key,
                                                         series=series))


def _routing_keys(logs: Logs) -> Tuple[List[str], bool]:
    """Per-iteration routing keys if any run logged them, else the auxiliary loss terms."""
    keys = sorted({k for runs in logs.values() for rows in runs.values() for r in rows for k in r})
    shares = [k for k in keys if "routing" in k]
    if shares:
        return shares, True
    return [k for k in keys if k.startswith("loss_") and k not in TASK_LOSSES], False


def routing_size(panels: int) -> tuple:
    cols = min(max(panels, 1), 2)
    return (5.0 * cols + 0.5, 3.4 * math.ceil(max(panels, 1) / cols) + 0.9)


def routing_training(logs: Logs, out_dir: str, meta: dict, missing_note: str) -> Picture:
    pyplot = plt()
    keys, are_shares = _routing_keys(logs)
    cols = min(max(len(keys), 1), 2)
    rows = math.ceil(max(len(keys), 1) / cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=routing_size(len(keys)), squeeze=False)
    series: Dict[str, dict] = {}
    for j, key in enumerate(keys):
        ax = axes.flat[j]
        for k, (model, runs) in enumerate(logs.items()):
            iters, mean = _mean_curve(runs, key)
            if iters:
                ax.plot(iters, mean, color=_COLORS[k % len(_COLORS)], lw=1.8, marker="o", ms=3, label=model)
                series.setdefault(key, {})[model] = dict(iter=iters, value=mean)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("share of items" if are_shares else "weighted aux loss (as logged)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if not keys:
        axes.flat[0].text(0.5, 0.5, "no routing statistics in the training logs\n(static models only?)",
                          ha="center", va="center", transform=axes.flat[0].transAxes)
    what = ("routing shares logged per iteration" if are_shares
            else "auxiliary routing losses (weighted, seed mean) — per-iteration route shares are not logged")
    fig.suptitle(f"{meta['suite']}: routing over training: {what}", fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.97, top=1 - 0.7 / fig.get_size_inches()[1], bottom=0.12,
                        wspace=0.3, hspace=0.6)
    note = ("Routing over training: per-iteration routing keys found in the logs and drawn."
            if are_shares else missing_note + " The routing picture draws those auxiliary terms.")
    pic = save_picture(fig, out_dir, "routing_training", dict(
        meta, kind="compare_routing_training", keys=keys, shares_logged=are_shares, series=series, note=note))
    pic["note"] = note
    return pic


def _cell(stat, decimals: int) -> str:
    if stat is None or stat.mean is None:
        return "–"
    spread = f" ± {stat.std:.{decimals}f}" if stat.std is not None else ""
    return f"{stat.mean:.{decimals}f}{spread} (n={stat.n})"


def markdown_table(models: Sequence[str], suite: str, records: List[dict]) -> Tuple[str, List[str]]:
    """Final numbers per model from the results store (mean ± std over seeds), and notes."""
    import pandas as pd
    from leaderboard.aggregate import summarize
    from leaderboard.render import METRIC_COLUMNS, human_count

    tables, _ = summarize([r for r in records if r.get("suite") == suite and r.get("model") in models])
    table = tables[0] if tables else None
    rows_by_model = {row.model: row for row in (table.rows if table else ())}
    metrics = table.task.metrics if table else ()
    tp_key = table.task.throughput_key if table else "samples_per_s"
    # the store's FLOPs key for this task (per image, or per token for LMs)
    per_token = table is not None and getattr(table.task, "flops_key", "").endswith("_per_token")
    flops_header = "GFLOPs/token" if per_token else "GFLOPs/sample"
    notes, rows = [], []
    for m in models:
        row = rows_by_model.get(m)
        cells = {"model": m}
        for key in metrics:
            cells[key] = _cell(row.metrics.get(key) if row else None, METRIC_COLUMNS[key][1])
        cells["params"] = human_count(row.params) if row and row.params is not None else "–"
        cells[tp_key.replace("_per_s", "/s")] = f"{row.throughput:,.1f}" if row and row.throughput else "–"
        cells[flops_header] = f"{row.executed_gflops:.4g}" if row and row.executed_gflops is not None else "–"
        cells["FLOPs saved"] = f"{100 * row.flops_saved:.1f}%" if row and row.flops_saved is not None else "–"
        mix = "–"
        if row and row.routing is not None:
            mix = "static" if not row.routing else "; ".join(
                f"{layer} " + "/".join(f"{c} {100 * s:.0f}" for c, s in shares.items())
                for layer, shares in row.routing.items())
        cells["routing mix (% of eval items)"] = mix
        rows.append(cells)
        if row is None:
            notes.append(f"{m} has no record for {suite} in the results store.")
    if table and all(r.executed_gflops is None for r in table.rows):
        notes.append("FLOPs are not in these records yet (`flops` is null): shown as –.")
    frame = pd.DataFrame(rows)
    return frame.to_markdown(index=False, disable_numparse=True), notes
