"""The progress bar of every long command (the embedded job, bench, perf_report): step k of N,
elapsed and ETA, from rich. It draws on stderr, so a command's stdout (tables, --json) stays clean.
A command run inside another's bar (bench inside perf_report) reports to the outer bar only:
rich allows one live display at a time."""
from __future__ import annotations

import contextlib

__all__ = ["job_progress"]

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


@contextlib.contextmanager
def job_progress(transient: bool = False):
    if _live:
        yield _Inner(_live[-1])
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
