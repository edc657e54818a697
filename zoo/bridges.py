"""Make every zoo entry point visible to timm and mmengine as soon as it is registered.

timm:     timm.create_model("dhvn_tiny"), timm.list_models("dhvn_*") (image models only: timm's
          registry is a list of image models, so the LMs are not in it)
mmengine: MODELS.build(dict(type="dhvn_tiny", num_classes=10)) — registered in mmengine's
          root MODELS registry under the zoo's own names (no prefix: zoo names do not collide
          with mmengine's, and a config then reads exactly like a create_model call).
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Optional

__all__ = ["register_everywhere"]


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


def register_everywhere(fn: Callable, timm_cfgs: Optional[dict] = None) -> None:
    """mmengine always; timm for image models, given their pretrained cfgs (None: not in timm)."""
    if timm_cfgs is not None:
        _register_timm(fn, timm_cfgs)
    _register_mmengine(fn)
