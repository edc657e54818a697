"""A Router's routing controls (`execution`, `forced`, `cost_shift`) as per-caller state.

Assigning `router.forced = ...` sets the process-wide default, as a plain attribute would. The
contexts of `zoo.routing` (execution, force, budget) instead push an override that only the
thread (or asyncio task) that entered them sees, so one model can serve several threads, each
under its own forced choice or budget. Why a context variable: each thread starts with an
empty context, so another thread's overrides are invisible to it, and reading one is a single
C call, cheap enough for `Router.forward`, which the benchmarks time.

Contexts may nest and may even exit out of order: each exit removes exactly the overrides its
own enter pushed, so when every context has exited the routers are back at their defaults.
A context must exit in the thread that entered it (otherwise a one-line RuntimeError).

Not carried to other threads: work that a context's thread hands to another thread
(`nn.DataParallel` replicas, an autograd device thread recomputing a checkpointed block on a
GPU) runs with the defaults.
"""
from __future__ import annotations

import contextvars
from typing import Any, Dict, Hashable, Optional, Tuple

__all__ = ["Control", "push", "pop"]

# (layers, merged): layers are (token, name, {router: value}) in the order they were entered;
# merged is name -> {router: value} with later layers winning. None: no override anywhere.
_State = Tuple[Tuple[Tuple[object, str, Dict[Hashable, Any]], ...], Dict[str, Dict[Hashable, Any]]]
_STATE: contextvars.ContextVar[Optional[_State]] = contextvars.ContextVar("zoo_routing_overrides", default=None)
_UNSET = object()
_NONE: Dict[Hashable, Any] = {}


class Control:
    """A Router attribute that a `zoo.routing` context overrides for the calling thread only."""

    def __init__(self, default: Any):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        state = _STATE.get()
        if state is not None:  # the eval hot path without any context takes only this test
            value = state[1].get(self.name, _NONE).get(obj, _UNSET)
            if value is not _UNSET:
                return value
        # kept in the instance dict under its own name: pickles, deep copies and DataParallel
        # replicas of a Router carry the default exactly as before
        return obj.__dict__.get(self.name, self.default)

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.name] = value


def push(name: str, values: Dict[Hashable, Any]) -> object:
    """Override control `name` of each router in `values` for this thread; returns the token `pop` takes."""
    token = object()
    state = _STATE.get()
    layers = (state[0] if state else ()) + ((token, name, dict(values)),)
    _STATE.set((layers, _merged(layers)))
    return token


def pop(token: object) -> None:
    """Remove the overrides `push` returned `token` for, wherever they are among this thread's."""
    state = _STATE.get()
    layers = tuple(layer for layer in (state[0] if state else ()) if layer[0] is not token)
    if state is None or len(layers) == len(state[0]):
        raise RuntimeError("a zoo.routing context must exit in the thread that entered it")
    _STATE.set((layers, _merged(layers)) if layers else None)


def _merged(layers) -> Dict[str, Dict[Hashable, Any]]:
    out: Dict[str, Dict[Hashable, Any]] = {}
    for _, name, values in layers:
        out.setdefault(name, {}).update(values)
    return out
