"""timm-style registry: entry-point functions named after their variant.

    @register_model
    def dhvn_tiny(pretrained=False, **kwargs):
        return build_model(DHVN, DHVNSpec(...), pretrained, **kwargs)

The function's name is the public name. `build_model` applies overrides to the variant's
spec (an unknown key is a TypeError naming the valid ones) and builds the model class from
the edited spec, so `create_model(name, **kw)` equals `Cls(spec.replace(**kw))`.
Registering also bridges the entry point into timm's and mmengine's registries.
"""
from __future__ import annotations

import contextlib
import contextvars
import difflib
import fnmatch
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch

from .building import building, current as current_build
from .specs import Spec

__all__ = ["register_model", "create_model", "list_models", "model_info", "resolve_spec",
           "build_model", "UnknownModelError", "is_model"]

_ENTRYPOINTS: Dict[str, Callable] = {}
_INFO_CACHE: Dict[str, dict] = {}
_SPEC_ONLY = contextvars.ContextVar("zoo_spec_only", default=False)
# keyword arguments timm.create_model passes to every entry point
_TIMM_FACTORY_KEYS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "device", "dtype",
                      "pretrained_model_args")


class UnknownModelError(KeyError):
    """Raised for a name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


_STATIC_FORMS: Dict[str, str] = {}
_STATIC_PLANS: Dict[str, Tuple[str, ...]] = {}


def register_model(fn: Optional[Callable] = None, *, static_form: Optional[str] = None,
                   static_plans: Sequence[str] = ()):
    """`@register_model` or `@register_model(static_form="dhvn_nano_static", static_plans=(...))`.

    static_form names the variant a routed model has always been compared against: the same
    architecture with routing fixed (always-both, soft, or the static layer plan it routes
    within). static_plans names the registered static per-layer plans of the same network, each
    routed layer on one fixed choice and no routers: the fixed architectures a user would pick
    instead of routing. The leaderboard measures a routed model against the cheapest of them
    that matches its quality (docs/DESIGN.md, "Static plans").
    """
    if fn is None:
        return lambda f: register_model(f, static_form=static_form, static_plans=static_plans)
    name = fn.__name__
    _ENTRYPOINTS[name] = fn
    _INFO_CACHE.pop(name, None)
    if static_form is not None:
        _STATIC_FORMS[name] = static_form
    if static_plans:
        _STATIC_PLANS[name] = tuple(static_plans)
    from . import bridges  # late import: bridges import this module
    # timm's registry lists image models; an LM there would be built by timm.create_model as if
    # it were one, so LMs are reachable through zoo and mmengine only
    cls, spec = resolve_spec(name)
    if cls.task == "image-classification":
        from . import pretrained
        bridges.register_everywhere(fn, timm_cfgs=pretrained.timm_cfgs(name, cls, spec))
    else:
        bridges.register_everywhere(fn, timm_cfgs=None)
    return fn


def is_model(name: str) -> bool:
    return name in _ENTRYPOINTS


def _entrypoint(name: str) -> Callable:
    try:
        return _ENTRYPOINTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_ENTRYPOINTS), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else "; see zoo.list_models()"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


class _Resolved(Exception):
    """Carries (class, spec) out of an entry point called in spec-only mode."""

    def __init__(self, model_cls, spec):
        super().__init__(model_cls.__name__)
        self.model_cls, self.spec = model_cls, spec


def build_model(model_cls, spec: Spec, pretrained: bool = False, **overrides):
    """The one place variants are built. Called by every entry point."""
    from . import pretrained as _pretrained
    device, dtype = overrides.get("device"), _float_dtype(overrides.get("dtype"))
    features_only = overrides.pop("features_only", False)
    global_pool = overrides.pop("global_pool", None)
    out_indices = overrides.pop("out_indices", None)
    source_args = overrides.pop("pretrained_model_args", None)   # timm's local-dir: / hf-hub: model_args
    weights = _pretrained.plan(current_build(), model_cls.__name__, pretrained, overrides)
    requested, overlay = overrides.get("pretrained_cfg"), overrides.get("pretrained_cfg_overlay")
    overrides = {k: v for k, v in overrides.items() if k not in _TIMM_FACTORY_KEYS}
    if weights is not None:
        overrides = {**weights.kwargs, **overrides}
    spec = spec.replace(**overrides)
    if _SPEC_ONLY.get():
        raise _Resolved(model_cls, spec)
    # timm's factory kwargs: parameters are created on `device` (meta too), then cast to `dtype`
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = model_cls(spec)
    if hasattr(model, "check_budget_target"):
        model.check_budget_target()
    if dtype is not None:
        model.to(dtype=dtype)
    if weights is not None:
        head = getattr(model, "pretrained_cfg", {}).get("classifier", "head") if weights.new_head else None
        _pretrained.load_weights(model, weights.file, skip=head)
        # the constructor fields the weights imply, for timm's save_for_hf (timm.create_model adds the caller's)
        model._model_args = dict(weights.kwargs)
    if hasattr(model, "model_cfg"):
        name = current_build() or _caller_name()
        model.pretrained_cfg = _pretrained.model_cfg(model, name, requested, overlay, weights)
    if source_args is not None:
        model.pretrained_model_args = dict(source_args)
    if global_pool is not None:
        if not hasattr(model, "set_global_pool"):
            raise ValueError(f"{type(model).__name__} has no pooled head; global_pool is for vision models")
        model.set_global_pool(global_pool)
    if features_only:
        return _feature_net(model, out_indices)
    return model


def _caller_name() -> Optional[str]:
    """The entry point that called build_model directly (not through create_model, timm or mmengine)."""
    import sys
    name = sys._getframe(2).f_code.co_name
    return name if name in _ENTRYPOINTS else None


def _float_dtype(dtype):
    """timm's `dtype=` factory kwarg (a torch dtype or its name), checked before anything is built."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, dtype)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    return dtype


def _feature_net(model, out_indices):
    """timm's `features_only=True`: its FeatureGetterNet over the model's forward_intermediates
    (the zoo's stages are not a plain chain of child modules, which FeatureListNet needs), after
    the model's prune_intermediate_layers."""
    from timm.models._features import FeatureGetterNet
    stages = getattr(model, "feature_info", None)
    if not stages:
        raise ValueError(f"{type(model).__name__} has no feature stages; features_only is for vision models")
    from .layers.base import take_indices
    take = take_indices(len(stages), out_indices)   # out of range: one line, before timm asserts
    # pruned, as timm prunes: the layers no kept level needs (and the head) go, so that no
    # parameter is left without a gradient (DDP needs no find_unused_parameters)
    net = FeatureGetterNet(model, out_indices=take, prune=True)
    net.pretrained_cfg = net.default_cfg = model.pretrained_cfg  # as timm's build_model_with_cfg sets
    return net


def resolve_spec(name: str, **overrides) -> Tuple[type, Spec]:
    """(model class, spec) a call to create_model(name, **overrides) would build, without building."""
    fn = _entrypoint(name)
    token = _SPEC_ONLY.set(True)
    try:
        fn(pretrained=False, **overrides)
    except _Resolved as r:
        return r.model_cls, r.spec
    finally:
        _SPEC_ONLY.reset(token)
    raise RuntimeError(f"entry point {name} does not build through zoo.registry.build_model")


def create_model(name: str, pretrained: bool = False, **overrides) -> torch.nn.Module:
    """`name` may carry a pretrained tag, timm's way: `create_model("dhvn_nano.mnist5k", pretrained=True)`."""
    if name not in _ENTRYPOINTS and "." in name:
        name, tag = name.split(".", 1)
        overrides.setdefault("pretrained_cfg", tag)
    with building(name):
        return _entrypoint(name)(pretrained=pretrained, **overrides)





def _tags(name: str) -> dict:
    cls, spec = resolve_spec(name)
    return dict(family=cls.family, task=cls.task, routing=cls.routing_of(spec))


def list_models(filter: Union[str, Sequence[str]] = "*", exclude_filters: Iterable[str] = (),
                tags: Optional[dict] = None) -> list:
    patterns = [filter] if isinstance(filter, str) else list(filter)
    if isinstance(exclude_filters, str):
        exclude_filters = [exclude_filters]
    names = [n for n in _ENTRYPOINTS if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude_filters)]
    if tags:
        names = [n for n in names if all(_tags(n).get(k) == v for k, v in tags.items())]
    return sorted(names)


def model_info(name: str) -> dict:
    """Plain-dict description of a variant; params are counted on the meta device (no memory)."""
    if name not in _INFO_CACHE:
        cls, spec = resolve_spec(name)
        with torch.device("meta"):
            model = cls(spec)
        tags = _tags(name)
        _INFO_CACHE[name] = dict(
            name=name, family=tags["family"], task=tags["task"], routing=tags["routing"],
            tags=tags, spec=spec.to_dict(), default_input_size=cls.default_input_size(spec),
            params=sum(p.numel() for p in model.parameters()), static_form=_STATIC_FORMS.get(name),
            static_plans=list(_STATIC_PLANS.get(name, ())),
        )
    info = _INFO_CACHE[name]
    return {**info, "tags": dict(info["tags"]), "spec": dict(info["spec"]), "static_plans": list(info["static_plans"])}
