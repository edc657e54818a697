"""The results store: one JSON object per line, appended by the harness, read by the leaderboard.

A results file is JSON Lines (``results/<suite>.jsonl`` by convention). Each line is one run,
written with sorted keys and no NaN/Infinity (non-finite floats become ``null``, so a diverged
run is still recorded and shows up as a missing value instead of vanishing).

Record schema (the harness writes it; only ``REQUIRED_FIELDS`` are enforced):

    model       str   registered model name, e.g. "convnext_atto"                   (required)
    suite       str   benchmark suite, e.g. "mnist5k"                               (required)
    seed        int   training seed                                                 (required)
    metrics     dict  evaluation metrics                                            (required)
                      image-classification: top1, top5 (percent, 0-100), loss
                      causal-lm: loss (nats/token), perplexity, bits_per_byte
                      associative-recall: query_accuracy (0-1), query_share, and for a
                      routed model routing_precision and routing_recall (0-1); loss,
                      perplexity and bits_per_byte over the query tokens
    task        str   "image-classification", "causal-lm" or "associative-recall"
    routing     dict  router layer name -> {"granularity": str, "choices": [str, ...],
                      "share": {choice: fraction 0-1}, "entropy": float (nats),
                      "load_balance": float, and "untrained": true where the gate was evaluated at its
                      zero init, never trained: harness/measure/untrained.py}; {} for a static model
    throughput  dict  samples_per_s (classification) or tokens_per_s (LM),
                      batch_size, threads, load_avg_1m, device, dtype
    flops       dict | null   executed FLOPs (harness.measure.executed_flops.measure_flops; null: not
                      measured). unit "GFLOPs (2 x MACs)"; executed_gflops (hard routing,
                      sparse execution) and dense_gflops (same weights, dense execution,
                      full policy), both per sample: one image, or one sequence for an LM
                      (per_sample says which); saved (fraction 0-1 of dense FLOPs skipped:
                      1 - executed / dense); samples and batch_size counted on. LMs add
                      executed_gflops_per_token, dense_gflops_per_token, tokens_per_sample
    params      int   parameter count
    train       dict  epochs, iters, wall_s (every session of a resumed run), sessions, lr,
                      batch_size (per rank), launcher, world_size, nnodes, per_rank_batch_size,
                      global_batch_size (nproc_per_node under torchrun), routing_mode
                      ({"train_execution": "dense" | "sparse", "capacity": null | 0-1}: how the
                      routers trained, harness/engine/routing_mode.py; null without routers;
                      absent in older records, which read as dense)
    config      dict  resolved (the fully resolved config dict) and sha256 (of it, without the
                      volatile keys experiment_name, work_dir, resume and load_from)
    env         dict  git_sha, git_dirty, python, torch, timm, mmengine, device, cpu, threads
    data        dict  what the eval split was: test_items, and the suite's metainfo (the Python
                      version and corpus SHA-256 for pydocs, the class count of an ImageFolder...)
    command     list  argv that reproduces the run (for a distributed run, under its launcher:
                      torchrun --nnodes --nproc_per_node, or srun --nodes --ntasks)
    created     str   UTC ISO 8601 time the record was written, e.g. "2024-05-01T12:00:00Z"
    static_form str   (routed zoo models) the static comparator the board saves FLOPs against
    budget      dict  (budget evaluations only) target, shift, calibration_fraction, reachable,
                      calibration_items, calibration_split: one point of a compute-budget curve

Why a lock *and* a single write: O_APPEND alone keeps small writes whole on local disks, but
not large lines or network filesystems; the lock makes "one process writes at a time" explicit.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, List, Tuple, Union

from filelock import FileLock

__all__ = ["REQUIRED_FIELDS", "TASKS", "append_record", "read_records", "record_problems"]

REQUIRED_FIELDS = ("model", "suite", "seed", "metrics")
TASKS = ("image-classification", "causal-lm", "associative-recall")

PathLike = Union[str, os.PathLike]


def _jsonable(obj: Any, where: str = "record") -> Any:
    """A copy of `obj` that json.dumps accepts with allow_nan=False.

    Non-finite floats become None. Numpy/torch scalars are unwrapped with .item() because the
    harness naturally hands those over; anything else unknown is an error, not a silent str().
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = _jsonable(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)
    if callable(item):
        return _jsonable(item(), where)
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serialisable")


def record_problems(record: Any) -> List[str]:
    """Why `record` is not a usable result record (empty list when it is)."""
    if not isinstance(record, dict):
        return [f"not a JSON object ({type(record).__name__})"]
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        return ["missing required keys: " + ", ".join(missing)]
    problems = _value_problems(record)
    if problems:  # the checks below read these values; one unusable value says enough
        return problems
    for key in ("model", "suite"):
        if not isinstance(record[key], str) or not record[key]:
            problems.append(f"{key} must be a non-empty string, got {record[key]!r}")
        elif any(c in _NOT_IN_NAMES or not c.isprintable() for c in record[key]):
            # a newline, "|" or HTML would break the page's table
            problems.append(f"{key} {record[key]!r} holds a character a name cannot have (control, | < > `)")
    if "task" in record and not (isinstance(record["task"], str) and record["task"]):
        problems.append(f"task must be a non-empty string, got {record['task']!r}")
    if "created" in record and not _utc_time(record["created"]):
        problems.append(f"created {record['created']!r} is not an ISO 8601 time that converts to UTC")
    throughput = record.get("throughput")
    if isinstance(throughput, dict):
        problems += [f"throughput.{k} must be >= 0, got {v!r}" for k, v in throughput.items()
                     if k.endswith("_per_s") and isinstance(v, (int, float)) and v < 0]
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        problems.append(f"seed must be an integer, got {record['seed']!r}")
    if not isinstance(record["metrics"], dict):
        problems.append(f"metrics must be an object, got {type(record['metrics']).__name__}")
    else:
        # null is a diverged run (kept, shown as missing); a string would render as a number
        problems += [f"metrics.{k} must be a number or null, got {v!r}" for k, v in record["metrics"].items()
                     if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    return problems


_NOT_IN_NAMES = set("|<>`")
_MAX_NUMBER = 1e300  # beyond it a mean or a ratio of two values overflows a float


def _value_problems(record: dict) -> List[str]:
    """Values no reader can use, anywhere in the record: a number a float cannot hold (an
    integer of 400 digits overflows, 1e400 parses as inf) and text that is not valid Unicode
    (a lone surrogate cannot be written as UTF-8). Walked without recursion: a parsed record
    may be nested as deep as the JSON parser allowed."""
    stack: List[Tuple[str, Any]] = [("", record)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{where}.{k}" if where else k, v) for k, v in value.items()]
            stack += [(where or "record", k) for k in value]  # keys are text too
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not (abs(value) <= _MAX_NUMBER if isinstance(value, int) else math.isfinite(value)
                    and abs(value) <= _MAX_NUMBER):
                shown = f"an integer of {len(str(abs(value)))} digits" if isinstance(value, int) else repr(value)
                return [f"{where} is {shown}, not a number a float can hold"]
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return [f"{where} holds text that is not valid Unicode (a lone surrogate)"]
    return []


def _utc_time(value: Any) -> bool:
    from datetime import datetime, timezone
    if not isinstance(value, str):
        return False
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is not None:
            dt.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return False
    return True


def append_record(path: PathLike, record: dict) -> None:
    """Append `record` as one line to the JSONL file at `path`, safely across processes.

    Raises ValueError for a record the reader would reject, so bad data fails at the writer,
    and OSError when the write fails, after cutting the file back to its previous size.
    """
    record = _jsonable(record)
    problems = record_problems(record)
    if problems:
        raise ValueError(f"refusing to append an invalid record: {'; '.join(problems)}")
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    data = line.encode("utf-8")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        with open(path, "ab") as f:
            size = f.tell()
            # A writer killed mid-line leaves no trailing newline; start on a fresh line so
            # only the torn line is malformed, not ours too.
            if size > 0 and not _ends_with_newline(path):
                data = b"\n" + data
            try:
                _write(f, data)
            except OSError:
                # a full disk (ENOSPC) can leave part of the line written: cut the file back to
                # what it was, so the store never holds a torn record of ours
                f.truncate(size)
                raise


def _write(f, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _reject_constant(name: str) -> None:
    # The writer never emits NaN/Infinity; one in the file was hand-edited or foreign.
    raise ValueError(f"non-finite number {name} (not valid JSON)")


def read_records(path: PathLike, label: str | None = None) -> Tuple[List[dict], List[str]]:
    """Read every valid record of a JSONL results file.

    Returns (records, problems). Each malformed line is skipped and reported as
    "<label>:<lineno>: <reason>" (label defaults to str(path); line numbers start at 1).
    Blank lines are ignored. A missing file is simply empty: no run has written to it yet.
    """
    path = Path(path)
    label = str(path) if label is None else label
    if not path.exists():
        return [], []
    if not path.is_file():  # a folder (or fifo) named x.jsonl: reading it would fail or block
        return [], [f"{label}: not a regular file; skipped"]
    records, problems = [], []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as e:
        return [], [f"{label}: cannot be read ({e.strerror or e}); skipped"]
    # the last piece has no newline: a writer may be appending it right now (append_record
    # writes a whole line at once, but a reader can still see a prefix); a cut one that does
    # not parse is that line in flight, not a problem
    in_flight = len(lines)
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{label}:{lineno}: not UTF-8 ({e.reason})")
            continue
        if not text.strip():
            continue
        try:
            record = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            if lineno != in_flight:
                problems.append(f"{label}:{lineno}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        except ValueError as e:  # NaN, or an integer longer than Python converts
            problems.append(f"{label}:{lineno}: {str(e).splitlines()[0]}")
            continue
        except RecursionError:
            problems.append(f"{label}:{lineno}: nested too deeply to read")
            continue
        reasons = record_problems(record)
        if reasons:
            problems.append(f"{label}:{lineno}: {'; '.join(reasons)}")
            continue
        records.append(record)
    return records, problems
