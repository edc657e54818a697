"""Result records in, one summary row per (suite, model) out. No formatting here.

Rules, in the order they apply:
1. Files: every ``*.jsonl`` directly in the results directory, read in sorted name order;
   malformed lines are skipped and reported (see ``leaderboard.store.read_records``).
2. Task: the record's ``task``, else inferred from its metrics (``top1`` -> classification,
   ``query_accuracy`` -> associative recall, ``perplexity`` -> causal LM). Records of an unknown task are reported and skipped.
3. One record per (suite, model, training mode, seed): when a seed was run more than once, the
   newest by ``created`` wins (a missing or unparseable ``created`` counts as oldest). Exact ties are
   broken by the record's canonical JSON, so the winner never depends on file order. A routed model
   trained in another mode than plain dense is a row of its own (``leaderboard.train_modes``).
4. Over seeds: mean, sample std (ddof=1; undefined for one seed) and n. Null or missing values
   are skipped, never filled in, so n counts the seeds that actually have the value.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

from .static_plans import best_static_plan, with_static_plan_savings
from .task_specs import TASK_SPECS, TaskSpec
from .store import read_records
from .train_modes import mode_label, row_name

__all__ = ["TaskSpec", "TASK_SPECS", "Stat", "ModelRow", "SuiteTable", "BudgetPoint", "BudgetCurve",
           "load_results", "summarize", "infer_task", "natural_key"]


_ALL_METRICS = sorted({m for spec in TASK_SPECS.values() for m in spec.metrics})


@dataclass(frozen=True)
class Stat:
    mean: Optional[float]         # None when no seed has the value
    std: Optional[float]          # None when fewer than two seeds have it
    n: int                        # seeds with a value
    total: int                    # seeds in the row


@dataclass(frozen=True)
class ModelRow:
    model: str                                 # the row: the model, with its training mode unless dense
    seeds: Tuple[int, ...]
    metrics: Dict[str, Stat]
    params: Optional[int]                      # first seed's count
    throughput: Optional[float]                # mean over seeds
    executed_gflops: Optional[float]           # mean over seeds that measured FLOPs (TaskSpec.flops_key)
    flops_saved: Optional[float]               # fraction, mean over seeds that measured it
    routing: Optional[Dict[str, Dict[str, float]]]  # None: not recorded; {}: static
    commands: Tuple[Tuple[int, Optional[Tuple[str, ...]]], ...]  # (seed, argv), seed order
    static_form: Optional[str] = None          # the routed model's static comparator, as recorded
    family: Optional[str] = None               # as recorded ("timm" for timm peers)
    static_plans: Tuple[str, ...] = ()         # the routed model's static plans, as recorded
    plans_on_board: Tuple[str, ...] = ()       # those of them with rows on this board
    best_static: Optional[str] = None          # the cheapest plan as good as this row (static_plans.py)
    saved_vs_best_static: Optional[float] = None  # 1 - executed / best_static's executed
    max_load: Optional[float] = None           # the highest 1-minute load average of its throughput runs
    loaded: bool = False                       # some seed's throughput ran with load above the core count
    train_mode: Optional[str] = None           # "train: sparse / cap 0.5"; None: trained dense (train_modes.py)


@dataclass(frozen=True)
class BudgetPoint:
    target: float                 # the requested fraction of the full form's FLOPs
    seeds: Tuple[int, ...]
    metric: Stat                  # the primary metric over seeds
    executed_gflops: Optional[float]
    flops_saved: Optional[float]  # against the full form (dense reference), mean over seeds
    best_static: Optional[str] = None            # the cheapest static plan as good as this point
    saved_vs_best_static: Optional[float] = None


@dataclass(frozen=True)
class BudgetCurve:
    """One routed model evaluated at several budgets from the same trained checkpoints."""
    model: str
    points: Tuple[BudgetPoint, ...]            # by target


@dataclass(frozen=True)
class SuiteTable:
    suite: str
    task: TaskSpec
    rows: Tuple[ModelRow, ...]                 # best first
    conditions: Tuple[Tuple[str, Tuple[str, ...]], ...]  # (field, distinct values)
    curves: Tuple[BudgetCurve, ...] = ()       # budget curves (records with a `budget`), by model


def load_results(results_dir) -> Tuple[List[dict], List[str]]:
    """All valid records of results_dir/*.jsonl and the problems found, in sorted file order."""
    records, problems = [], []
    for path in sorted(Path(results_dir).glob("*.jsonl")):
        # Label by file name, not full path, so the rendered page does not depend on where
        # the results directory lives.
        recs, probs = read_records(path, label=path.name)
        records += recs
        problems += probs
    return records, problems


def infer_task(record: dict) -> Optional[str]:
    task = record.get("task")
    if task is not None:
        return task
    metrics = record["metrics"]
    if "top1" in metrics:
        return "image-classification"
    if "query_accuracy" in metrics:   # before perplexity: recall records carry the LM loss too
        return "associative-recall"
    if "perplexity" in metrics or "bits_per_byte" in metrics:
        return "causal-lm"
    return None


def summarize(records: List[dict]) -> Tuple[List[SuiteTable], List[str]]:
    """Aggregate records into tables sorted by (suite, task), rows best first."""
    problems: List[str] = []
    kept = []
    for rec in records:
        task = infer_task(rec)
        if task not in TASK_SPECS:
            problems.append(f"{_who(rec)}: unknown task {task!r}; record skipped")
            continue
        if "created" in rec and _created_key(rec["created"]) == "":
            problems.append(f"{_who(rec)}: created {rec['created']!r} is not ISO 8601; "
                            "treated as oldest")
        kept.append((task, rec))
    if not kept:
        return [], problems

    full = pd.DataFrame([_flat_row(task, rec, i) for i, (task, rec) in enumerate(kept)])
    full = (full.sort_values(["suite", "model", "budget", "seed", "created", "canon"], na_position="first")
                .drop_duplicates(["suite", "model", "budget", "seed"], keep="last")
                .reset_index(drop=True))
    # a record evaluated under a compute budget is a point of that model's budget curve, not a row
    frame = full[full["budget"].isna()].reset_index(drop=True)
    budgeted = full[full["budget"].notna()].reset_index(drop=True)
    for suite, tasks in frame.groupby("suite", sort=True)["task"].unique().items():
        if len(tasks) > 1:
            problems.append(f"suite {suite!r} mixes tasks {sorted(tasks)}; one table per task")

    numeric = ["throughput", "executed_gflops", "flops_saved"] + [f"m.{m}" for m in _ALL_METRICS]
    groups = frame.groupby(["suite", "task", "model"], sort=True)
    means, stds = groups[numeric].mean(), groups[numeric].std(ddof=1)
    counts = groups[numeric].count()

    tables = []
    for (suite, task), whole in full.groupby(["suite", "task"], sort=True):
        spec = TASK_SPECS[task]
        suite_frame = whole[whole["budget"].isna()]
        rows = []
        for model, model_frame in suite_frame.groupby("model", sort=True):
            key = (suite, task, model)
            recs = [kept[i][1] for i in model_frame["index"]]   # seed order (frame is sorted)
            metrics = {m: _stat(means.at[key, f"m.{m}"], stds.at[key, f"m.{m}"],
                                counts.at[key, f"m.{m}"], len(recs)) for m in spec.metrics}
            # From the records, not the frame: pandas would turn ints-with-gaps into floats.
            params = [r["params"] for r in recs
                      if isinstance(r.get("params"), int) and not isinstance(r["params"], bool)]
            if len(set(params)) > 1:
                problems.append(f"{suite}/{model}: params differ across seeds "
                                f"{sorted(set(params))}; showing the first seed's")
            rows.append(ModelRow(
                model=model,
                seeds=tuple(int(s) for s in model_frame["seed"]),
                metrics=metrics,
                params=params[0] if params else None,
                throughput=_opt(means.at[key, "throughput"]),
                executed_gflops=_opt(means.at[key, "executed_gflops"]),
                flops_saved=_opt(means.at[key, "flops_saved"]),
                routing=_mean_routing(recs),
                commands=tuple((int(r["seed"]), _argv(r.get("command"))) for r in recs),
                static_form=next((r["static_form"] for r in recs if isinstance(r.get("static_form"), str)), None),
                static_plans=_static_plans(recs),
                family=next((r["family"] for r in recs if isinstance(r.get("family"), str)), None),
                max_load=_max_load(recs), loaded=_loaded(recs), train_mode=mode_label(recs[0]),
            ))
        rows = with_static_plan_savings(rows, spec)
        rows.sort(key=lambda row: _rank_key(row, spec))
        all_recs = [kept[i][1] for i in whole["index"]]
        curves = _curves(budgeted[(budgeted["suite"] == suite) & (budgeted["task"] == task)], spec, rows)
        tables.append(SuiteTable(suite, spec, tuple(rows), _conditions(all_recs), curves))
    return tables, problems


def _static_plans(recs: List[dict]) -> Tuple[str, ...]:
    for r in recs:
        plans = r.get("static_plans")
        if isinstance(plans, list) and all(isinstance(p, str) for p in plans):
            return tuple(plans)
    return ()


def _loads(recs: List[dict]) -> List[Tuple[float, float]]:
    """(1-minute load average, cores) of each record's throughput run, where recorded."""
    out = []
    for r in recs:
        load = _number(_get(r, "throughput", "load_avg_1m"))
        cores = _number(_get(r, "throughput", "cpu_count"))
        if not math.isnan(load):
            out.append((load, 2.0 if math.isnan(cores) else cores))  # records before cpu_count: 2-core runs
    return out


def _max_load(recs: List[dict]) -> Optional[float]:
    loads = _loads(recs)
    return max(l for l, _ in loads) if loads else None


def _loaded(recs: List[dict]) -> bool:
    """A throughput measured while more threads wanted the CPU than it has cores is indicative only."""
    return any(load > cores for load, cores in _loads(recs))


def _curves(frame: pd.DataFrame, spec: "TaskSpec", rows: List[ModelRow]) -> Tuple[BudgetCurve, ...]:
    metric = f"m.{spec.metrics[0]}"
    curves = []
    by_name = {r.model: r for r in rows}
    for model, model_frame in frame.groupby("model", sort=True):
        owner = by_name.get(model)
        plans = [by_name[p] for p in (owner.static_plans if owner else ()) if p in by_name]
        points = []
        for target, f in model_frame.groupby("budget", sort=True):
            values = f[metric].dropna()
            stat = _stat(values.mean() if len(values) else None,
                         values.std(ddof=1) if len(values) >= 2 else None, len(values), len(f))
            gflops = _opt(f["executed_gflops"].mean())
            q = f[f"m.{spec.quality}"].dropna()
            best = best_static_plan(q.mean() if len(q) else None, float(q.std(ddof=1)) if len(q) >= 2 else 0.0,
                                    plans, spec)
            points.append(BudgetPoint(float(target), tuple(int(x) for x in f["seed"]), stat,
                                      gflops, _opt(f["flops_saved"].mean()),
                                      best_static=best[0] if best else None,
                                      saved_vs_best_static=1.0 - gflops / best[1] if best and gflops else None))
        curves.append(BudgetCurve(model, tuple(points)))
    return tuple(curves)


# ----------------------------------------------------------------------------- per record


def _who(rec: dict) -> str:
    return f"{rec['suite']}/{rec['model']} seed {rec['seed']}"


def _get(rec: dict, *keys):
    """rec[k1][k2]... or None when any level is missing or not a dict."""
    value = rec
    for k in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(k)
    return value


def _number(value) -> float:
    """A finite float, or NaN (pandas' 'missing') for null, bools, strings and non-finite."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.nan


def _created_key(value) -> str:
    """Sortable UTC timestamp string; '' (sorts first, i.e. oldest) when absent or invalid."""
    if not isinstance(value, str):
        return ""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return ""
    if dt.tzinfo is None:           # the schema says UTC; trust it rather than local time
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _flat_row(task: str, rec: dict, index: int) -> dict:
    row = {
        "index": index, "suite": rec["suite"], "task": task, "model": row_name(rec["model"], mode_label(rec)),
        "seed": rec["seed"],
        "created": _created_key(rec.get("created")),
        "canon": json.dumps(rec, sort_keys=True),
        "throughput": _number(_get(rec, "throughput", TASK_SPECS[task].throughput_key)),
        "executed_gflops": _number(_get(rec, "flops", TASK_SPECS[task].flops_key)),
        "flops_saved": _number(_get(rec, "flops", "saved")),
        "budget": _number(_get(rec, "budget", "target")),   # NaN: an ordinary run
    }
    for m in _ALL_METRICS:
        row[f"m.{m}"] = _number(rec["metrics"].get(m))
    return row


def _argv(command) -> Optional[Tuple[str, ...]]:
    if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        return tuple(command)
    return None


# ----------------------------------------------------------------------------- per model


def _opt(value) -> Optional[float]:
    return None if pd.isna(value) else float(value)


def _stat(mean, std, n, total: int) -> Stat:
    return Stat(_opt(mean), _opt(std) if n >= 2 else None, int(n), total)


def _rank_key(row: ModelRow, spec: TaskSpec):
    """Best primary metric first; rows without one last; ties by model name."""
    mean = row.metrics[spec.metrics[0]].mean
    if mean is None:
        return (1, 0.0, row.model)
    return (0, -mean if spec.higher_is_better else mean, row.model)


def natural_key(name: str):
    """'layer10' after 'layer2': digit runs compare as numbers."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name)))


def _mean_routing(recs: List[dict]) -> Optional[Dict[str, Dict[str, float]]]:
    """Per router layer, the mean share of each choice over the seeds that have that router.

    Choices keep the router's own order (its `choices` list), so the mix reads the same way in
    every row; a choice absent from one seed's `share` counted 0 for that seed.
    """
    routings = [r["routing"] for r in recs if isinstance(r.get("routing"), dict)]
    if not routings:
        return None
    layers: Dict[str, Dict[str, List[float]]] = {}
    for routing in routings:
        for layer, info in routing.items():
            if not isinstance(info, dict) or not isinstance(info.get("share"), dict):
                continue
            share = info["share"]
            choices = info.get("choices") if isinstance(info.get("choices"), list) else []
            order = [c for c in choices if isinstance(c, str)]
            order += sorted(c for c in share if c not in order)
            per_choice = layers.setdefault(layer, {})
            for c in order:
                value = _number(share.get(c, 0.0))
                per_choice.setdefault(c, [])
                if not math.isnan(value):
                    per_choice[c].append(value)
    return {layer: {c: sum(v) / len(v) for c, v in layers[layer].items() if v}
            for layer in sorted(layers, key=natural_key)}


# ----------------------------------------------------------------------------- per suite

_CONDITION_FIELDS = ("device", "cpu", "dtype", "threads", "python", "torch", "timm", "mmengine")


def _conditions(recs: List[dict]) -> Tuple[Tuple[str, Tuple[str, ...]], ...]:
    """Distinct run conditions over a table's records; fields nobody recorded are left out."""
    out = []
    for field in _CONDITION_FIELDS + ("git",):
        values = set()
        for rec in recs:
            if field == "git":
                sha = _get(rec, "env", "git_sha")
                value = None if sha is None else str(sha)[:12] + (
                    "+dirty" if _get(rec, "env", "git_dirty") else "")
            else:
                value = _get(rec, "env", field)
                if value is None:
                    value = _get(rec, "throughput", field)
            if value is not None:
                values.add(str(value))
        if values:
            out.append((field, tuple(sorted(values, key=natural_key))))
    return tuple(out)
