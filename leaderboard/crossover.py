"""The crossover table of the Performance section: per family, routing mix and thread count,
sparse execution against the static always-full form at each input size, and the smallest size
at which sparse execution pays (`python -m benchmarks.crossover` writes the files it reads).

A size pays when the sparse run is faster than the static form (median speedup > 1) with
efficiency (speedup / FLOPs ratio) >= EFFICIENCY_TARGET, on a figure measured under the run's
load threshold: a figure taken under load cannot say that a size pays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .families import family_name, rank
from .perf_tables import DASH, UNRELIABLE, load_perf, table

__all__ = ["crossover_parts", "load_crossover", "CROSSOVER_DIRNAME", "pays"]

CROSSOVER_DIRNAME = "crossover"
EFFICIENCY_TARGET = 0.9
REGENERATE = "python -m benchmarks.crossover"


def load_crossover(perf_dir) -> Dict[str, dict]:
    """name -> document for every crossover/*.json under perf_dir, sorted by name."""
    return load_perf(Path(perf_dir) / CROSSOVER_DIRNAME)


def _size(r: dict) -> int:
    shape = r["input_shape"]  # (B, T) token ids for any LM task, (B, C, H, W) images
    return shape[1] if len(shape) == 2 else shape[-1]


def pays(r: dict) -> Optional[bool]:
    """Whether this result's sparse run beats the static form (None: no reference figure)."""
    ref = r.get("reference") or {}
    speedup, eff = ref.get("speedup_median"), ref.get("efficiency")
    if speedup is None or eff is None:
        return None
    reliable = (r.get("load") or {}).get("reliable") is not False
    return speedup > 1.0 and eff >= EFFICIENCY_TARGET and reliable


def _cell(r: dict) -> str:
    ref = r.get("reference") or {}
    if ref.get("speedup_median") is None:
        return DASH
    text = f"{ref['speedup_median']:.2f}x, eff {ref['efficiency']:.2f}"
    if (r.get("load") or {}).get("reliable") is False:
        text += f" {UNRELIABLE}"
    return f"**{text}**" if pays(r) else text


def _mix(name: str, r: dict) -> str:
    return r["policy"] if r.get("policy") else "trained"


def _rows(docs: Dict[str, dict]) -> Tuple[List[dict], List[int]]:
    grid: Dict[Tuple[str, str, str, int], Dict[int, dict]] = {}
    sizes = set()
    for name, doc in docs.items():
        if doc.get("skipped"):
            continue
        for r in doc.get("results") or []:
            if "reference" not in r:
                continue
            threads = (r.get("conditions") or {}).get("threads")
            key = (family_name(r["model"], r.get("family")) or "", r["model"], _mix(name, r), threads)
            grid.setdefault(key, {})[_size(r)] = r
            sizes.add(_size(r))
    return [dict(key=k, by_size=v) for k, v in sorted(grid.items(), key=lambda kv: (
        rank(kv[0][0]), kv[0][2] == "trained", kv[0][2], kv[0][3] or 0))], \
        sorted(sizes)


def crossover_parts(perf_dir) -> List[str]:
    """Markdown parts of the crossover subsection (empty when nothing was measured)."""
    docs = load_crossover(perf_dir)
    if not docs:
        return []
    rows, _ = _rows(docs)
    families = sorted({row["key"][0] for row in rows}, key=rank)   # display order (docs/DESIGN.md, "Families")
    parts = ["### Crossover: where sparse execution pays against the static form",
             "Each family's routed model against its static always-full form (as in the table above), across "
             "input sizes (vision: the image side in px; LM: tokens per sequence), at forced skips and, "
             "where the embedded job trained a checkpoint at that size, at its trained mix. Cell: median "
             "speedup of sparse over static, and efficiency = speedup / FLOPs ratio; **bold** where sparse "
             f"execution pays (speedup > 1 and efficiency ≥ {EFFICIENCY_TARGET}, under the load threshold). "
             "\"Pays from\" is the smallest size that pays, when every larger size measured pays too. "
             f"Regenerate with `{REGENERATE}`."]
    for family in families:
        fam_rows = [row for row in rows if row["key"][0] == family]
        fam_sizes = sorted({s for row in fam_rows for s in row["by_size"]})
        out = []
        for row in fam_rows:
            _, model, mix, threads = row["key"]
            cells = {str(s): _cell(row["by_size"][s]) if s in row["by_size"] else DASH for s in fam_sizes}
            out.append({"model": f"`{model}`", "mix": mix, "threads": threads, **cells,
                        "pays from": _pays_from(row["by_size"], fam_sizes)})
        parts += [f"**{family}**", table(out)]
    commands = sorted({doc.get("command", "") for doc in docs.values() if doc.get("command")})
    parts.append(f"{len(commands)} commands, each in its file under `leaderboard/perf/{CROSSOVER_DIRNAME}/`.")
    return parts


def _pays_from(by_size: Dict[int, dict], sizes: List[int]) -> str:
    """The smallest measured size from which every measured size pays; 'none' when the largest does not."""
    measured = [s for s in sizes if s in by_size and pays(by_size[s]) is not None]
    if not measured:
        return DASH
    first = None
    for s in reversed(measured):
        if not pays(by_size[s]):
            break
        first = s
    return str(first) if first is not None else "none"
