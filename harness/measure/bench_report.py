"""How `python -m harness bench` reports its results: the console text and timm benchmark.py's
CSV columns (`--results-file`). The JSON (`--json-out`) is the results themselves."""
from __future__ import annotations

from .. import options
from ..tasks import get_task

__all__ = ["csv_rows", "write_csv", "is_bench_csv", "format_result"]


def csv_rows(results: list) -> list:
    """timm benchmark.py's columns, one row per (model, execution mode). gmacs are per sample (per
    sequence for LMs): the executed count of that mode, FLOPs / 2."""
    rows = []
    for r in results:
        prefix = "train" if r["train"] else "infer"
        fl = r.get("flops") or {}
        for mode, run in r["runs"].items():
            items = r["input_shape"][0]
            row = {"model": r["model"], f"{prefix}_samples_per_sec": None, f"{prefix}_step_time": run["step_ms_median"],
                   f"{prefix}_batch_size": r["batch_size"],
                   f"{prefix}_img_size": r["input_shape"][-1] if get_task(r["task"]).size_option == "img_size" else None,
                   f"{prefix}_gmacs": fl[mode] / 2 / items / 1e9 if mode in fl else None,
                   "param_count": round(r["param_count"] / 1e6, 3), "execution": mode, "policy": r.get("policy"),
                   "suite": r["suite"], "threads": r["conditions"]["threads"],
                   "loadavg_1m": r["conditions"]["loadavg_1m"], "device": r["conditions"]["device"]}
            if "samples_per_s" in run:
                row[f"{prefix}_samples_per_sec"] = run["samples_per_s"]
            else:  # an LM step is batch x seq_len tokens
                row[f"{prefix}_tokens_per_sec"] = run["tokens_per_s"]
                row[f"{prefix}_samples_per_sec"] = run["tokens_per_s"] / r["input_shape"][-1]
            rows.append(row)
    return rows


def is_bench_csv(path: str) -> bool:
    """A CSV this module wrote: its header opens with `model,` and names param_count. Only such a
    file may be replaced by --results-file (leaderboard.atomic.refuse_foreign)."""
    from leaderboard.atomic import file_head
    header = file_head(path).split(b"\n", 1)[0]
    return header.startswith(b"model,") and b",param_count," in header


def write_csv(results: list, path: str) -> None:
    import pandas as pd
    from leaderboard.atomic import atomic_write
    options.check_writable(path, "results file", done="nothing was written", owns=is_bench_csv,
                           ours="a CSV file written by bench")
    atomic_write(path, pd.DataFrame(csv_rows(results)).to_csv(index=False))


def format_result(r: dict) -> str:
    c = r["conditions"]
    lines = [f"{r['model']} on {r['suite']} ({'train' if r['train'] else 'eval'}): {r['inputs']}",
             f"  conditions: device {c['device']}, dtype {c['dtype']}, threads {c['threads']}, batch {r['batch_size']}, "
             f"torch {c['torch']}, load {c['loadavg_1m']}, warmup {r['warmup']}, iters {r['iters']}"]
    if r.get("policy"):
        lines.append(f"  policy {r['policy']}: " + "; ".join(
            f"{layer} " + " ".join(f"{k}={v:.2f}" for k, v in s.items()) for layer, s in r["policy_shares"].items()))
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    load = r.get("load") or {}
    if load:
        lines.append(f"  load: average {load.get('loadavg_before')} before, {load.get('loadavg_after')} after; "
                     f"other processes {load.get('other_load')} cores while timing"
                     + ("" if load.get("reliable") is not False else f"; UNRELIABLE: {load['why_unreliable']}"))
    for mode, run in r["runs"].items():
        rate = next((f"{v:,.1f} {k.replace('_per_s', '')}/s" for k, v in run.items() if k.endswith("_per_s")))
        lines.append(f"  {mode:6s}: {rate}, step {run['step_ms_median']:.2f} ms median "
                     f"({run['step_ms_min']:.2f} min, {run.get('step_ms_max', float('nan')):.2f} max)")
    if "speedup_median" in r:
        fl = r["flops"]
        if "ratio" in fl and fl["ratio"]:
            lines.append(f"  speedup (dense/sparse, median of pairs) {r['speedup_median']:.3f}x | "
                         f"FLOPs ratio {fl['ratio']:.3f}x ({fl['dense'] / 1e6:.1f} / {fl['sparse'] / 1e6:.1f} "
                         f"MFLOPs, 2 x MACs) | efficiency {r['efficiency']:.3f}")
        else:
            lines.append(f"  speedup (dense/sparse) {r['speedup_median']:.3f}x | FLOPs: {fl.get('error')}")
        ref = r.get("reference")
        if ref and ref.get("flops_ratio"):
            lines.append(f"  against {ref['model']}: speedup {ref['speedup_median']:.3f}x "
                         f"({ref['speedup_spread']['min']:.3f}-{ref['speedup_spread']['max']:.3f}) | FLOPs ratio "
                         f"{ref['flops_ratio']:.3f}x | efficiency {ref['efficiency']:.3f} | dense mode / static "
                         f"{ref['dense_over_reference']['median']:.3f}x")
    if "memory" in r:
        mem = r["memory"]
        lines.append("  peak memory: " + ", ".join(
            f"{k.replace('_peak_bytes', '')} {v / 2**20:.2f} MiB" for k, v in mem.items() if k.endswith("_bytes"))
            + f" ({mem['method']})")
    return "\n".join(lines)
