"""Make every zoo entry point visible to timm and mmengine as soon as it is registered.

timm:     timm.create_model("dhvn_tiny"), timm.list_models("dhvn_*") (image models only: timm's
          registry is a list of image models, so the LMs are not in it)
mmengine: MODELS.build(dict(type="dhvn_tiny", num_classes=10)) — registered in mmengine's
          root MODELS registry under the zoo's own names (no prefix: zoo names do not collide
          with mmengine's, and a config then reads exactly like a create_model call).
          `import zoo` does not import mmengine (it is most of a bare import's time): the
          entry points are registered there when `zoo.register_mmengine()` runs (the harness
          calls it), or at once when mmengine's registry was imported before the zoo.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Optional

__all__ = ["register_everywhere", "register_mmengine"]

_PENDING_MMENGINE: list = []   # entry points registered before mmengine was bridged


def _named(fn: Callable) -> Callable:
    """The entry point, called inside `registry.building(name)` so build_model can look up the
    pretrained tags a timm or mmengine caller names."""
    from .building import building

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        with building(fn.__name__):
            return fn(*args, **kwargs)
    entry.__wrapped_zoo__ = fn
    return entry


def _register_timm(fn: Callable, timm_cfgs: dict) -> None:
    from timm.models import _registry as timm_registry
    from timm.models import register_model as timm_register_model

    if getattr(timm_registry._model_entrypoints.get(fn.__name__), "__wrapped_zoo__", None) is fn:
        return
    # timm reads the pretrained cfgs of an entry point from its module's `default_cfgs`
    module = sys.modules[fn.__module__]
    if not hasattr(module, "default_cfgs"):
        module.default_cfgs = {}
    module.default_cfgs.update(timm_cfgs)
    timm_register_model(_named(fn))


def _register_mmengine(fn: Callable) -> None:
    from mmengine.registry import MODELS
    named = _named(fn)

    @functools.wraps(fn)
    def build(**kwargs):
        return named(pretrained=kwargs.pop("pretrained", False), **kwargs)

    MODELS.register_module(name=fn.__name__, module=build, force=True)


def register_mmengine() -> None:
    """Register every zoo entry point in mmengine's root MODELS registry (idempotent); every
    entry point registered later goes there at once."""
    global _PENDING_MMENGINE
    pending, _PENDING_MMENGINE = _PENDING_MMENGINE, None
    for fn in pending or ():
        _register_mmengine(fn)


def register_everywhere(fn: Callable, timm_cfgs: Optional[dict] = None) -> None:
    """timm for image models, given their pretrained cfgs (None: not in timm); mmengine once it
    is bridged (`register_mmengine`), or at once when its registry is already imported."""
    if timm_cfgs is not None:
        _register_timm(fn, timm_cfgs)
    if _PENDING_MMENGINE is None or "mmengine.registry" in sys.modules:
        register_mmengine()  # bridged already, or mmengine is loaded anyway: no cost to register
        _register_mmengine(fn)
    else:
        _PENDING_MMENGINE.append(fn)
