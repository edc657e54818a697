"""Summary tables in, a deterministic markdown leaderboard out.

Determinism is the contract: the same results give a byte-identical page (no generation time,
stable sorting, fixed float formats), so the committed LEADERBOARD.md can be checked in CI
with ``check_leaderboard``.
"""
from __future__ import annotations

import difflib
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from tabulate import tabulate

from .aggregate import ModelRow, Stat, SuiteTable, TaskSpec, load_results, summarize
from .atomic import atomic_write
from .static_plans import verdicts
from .train_modes import LABEL_NOTE as TRAIN_MODE_NOTE

__all__ = ["build_leaderboard", "write_leaderboard", "check_leaderboard", "EXTRA_BEGIN",
           "EXTRA_END", "METRIC_COLUMNS"]

DASH = "–"   # "not measured": shown instead of ever inventing a value
LOADED = "†"  # a throughput measured under load
GENERATOR = "python -m harness leaderboard"
EXTRA_BEGIN = ("<!-- extra-sections:begin (Performance, figures: "
               "build_leaderboard(extra_sections=...)) -->")
EXTRA_END = "<!-- extra-sections:end -->"

# metric key -> (column header, decimals, what "better" means for the caption)
METRIC_COLUMNS = {
    "top1": ("Top-1 %", 2, "top-1 accuracy %, higher is better"),
    "perplexity": ("Perplexity", 2, "perplexity, lower is better"),
    "bits_per_byte": ("Bits/byte", 3, "bits/byte, lower is better"),
    "query_accuracy": ("Query accuracy", 3, "query accuracy, higher is better"),
    "routing_precision": ("Routing precision", 3, "routing precision"),
    "routing_recall": ("Routing recall", 3, "routing recall"),
    "query_share": ("Query share", 3, "query share"),
}
_THROUGHPUT_HEADER = {"samples_per_s": "Samples/s", "tokens_per_s": "Tokens/s"}
# executed FLOPs (2 x MACs, hard routing, sparse execution) per image / per token
_FLOPS_HEADER = {"executed_gflops": "GFLOPs/sample", "executed_gflops_per_token": "GFLOPs/token"}


def build_leaderboard(results_dir, extra_sections: Optional[Sequence[str]] = None
                      ) -> Tuple[str, List[str]]:
    """Markdown for every results_dir/*.jsonl, and the problems found (malformed lines etc.).

    `extra_sections` are markdown chunks (e.g. a "## Performance" section with figures)
    placed between the suite tables and the Problems section, inside marked comments.
    """
    records, problems = load_results(results_dir)
    tables, summary_problems = summarize(records)
    # Summary problems carry no line number; sort them so record order cannot matter.
    problems = problems + sorted(summary_problems)

    parts = [_header()]
    if not tables:
        parts.append("_No results yet: no valid records in the results directory._")
    suites = [t.suite for t in tables]
    for table in tables:
        parts.append(_render_table(table, show_task=suites.count(table.suite) > 1))
    parts.append(_extra(extra_sections or []))
    if problems:
        parts.append(_problems(problems))
    return "\n\n".join(p.strip("\n") for p in parts) + "\n", problems


def write_leaderboard(results_dir, out_path, extra_sections: Optional[Sequence[str]] = None
                      ) -> List[str]:
    """Write the leaderboard to out_path (always "\\n" line endings); return the problems."""
    markdown, problems = build_leaderboard(results_dir, extra_sections)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary beside it, then a rename: an interrupted write never leaves half a page
    atomic_write(out_path, markdown.encode("utf-8"))
    return problems


def check_leaderboard(results_dir, out_path, extra_sections: Optional[Sequence[str]] = None,
                      max_diff_lines: int = 40) -> bool:
    """True when out_path is exactly what write_leaderboard would produce.

    When it is not, print a short unified diff summary to stderr. Pass the same
    `extra_sections` that the writer used, or the extra sections count as stale.
    """
    expected, _ = build_leaderboard(results_dir, extra_sections)
    out_path = Path(out_path)
    if not out_path.exists():
        print(f"{out_path} does not exist; generate it with `{GENERATOR}`", file=sys.stderr)
        return False
    actual = out_path.read_bytes().decode("utf-8", errors="replace")
    if actual == expected:
        return True
    diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(),
                                     fromfile=f"{out_path} (committed)",
                                     tofile=f"{out_path} (from results)", lineterm=""))
    added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
    removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
    if not diff:   # same lines, different bytes: line endings or a trailing newline
        print(f"{out_path} is stale: whitespace/line endings differ; regenerate with "
              f"`{GENERATOR}`", file=sys.stderr)
        return False
    print(f"{out_path} is stale: +{added} -{removed} lines; regenerate with `{GENERATOR}`",
          file=sys.stderr)
    for line in diff[:max_diff_lines]:
        print(line, file=sys.stderr)
    if len(diff) > max_diff_lines:
        print(f"... {len(diff) - max_diff_lines} more diff lines", file=sys.stderr)
    return False


# ----------------------------------------------------------------------------- page parts


def _header() -> str:
    return "\n".join([
        "# Leaderboard",
        "",
        f"<!-- GENERATED FILE: do not edit by hand. Regenerate with `{GENERATOR}`. -->",
        f"> Generated by `{GENERATOR}` from the JSONL result files; do not edit by hand.",
        "",
        f"Cells are mean ± sample std (ddof=1) over seeds; n counts the seeds that have the "
        f"value. A seed run more than once counts once: its newest record by `created`. "
        f"{DASH} means not measured.",
    ])


def _render_table(table: SuiteTable, show_task: bool) -> str:
    spec = table.task
    title = f"## {table.suite}" + (f" ({spec.name})" if show_task else "")
    primary = METRIC_COLUMNS[spec.metrics[0]][2]
    caption = f"Task: {spec.name}. Ranked by {primary}; ties by model name."
    headers = (["Model"] + [METRIC_COLUMNS[m][0] for m in spec.metrics]
               + ["Params", _THROUGHPUT_HEADER[spec.throughput_key], _FLOPS_HEADER[spec.flops_key],
                  "Saved vs best static plan", "Saved vs dense reference", "Routing mix"])
    body = [_row_cells(row, spec) for row in table.rows]
    align = ["left"] + ["right"] * (len(headers) - 2) + ["left"]
    grid = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True,
                    colalign=align)
    saved = ("Saved vs best static plan: 1 - executed / executed FLOPs of the cheapest of the routed "
             "model's static plans on this board (the same network, each routed layer on one fixed "
             "choice, no routers, trained under the same recipe) whose mean "
             f"{spec.quality_name} is within one seed std of the routed model's, or better; negative "
             "when routing costs more; \"none as good\" when no trained plan reaches its quality. "
             "Saved vs dense reference: 1 - executed / FLOPs of the same weights with every branch "
             "run for every item (dense execution, every router on its full choice, no budget shift): "
             "a reference nobody would deploy, shown for scale.")
    parts = [title, caption, _conditions_line(table), grid] + ([spec.note] if spec.note else []) + [saved]
    if any(r.train_mode for r in table.rows):
        parts.append(TRAIN_MODE_NOTE)
    lines = verdicts(table.rows, spec, lambda r: _stat_cell(r.metrics[spec.quality], METRIC_COLUMNS[spec.quality][1]))
    if lines:
        parts.append("Routing against its static plans:\n\n" + "\n".join(lines))
    if any(r.loaded for r in table.rows):
        parts.append(f"{LOADED} Throughput measured while the 1-minute load average exceeded the machine's "
                     "core count (other processes wanted the CPU): indicative only. Highest load: "
                     + ", ".join(f"`{r.model}` {r.max_load:.2f}" for r in table.rows if r.loaded) + ".")
    parts.append(_commands(table.rows))
    if table.curves:
        parts.append(_curves(table))
    return "\n\n".join(parts)


def _curves(table: SuiteTable) -> str:
    """Each routed model's compute-budget curve: one trained checkpoint per seed, evaluated
    under `zoo.routing.flops_budget` at several fractions of its full form's FLOPs."""
    spec = table.task
    metric = spec.metrics[0]
    headers = ["Model", "Budget", METRIC_COLUMNS[metric][0], _FLOPS_HEADER[spec.flops_key],
               "Saved vs best static plan", "Saved vs dense reference"]
    plans = {r.model: r.plans_on_board for r in table.rows}
    body = []
    for curve in table.curves:
        for p in curve.points:
            body.append([curve.model, f"{p.target:g}", _stat_cell(p.metric, METRIC_COLUMNS[metric][1]),
                         DASH if p.executed_gflops is None else _gflops(p.executed_gflops),
                         _plan_cell(bool(plans.get(curve.model)), p.best_static, p.saved_vs_best_static),
                         DASH if p.flops_saved is None else f"{100 * p.flops_saved:.1f}%"])
    grid = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True,
                    colalign=["left"] + ["right"] * 5)
    return "\n\n".join([
        f"### {table.suite}: compute-budget curves",
        "One trained checkpoint per seed, evaluated with `--eval-only --flops-budget F`: every router's "
        "threshold moved (`zoo.routing.flops_budget`) so that the model executes about F of its dense "
        "reference's FLOPs on a calibration slice of the training split. Each point is held to the "
        "static plans as the rows above are. Points within one seed std of each other are not "
        "told apart by these runs.",
        grid])


def _row_cells(row: ModelRow, spec: TaskSpec) -> List[str]:
    cells = [row.model]
    cells += [_stat_cell(row.metrics[m], METRIC_COLUMNS[m][1]) for m in spec.metrics]
    cells += [
        DASH if row.params is None else human_count(row.params),
        DASH if row.throughput is None else f"{row.throughput:,.1f}" + (f" {LOADED}" if row.loaded else ""),
        DASH if row.executed_gflops is None else _gflops(row.executed_gflops),
        _plan_cell(bool(row.plans_on_board), row.best_static, row.saved_vs_best_static),
        DASH if row.flops_saved is None else f"{100 * row.flops_saved:.1f}%",
        _routing_cell(row.routing),
    ]
    return [c.replace("|", "\\|") for c in cells]   # a "|" would split the table cell


def _plan_cell(has_plans: bool, best: Optional[str], saved: Optional[float]) -> str:
    if not has_plans:
        return DASH
    if best is None:
        return "none as good"
    if saved is None:
        return DASH
    shown = f"{100 * saved:.1f}"
    return f"{'0.0' if shown == '-0.0' else shown}% ({best})"   # a rounded -0.0 is no saving either way


def _stat_cell(stat: Stat, decimals: int) -> str:
    if stat.mean is None:
        return DASH
    n = f"n={stat.n}" if stat.n == stat.total else f"n={stat.n} of {stat.total}"
    if stat.std is None:
        return f"{stat.mean:.{decimals}f} ({n})"
    return f"{stat.mean:.{decimals}f} ± {stat.std:.{decimals}f} ({n})"


def human_count(n: int) -> str:
    """1234567 -> '1.23M'; under a thousand as is."""
    if abs(n) < 1000:
        return str(n)
    for div, suffix in ((1e3, "K"), (1e6, "M"), (1e9, "B")):
        text = f"{n / div:.2f}"
        if abs(float(text)) < 1000:   # 999_999 is '1.00M', not '1000.00K'
            return text + suffix
    return f"{n / 1e12:.2f}T"


def _gflops(value: float) -> str:
    # Tiny models run at millions of FLOPs: keep 4 significant digits instead of fixed decimals.
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


def _routing_cell(routing) -> str:
    """'L1 conv 40/trans 35/both 25; L2 ...' (percent per choice), 'static' for no routers."""
    if routing is None:
        return DASH
    if not routing:
        return "static"
    parts = []
    for layer, shares in routing.items():
        if shares:
            parts.append(f"{layer} " + "/".join(f"{c} {100 * s:.0f}" for c, s in shares.items()))
    return "; ".join(parts) if parts else DASH


def _conditions_line(table: SuiteTable) -> str:
    if not table.conditions:
        return "Conditions: not recorded."
    parts = []
    for field, values in table.conditions:
        if len(values) == 1:
            parts.append(f"{field} {values[0]}")
        else:   # runs under different conditions are not strictly comparable: say so
            parts.append(f"{field} {' / '.join(values)} (mixed)")
    return "Conditions: " + "; ".join(parts) + "."


def _commands(rows: Sequence[ModelRow]) -> str:
    lines = ["Reproduce:", ""]
    for row in rows:
        seeds = ("seed " if len(row.seeds) == 1 else "seeds ") + ", ".join(map(str, row.seeds))
        recorded = [(seed, argv) for seed, argv in row.commands if argv is not None]
        if not recorded:
            lines.append(f"- {code(row.model)}: no command recorded ({seeds})")
            continue
        seed, argv = recorded[0]
        if len(recorded) == len(row.commands) and len({a for _, a in recorded}) == 1:
            note = seeds
        else:
            note = f"shown for seed {seed}; commands differ across {seeds}"
        lines.append(f"- {code(row.model)}: {code(shlex.join(argv))} ({note})")
    return "\n".join(lines)


def _extra(sections: Sequence[str]) -> str:
    body = [s.strip("\n") for s in sections if s.strip()]
    return "\n\n".join([EXTRA_BEGIN] + body + [EXTRA_END])


def _problems(problems: Sequence[str]) -> str:
    lines = ["## Problems", "",
             f"{len(problems)} problem(s) in the results; malformed lines were skipped:", ""]
    lines += [f"- {code(p)}" for p in problems]
    return "\n".join(lines)


def code(text: str) -> str:
    """A markdown code span that survives backticks inside `text`."""
    if "`" not in text:
        return f"`{text}`"
    return f"`` {text} ``"
