"""Model names on the command line: zoo names and patterns, timm:NAME, the task each runs, and
where a run's work dir is by default."""
from __future__ import annotations

import difflib
import os
from typing import List, Sequence

from . import options
from .errors import HarnessError
from .suites import Suite
from .tasks import IMAGE_TASK, get_task

__all__ = ["IMAGE_TASK", "TIMM_PREFIX", "resolve_models", "model_task", "check_tasks", "default_work_dir"]

TIMM_PREFIX = "timm:"  # timm:NAME runs timm's own model NAME


def _timm_names(pattern: str) -> List[str]:
    import timm
    return timm.list_models(pattern) if any(c in pattern for c in "*?[") else (
        [pattern] if timm.is_model(pattern) else [])


def resolve_models(patterns: Sequence[str]) -> List[str]:
    """Zoo names / fnmatch patterns and timm:NAME (patterns too), in order, without repeats."""
    import zoo
    names: List[str] = []
    for pat in patterns:
        if pat.startswith(TIMM_PREFIX):
            found = [TIMM_PREFIX + n for n in _timm_names(pat[len(TIMM_PREFIX):])]
            pool = [TIMM_PREFIX + n for n in _close_pool_timm(pat[len(TIMM_PREFIX):])]
        else:
            found = zoo.list_models(pat)
            pool = zoo.list_models()
        if not found:
            close = difflib.get_close_matches(pat, pool, n=5, cutoff=0.4)
            stem = pat.split(":")[-1].strip("*?[]").split("_")[0]
            close += [n for n in pool if stem and stem in n and n not in close][: 5 - len(close)]
            hint = f"; closest: {', '.join(close)}" if close else "; see `python -m harness list`"
            raise HarnessError(f"no model matches {pat!r}{hint}")
        names += [n for n in found if n not in names]
    return names


def _close_pool_timm(name: str) -> List[str]:
    import timm
    stem = name.strip("*?[]")[:4]
    return timm.list_models(f"{stem}*") if stem else []


def model_task(name: str) -> str:
    if name.startswith(TIMM_PREFIX):
        return IMAGE_TASK
    import zoo
    return zoo.model_info(name)["task"]


def check_tasks(names: Sequence[str], suite: Suite) -> None:
    """Every model runs the suite's task: its class declares the task's `model_task` (a causal
    LM runs associative recall, too)."""
    wanted = get_task(suite.task).model_task
    for n in names:
        task = model_task(n)
        if task != wanted:
            raise HarnessError(f"{n} is a {task} model and cannot run on suite {suite.name} "
                               f"({suite.task}); pick a {wanted} model (`python -m harness list`)")


def default_work_dir(suite: str, model: str, seed: int) -> str:
    return os.path.join("work_dirs", suite, options.work_dir_name(model), f"seed{seed}")
