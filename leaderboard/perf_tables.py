"""Cells and tables of the Performance section that stand apart from the efficiency rows: the
trust cells every row shares (threads, spread, load), ops, router overhead and timm peers.

A figure's spread is min / median / max over its rounds; its load record comes from
`harness.measure.benchkit.LoadGate` (1-minute load average before and after, the cores' worth of CPU
other processes used while it ran, and whether that stayed under the run's threshold). Files
written before these existed render with "–" where a field is absent.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

DASH = "–"
UNRELIABLE = "**unreliable**"


def load_perf(perf_dir) -> Dict[str, dict]:
    """name (file stem) -> document, for every *.json in perf_dir, sorted by name."""
    out = {}
    for path in sorted(Path(perf_dir).glob("*.json")):
        with open(path, encoding="utf-8") as f:
            out[path.stem] = json.load(f)
    return out


def status(met: Optional[bool]) -> str:
    return DASH if met is None else ("met" if met else "**missed**")


def table(rows: List[dict]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def ranged(median: Optional[float], spread: Optional[dict], fmt: str = "{:.2f}", suffix: str = "") -> str:
    """'1.23x (1.10–1.31)': the median with the min–max of the rounds when recorded."""
    if median is None:
        return DASH
    text = fmt.format(median) + suffix
    if spread:
        text += f" ({fmt.format(spread['min'])}–{fmt.format(spread['max'])})"
    return text


def run_ms(run: Optional[dict]) -> str:
    if not run:
        return DASH
    spread = ({"min": run["step_ms_min"], "max": run["step_ms_max"]} if "step_ms_max" in run else None)
    return ranged(run["step_ms_median"], spread, "{:.1f}")


def load_cell(load: Optional[dict], fallback: Optional[float] = None) -> str:
    """'0.4 → 1.6, others 0.02' (load average before → after; other processes' cores while timing)."""
    if not load:
        return f"{fallback} (after)" if fallback is not None else DASH
    other = load.get("other_load")
    text = f"{load.get('loadavg_before')} → {load.get('loadavg_after')}"
    if other is not None:
        text += f", others {other:.2f}"
    if load.get("waited_s"):
        text += f", waited {load['waited_s']:.0f} s"
    if (load.get("attempts") or 1) > 1:
        text += f", run {load['attempts']} times"
    if load.get("reliable") is False:
        text += f" {UNRELIABLE}"
    return text


def trusted(met: Optional[bool], load: Optional[dict]) -> str:
    """A target's status; an unreliable figure says so beside it."""
    text = status(met)
    return f"{text} ({UNRELIABLE})" if met is not None and (load or {}).get("reliable") is False else text


def threads_of(row: dict, doc: dict) -> str:
    c = row.get("conditions") or doc.get("conditions") or {}
    return str(row.get("threads", c.get("threads", DASH)))


# docs/DESIGN.md, "Performance targets": each fast op's executed GFLOP/s as a share of the fp32 matmul
# roof timed in the same run
ROOF_TARGETS = {"delta": 0.40, "ssd": 0.15}


def ops_rows(docs) -> List[dict]:
    """Every ops file's rows (one file may hold several thread counts), in bench_ops.py's case
    order, then by threads."""
    rows, order = [], {}
    for name, doc in docs:
        for r in doc["results"]:
            order.setdefault(r["case"], len(order))
            load = r.get("load") or doc.get("load")
            row = {"Case": r["case"], "Threads": threads_of(r, doc),
                   "Token loop ms": ranged(r["naive_ms_median"], _ms_spread(r, "naive"), "{:.1f}"),
                   "Fast ms": ranged(r["fast_ms_median"], _ms_spread(r, "fast"), "{:.1f}"),
                   "Speedup": ranged(r["speedup"], r.get("speedup_spread"), suffix="x"),
                   "Target": f"≥ {r['target']:g}x", "Status": trusted(r["met"], load)}
            if "fast_roof_share" in r:
                goal = ROOF_TARGETS.get(r.get("op"))
                row["Fast GFLOP/s (share of roof)"] = (f"{r['fast_gflops_per_s']:.1f} ({r['fast_roof_share']:.0%} of "
                                                       f"{r['roof_gflops_per_s']:.0f})")
                row["Roof share target"] = (f"≥ {goal:.0%}: {trusted(r['fast_roof_share'] >= goal, load)}"
                                            if goal else DASH)
            if any(r.get("peers") for _, d in docs for r in d["results"]):
                row["flash-linear-attention peers"] = "; ".join(
                    f"{k} {p['ms']['median']:.1f} ms (ours {p['fast_speedup']:.2f}x faster)"
                    for k, p in sorted((r.get("peers") or {}).items())) or DASH
            row["max abs err"] = f"{r['max_abs_err']:.1e} (max abs out {r['max_abs_out']:.1f})"
            row["Load"] = load_cell(load, (doc.get("conditions") or {}).get("loadavg_1m"))
            row["File"] = f"`{name}.json`"
            rows.append(((order[r["case"]], threads_of(r, doc)), row))
    return [row for _, row in sorted(rows, key=lambda kv: kv[0])]


def _ms_spread(r: dict, side: str) -> Optional[dict]:
    if f"{side}_ms_max" in r:
        return {"min": r[f"{side}_ms_min"], "max": r[f"{side}_ms_max"]}
    return None


def overhead_rows(doc) -> List[dict]:
    rows = []
    for r in doc["results"]:
        rows.append({"Family": r["family"], "Model": r["model"], "Input": r["shape"], "Forced branch": r["branch"],
                     "Threads": threads_of(r, doc), "Routed layers": str(r["layers"]),
                     "Routed ms": ranged(r["routed_ms_median"], r.get("routed_ms")),
                     "Branch alone ms": ranged(r["direct_ms_median"], r.get("direct_ms")),
                     "Overhead": ranged(r["overhead"] * 100, _scaled(r.get("overhead_spread"), 100), "{:.1f}", "%"),
                     "min/min": f"{r['overhead_min_ratio'] * 100:.1f}%",
                     # files from before the column: not counted then
                     "Router FLOPs": f"{r['flops_overhead'] * 100:.1f}%" if "flops_overhead" in r else DASH,
                     f"≤ {r['target'] * 100:.0f}%": trusted(r["met"], r.get("load")),
                     "Load": load_cell(r.get("load"))})
    return rows


def _scaled(spread: Optional[dict], k: float) -> Optional[dict]:
    return {key: v * k for key, v in spread.items()} if spread else None


def peers_rows(doc) -> List[dict]:
    return [{"Model": r["model"], "Mix": r["mix"], "Threads": str(r["threads"]),
             "Params (M)": f"{r['params'] / 1e6:.1f}",
             "GFLOPs / image": f"{r['flops'] / doc['batch_size'] / 1e9:.2f}",
             "Step ms": ranged(r["step_ms"]["median"], r["step_ms"], "{:.1f}"),
             "Images/s": f"{r['images_per_s']:.1f}", "GFLOP/s": f"{r['gflops_per_s']:.1f}",
             "Load": load_cell(r.get("load"))}
            for r in sorted(doc["results"], key=lambda r: (r["zoo_model"] is None, r["model"], r["threads"]))]


def parity_rows(doc) -> List[dict]:
    target = doc.get("target", 0.8)
    return [{"Zoo model": q["entry"], "Threads": str(q["threads"]), "GFLOP/s": f"{q['gflops_per_s']:.1f}",
             "Best peer (GFLOP/s)": f"{q['best_peer']} ({q['best_peer_gflops_per_s']:.1f})",
             "Ratio": f"{q['ratio']:.2f}", f"≥ {target:g}": trusted(q["met"], {"reliable": q.get("reliable")}),
             "Images/s": f"{q['images_per_s']:.1f}",
             "Fastest peer (images/s)": f"{q['fastest_peer']} ({q['fastest_peer_images_per_s']:.1f})"}
            for q in sorted(doc["parity"], key=lambda q: (q["model"], q["entry"], q["threads"]))]
