"""The progress bar of every long command (the embedded job, bench, perf_report): step k of N,
elapsed and ETA, from rich. It draws on stderr, so a command's stdout (tables, --json) stays clean.
A command run inside another's bar (bench inside perf_report) reports to the outer bar only:
rich allows one live display at a time.

When stderr is not a terminal (nohup, tee, CI), rich would draw nothing until the end: a plain
reporter stands in, and `report_step` prints one line per finished step with the elapsed time
and the ETA (the mean step time so far times the steps left)."""
from __future__ import annotations

import contextlib
import sys
import time
from types import SimpleNamespace

__all__ = ["job_progress", "report_step"]

_live = []


class _Inner:
    """Stands in for a nested bar: tasks are counted by the outer one."""

    def __init__(self, outer):
        self.console = outer.console

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


class _PlainConsole:
    def print(self, *parts, **kwargs) -> None:
        print(*parts, file=sys.stderr, flush=True)


class _Plain:
    """Progress as plain lines on stderr (see the module docstring)."""

    def __init__(self):
        self.console, self.tasks = _PlainConsole(), []

    def add_task(self, description: str = "", total=None, **kwargs) -> int:
        # the fields of rich's Task that callers read
        self.tasks.append(SimpleNamespace(description=description, total=total, completed=0, t0=time.perf_counter()))
        return len(self.tasks) - 1

    def update(self, task: int, description=None, total=None, **kwargs) -> None:
        t = self.tasks[task]
        t.description = description if description is not None else t.description
        t.total = total if total is not None else t.total

    def advance(self, task: int, advance: int = 1) -> None:
        self.tasks[task].completed += advance

    def line(self, task: int, text: str) -> str:
        t = self.tasks[task]
        elapsed = time.perf_counter() - t.t0
        left = (t.total or 0) - t.completed
        eta = _clock(elapsed / t.completed * left) if t.completed and t.total else "?"
        return f"[{t.completed}/{t.total or '?'} {_clock(elapsed)} elapsed, eta {eta}] {text}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def report_step(bar, task: int, text: str) -> None:
    """One step finished: advance the bar and say `text` (plain: one line with elapsed and ETA)."""
    bar.advance(task)
    if isinstance(bar, _Plain):
        bar.console.print(bar.line(task, text))
    else:
        bar.console.print(text)


@contextlib.contextmanager
def job_progress(transient: bool = False):
    if _live:
        yield _Inner(_live[-1])
        return
    if not sys.stderr.isatty():
        plain = _Plain()
        _live.append(plain)
        try:
            yield plain
        finally:
            _live.pop()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=transient) as bar:
        _live.append(bar)
        try:
            yield bar
        finally:
            _live.pop()
