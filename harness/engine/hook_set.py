"""The harness's hooks on every run, whatever a config of one's own says about hooks.

They are named `default_hooks` in `configs/_base_/default_runtime.py`, which mmengine merges by key,
so a child config's `custom_hooks = [...]` (a list, which mmengine replaces whole) no longer drops
them (docs/DESIGN.md, "Hooks a config cannot lose"). What is left to do on a resolved config:

* a config that does not take a suite config as `_base_` gets every harness hook it lacks;
* a hook of the same type in `custom_hooks` runs in place of the harness's one, with a note, since
  two TauScheduleHooks (or two NaN guards) would fight over the same state;
* `default_hooks.<name>=None` drops a hook on purpose; mmengine itself only accepts None for its own
  six keys (it asserts on any other), so the harness removes the key for it.
"""
from __future__ import annotations

import copy
import functools
import os
from typing import List

__all__ = ["BASE_RUNTIME", "harness_hooks", "keep_harness_hooks"]

BASE_RUNTIME = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs", "_base_", "default_runtime.py")
# the keys mmengine's Runner.register_default_hooks knows, for which it pops a None itself
_MMENGINE_KEYS = ("runtime_info", "timer", "sampler_seed", "logger", "param_scheduler", "checkpoint")


@functools.lru_cache(maxsize=1)
def _base_hooks() -> dict:
    from mmengine.config import Config
    return Config.fromfile(BASE_RUNTIME, import_custom_modules=False).default_hooks.to_dict()


def harness_hooks() -> dict:
    """name -> hook config: every default hook of the base runtime (a fresh copy)."""
    return copy.deepcopy(_base_hooks())


def _type_name(hook) -> str:
    kind = hook.get("type") if hasattr(hook, "get") else type(hook).__name__  # a dict, or a built Hook
    return getattr(kind, "__name__", str(kind))


def keep_harness_hooks(cfg) -> List[str]:
    """Complete `cfg.default_hooks` with the harness's hooks, in place; returns the notes to print
    (one line each), one per harness hook that a `custom_hooks` entry of the same type replaces."""
    hooks = dict(cfg.get("default_hooks") or {})
    for name, hook in harness_hooks().items():
        hooks.setdefault(name, hook)  # absent (no suite _base_); None stays: dropped on purpose
    custom = {_type_name(h) for h in cfg.get("custom_hooks") or []}
    notes = []
    for name, hook in list(hooks.items()):
        if hook is not None and _type_name(hook) in custom:
            notes.append(f"harness: custom_hooks' {_type_name(hook)} runs in place of the harness's "
                         f"default_hooks.{name} (tune that one by key instead to keep a single one)")
            hooks[name] = None
    cfg.default_hooks = {k: v for k, v in hooks.items() if v is not None or k in _MMENGINE_KEYS}
    return notes
