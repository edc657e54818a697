"""Which entry point is being called: build_model looks up its pretrained tags by this name.

A leaf module, so the registry and the timm/mmengine bridges can both use it without importing
each other.
"""
from __future__ import annotations

import contextlib
import contextvars

__all__ = ["building", "current"]

_BUILDING: contextvars.ContextVar = contextvars.ContextVar("zoo_building", default=None)


@contextlib.contextmanager
def building(name: str):
    token = _BUILDING.set(name)
    try:
        yield
    finally:
        _BUILDING.reset(token)


def current():
    return _BUILDING.get()
