"""Model names on the command line: zoo names and patterns, timm:NAME, shipped pretrained tags
(`dhvn_nano.mnist5k`), the task each runs, and where a run's work dir is by default.

A shipped tag (`zoo.pretrained.PRETRAINED`) is a model name like any other here, so every verb
that takes a model takes one: the network is built with the tag's weights
(`harness.engine.wrappers.build_network`), on the tag's own suite only (`check_tasks`), and
never together with --checkpoint (`check_weights`) (docs/DESIGN.md, "Pretrained tags in the CLI")."""
from __future__ import annotations

import difflib
import fnmatch
import os
from typing import List, Optional, Sequence

from . import options
from .errors import HarnessError
from .suites import Suite
from .tasks import IMAGE_TASK, get_task

__all__ = ["IMAGE_TASK", "TIMM_PREFIX", "resolve_models", "model_task", "check_tasks", "default_work_dir",
           "shipped_tag", "base_model", "tag_suite", "check_weights", "tag_provenance"]

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
            # a name with a dot can only be a tag: zoo names have none (`*.mnist5k` matches tags)
            found = zoo.list_models(pat) or (_tags_matching(pat) if "." in pat else [])
            pool = zoo.list_models() + _tags_matching("*")
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


def _tags_matching(pattern: str) -> List[str]:
    from zoo.pretrained import PRETRAINED
    return [n for n in PRETRAINED if fnmatch.fnmatchcase(n, pattern)]


def shipped_tag(name: str):
    """The shipped pretrained tag (`zoo.pretrained.PretrainedTag`) `name` is, else None."""
    if name.startswith(TIMM_PREFIX) or "." not in name:
        return None
    from zoo.pretrained import PRETRAINED
    return PRETRAINED.get(name)


def base_model(name: str) -> str:
    """The registered zoo model of a tag (`dhvn_nano` for `dhvn_nano.mnist5k`), else `name`."""
    tag = shipped_tag(name)
    return tag.model if tag is not None else name


def tag_suite(name: str) -> Optional[str]:
    """The suite a tag's weights were trained on (its suffix), else None."""
    tag = shipped_tag(name)
    return tag.tag if tag is not None else None


def check_weights(name: str, checkpoint: Optional[str]) -> None:
    """A tag brings its own weights: with --checkpoint too, which should load is unclear."""
    tag = shipped_tag(name)
    if tag is not None and checkpoint:
        raise HarnessError(f"{name} is a shipped tag and brings its own weights; drop --checkpoint, or name "
                           f"the untagged model {tag.model} to load {checkpoint}")


def tag_provenance(name: str) -> dict:
    """What a record says of a tag's weights: the tag, its file (relative to the installed package)
    and the file's SHA-256; {} for any other name."""
    tag = shipped_tag(name)
    if tag is None:
        return {}
    import hashlib
    with open(tag.file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return dict(pretrained=name, weights=os.path.join("zoo", "weights", os.path.basename(tag.file)),
                weights_sha256=digest)


def model_task(name: str) -> str:
    if name.startswith(TIMM_PREFIX):
        return IMAGE_TASK
    import zoo
    return zoo.model_info(base_model(name))["task"]


def check_tasks(names: Sequence[str], suite: Suite) -> None:
    """Every model runs the suite's task: its class declares the task's `model_task` (a causal
    LM runs associative recall, too). A shipped tag runs on the suite it was trained on only: its
    classes, input shape and normalisation are that suite's."""
    wanted = get_task(suite.task).model_task
    for n in names:
        trained_on = tag_suite(n)
        if trained_on is not None and trained_on != suite.name:
            raise HarnessError(f"{n} was trained on suite {trained_on}, not {suite.name}: use --suite {trained_on}, "
                               f"or the untagged {base_model(n)} (fresh weights)")
        task = model_task(n)
        if task != wanted:
            raise HarnessError(f"{n} is a {task} model and cannot run on suite {suite.name} "
                               f"({suite.task}); pick a {wanted} model (`python -m harness list`)")


def default_work_dir(suite: str, model: str, seed: int) -> str:
    return os.path.join("work_dirs", suite, options.work_dir_name(model), f"seed{seed}")
