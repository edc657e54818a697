"""`python -m harness compare`: models side by side, from the results store and the training logs.

    python -m harness compare --models dhvn_nano dhvn_nano_static --suite mnist5k \\
        [--work-dirs work_dirs/embedded/mnist5k] [--results-dir leaderboard/results] [--out DIR]

Writes, into --out (default comparisons/<suite>):
  * loss_curves.png/.json: the task loss (loss_ce / loss_lm, as mmengine's LoggerHook logged it:
    a running mean over its window) against the iteration, every seed thin, the seed mean bold;
  * routing_training.png/.json: routing statistics over training, as far as the logs hold them
    (see `ROUTING_NOTE`);
  * compare.md: final metrics, params, throughput, FLOPs and routing mix per model
    (pandas + tabulate), and what was missing. The table is also printed.

Training logs are mmengine's LocalVisBackend files, work_dir/<timestamp>/vis_data/scalars.json,
one JSON object per logged training iteration. A work dir that holds several sessions uses the
newest one, prefixed with the older sessions' iterations when the newest was a resume.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Dict, List, Optional, Sequence

from .. import options
from ..errors import HarnessError

__all__ = ["add_parser", "cmd_compare", "compare", "find_runs", "read_training_log", "ROUTING_NOTE"]

TASK_LOSSES = ("loss_ce", "loss_lm")
ROUTING_NOTE = ("These training logs hold no per-iteration routing shares (RoutingLogHook writes "
                "`routing/<layer>/<choice>` at every logger interval; logs from before it, or of static "
                "models only, lack them); what they hold are the weighted auxiliary losses "
                "(`loss_load_balance`, `loss_gate_entropy`, `loss_alpha_variance`, `loss_ponder`).")


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(
        "compare", help="loss curves, final metrics and routing over training of models side by side",
        description="Compare models on one suite: loss curves from the mmengine training logs in the work "
                    "dirs, a markdown table of final metrics / params / throughput / FLOPs / routing from "
                    "the results store, and routing statistics over training where logged.",
        epilog="Example:\n  python -m harness compare --models dhvn_nano dhvn_nano_static --suite mnist5k "
               "--work-dirs work_dirs/embedded/mnist5k",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add(p, "models", metavar="MODEL", help="zoo names or timm:NAME")
    options.add(p, "suite", help="suite (default: the one suite of the results store holding every model)")
    p.add_argument("--work-dirs", nargs="+", metavar="DIR",
                   help="roots holding <model>/seed<k>/ (what `run --work-dir DIR` writes for several runs), "
                        "or one work dir per model in --models order "
                        "(default: work_dirs/<suite> and work_dirs/embedded/<suite>)")
    options.add(p, "results_dir")
    p.add_argument("--out", help="output folder (default: comparisons/<suite>)")
    p.set_defaults(func=cmd_compare)
    return "compare"


def cmd_compare(args, argv=()) -> int:
    result = compare(args.models, args.suite, work_dirs=args.work_dirs, results_dir=args.results_dir,
                     out=args.out)
    print(result["markdown"])
    for pic in result["pictures"]:
        print(f"harness: wrote {pic['png']} ({pic['size'][0]}x{pic['size'][1]}) and {os.path.basename(pic['json'])}")
    print(f"harness: wrote {result['markdown_path']}")
    return 0


# ----------------------------------------------------------------------------- training logs


def _is_work_dir(path: str) -> bool:
    return bool(glob.glob(os.path.join(path, "*", "vis_data", "scalars.json")))


def _seed_dirs(path: str) -> Dict[int, str]:
    out = {}
    for d in glob.glob(os.path.join(path, "seed*")):
        tail = os.path.basename(d)[4:]
        if tail.isdigit() and os.path.isdir(d):
            out[int(tail)] = d
    return out


def find_runs(models: Sequence[str], suite: str, work_dirs: Optional[Sequence[str]]) -> Dict[str, Dict[int, str]]:
    """model -> {seed: work dir}. Roots hold <model>/seed<k>; with one entry per model, an entry
    may also be that model's own seed folder root or a single work dir (seed unknown: -1)."""
    roots = list(work_dirs) if work_dirs else [os.path.join("work_dirs", suite),
                                                os.path.join("work_dirs", "embedded", suite)]
    for r in work_dirs or []:
        if not os.path.isdir(r):
            raise HarnessError(f"--work-dirs {r} is not a folder")
    found: Dict[str, Dict[int, str]] = {}
    for k, model in enumerate(models):
        runs: Dict[int, str] = {}
        for root in roots:
            runs = _seed_dirs(os.path.join(root, options.work_dir_name(model)))
            if runs:
                break
        if not runs and work_dirs and len(work_dirs) == len(models):
            own = work_dirs[k]
            runs = _seed_dirs(own) or ({-1: own} if _is_work_dir(own) else {})
        found[model] = runs
    return found


def _session(path: str) -> List[dict]:
    """The rows of one mmengine scalars.json with a numeric `iter` and `loss`. A line that does not
    parse is skipped (a session killed mid-write leaves a partial last line); a log that cannot be
    one (a folder, bytes that are not UTF-8, nesting past the parser, an `iter` that is no whole
    number) is a one-line error naming the file and the line: plotting it would fail in a traceback."""
    rows = []
    if not os.path.isfile(path):
        raise HarnessError(f"training log {path} is {'a folder' if os.path.isdir(path) else 'not a file'}, "
                           f"not mmengine's scalars.json; nothing was drawn")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise HarnessError(f"training log {path}, line {number}: not UTF-8 text; nothing was drawn") from None
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a session killed mid-write leaves a partial last line
            except RecursionError:
                raise HarnessError(f"training log {path}, line {number}: nested too deeply to read; "
                                   f"nothing was drawn") from None
            if not (isinstance(row, dict) and "iter" in row and "loss" in row):
                continue
            it, loss = row["iter"], row["loss"]
            if not isinstance(it, int) or isinstance(it, bool):
                raise HarnessError(f"training log {path}, line {number}: iter is {it!r}, not a whole number; "
                                   f"nothing was drawn")
            if not isinstance(loss, (int, float)) or isinstance(loss, bool):
                raise HarnessError(f"training log {path}, line {number}: loss is {loss!r}, not a number; "
                                   f"nothing was drawn")
            rows.append(row)
    return rows


def read_training_log(work_dir: str) -> List[dict]:
    """The logged training iterations of the run that wrote work_dir's last checkpoint."""
    sessions = [s for s in (_session(p) for p in sorted(glob.glob(os.path.join(work_dir, "*", "vis_data",
                                                                              "scalars.json")))) if s]
    if not sessions:
        return []
    chain = sessions[-1]
    for older in reversed(sessions[:-1]):
        first = chain[0]["iter"]
        if first <= older[0]["iter"]:
            break  # the newer session started from scratch: older ones are other runs
        chain = [r for r in older if r["iter"] < first] + chain   # the newer one resumed this
    return chain


# ----------------------------------------------------------------------------- comparison


def _is_compare_page(path: str) -> bool:
    """compare.md as `compare` writes it: a heading, then its table, then the two pictures' links."""
    from leaderboard.atomic import file_head
    text = file_head(path, 1 << 20)
    return text.startswith(b"# ") and b"![loss curves](loss_curves.png)" in text


def _untrained_notes(names: Sequence[str], suite: str, records: List[dict]) -> List[str]:
    """A record whose routers were evaluated untrained (`"untrained": true` in its routing, set by
    `run`; docs/DESIGN.md, "Untrained routers") is said so on stderr and on the page, in one line."""
    import sys
    fresh = [m for m in names if any(r["suite"] == suite and r["model"] == m and
                                     any(v.get("untrained") for v in (r.get("routing") or {}).values())
                                     for r in records)]
    if not fresh:
        return []
    line = (f"{', '.join(fresh)}: routing figures from routers that were never trained (gates at their zero "
            f"init, every item on the cheapest choice)")
    print(f"harness: note: {line}", file=sys.stderr)
    return [line + "."]


def _infer_suite(models: Sequence[str], records: List[dict]) -> str:
    suites = sorted({r["suite"] for r in records if r["model"] == models[0]})
    common = [s for s in suites if all(any(r["suite"] == s and r["model"] == m for r in records) for m in models)]
    if len(common) == 1:
        return common[0]
    which = f"suites {', '.join(common)} all hold" if common else "no suite of the results store holds"
    raise HarnessError(f"{which} every one of {', '.join(models)}; give --suite")


def compare(models: Sequence[str], suite: Optional[str] = None, work_dirs: Optional[Sequence[str]] = None,
            results_dir: str = os.path.join("leaderboard", "results"), out: Optional[str] = None) -> dict:
    from leaderboard.aggregate import load_results
    from ..names import resolve_models
    from ..suites import get_suite
    from ..viz.compare_plots import loss_curves, markdown_table, routing_training

    if len(models) < 1:
        raise HarnessError("compare needs at least one model")
    names = resolve_models(models)  # unknown names: one line with the closest names
    records, _ = load_results(results_dir) if os.path.isdir(results_dir) else ([], [])
    suite = get_suite(suite).name if suite else _infer_suite(names, records)
    runs = find_runs(names, suite, work_dirs)
    logs = {m: {seed: read_training_log(d) for seed, d in sorted(runs[m].items())} for m in names}
    in_store = {m for m in names if any(r["suite"] == suite and r["model"] == m for r in records)}
    nothing = [m for m in names if m not in in_store and not any(logs[m].values())]
    if nothing:
        raise HarnessError(f"nothing to compare for {', '.join(nothing)} on {suite}: no record in "
                           f"{results_dir} and no training log under "
                           f"{', '.join(work_dirs or [f'work_dirs/{suite}', f'work_dirs/embedded/{suite}'])}")
    out = out or os.path.join("comparisons", suite)
    options.check_writable(out, "output folder", done="nothing was drawn", folder_only=True)
    options.check_writable(os.path.join(out, "compare.md"), "comparison page", done="nothing was drawn",
                           owns=_is_compare_page, ours="a page written by compare")
    meta = dict(suite=suite, models=list(names), results_dir=results_dir,
                work_dirs={m: {str(s): d for s, d in runs[m].items()} for m in names})
    pictures = [loss_curves(logs, out, meta), routing_training(logs, out, meta, ROUTING_NOTE)]
    table, notes = markdown_table(names, suite, records)
    notes += _untrained_notes(names, suite, records)
    missing_logs = [m for m in names if not any(logs[m].values())]
    if missing_logs:
        notes.append(f"No training log found for {', '.join(missing_logs)} (curves left out).")
    notes.append(pictures[1]["note"])
    md = "\n".join([f"# {' vs '.join(names)} on {suite}", "", table, ""]
                   + [f"- {n}" for n in notes]
                   + ["", "![loss curves](loss_curves.png)", "", "![routing over training](routing_training.png)", ""])
    from leaderboard.atomic import atomic_write
    path = os.path.join(out, "compare.md")
    atomic_write(path, md)
    return dict(pictures=pictures, markdown=md, markdown_path=path, suite=suite)
