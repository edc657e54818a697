"""The model families, one package each (docs/DESIGN.md, "Families").

A family package (`zoo/families/<name>/`) holds its model module, the blocks only it uses, and in
its `__init__` the `Family` descriptor it registers (`zoo.layers.family`). Every package here is
imported when the zoo is, so a new family is one new package: nothing else lists the families.

    zoo.get_family("dhvn").display.color       # the descriptor, by family name
    zoo.family_of("eshvision_xs").name          # ... or by model name
    zoo.static_reference("dhvn_nano", net)      # (name, the always-full static model)
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Optional, Tuple

import torch.nn as nn

from ..layers.family import FAMILIES, Family, get_family, list_families, register_family
from ..registry import create_model, model_info, resolve_spec

__all__ = ["Family", "FAMILIES", "get_family", "list_families", "register_family", "family_of",
           "static_reference"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg):
    importlib.import_module(f"{__name__}.{_module}")


def family_of(model: str) -> Family:
    """The descriptor of the family a registered model belongs to."""
    return get_family(resolve_spec(model)[0].family)


def static_reference(arch: str, net: nn.Module,
                     build: Optional[Callable[[str], nn.Module]] = None) -> Tuple[str, nn.Module]:
    """(description, module in eval mode): `arch`'s always-full static reference, the model
    without routing that a sparse run of `net` (a model of `arch`) is timed against (docs/DESIGN.md,
    glossary). The family decides what it is (`ZooModel.static_reference`); where that is the
    registered static form, `build(name)` builds it at `net`'s input shapes (default:
    `zoo.create_model(name, **overrides)` with the overrides that made `net.spec` from `arch`'s),
    and it gets `net`'s weights wherever a name and shape match."""
    form = model_info(arch).get("static_form")

    def build_static_form() -> nn.Module:
        if not form:
            raise ValueError(f"{arch} has no registered static form")
        if build is not None:
            return build(form)
        changes = net.spec.changes_from(resolve_spec(arch)[1])
        if isinstance(changes.get("router"), dict):
            # how the routed model trains (docs/DESIGN.md, "Training execution and fixed capacity")
            # is no part of its static form, whose routers may not take it (ESH's soft form
            # refuses a capacity); the reference is timed at eval either way
            router = {k: v for k, v in changes["router"].items() if k not in ("train_execution", "capacity")}
            changes = {**changes, "router": router} if router else {k: v for k, v in changes.items() if k != "router"}
        return create_model(form, **changes)
    ref = net.static_reference(build_static_form)
    return type(net).static_reference_label.format(arch=arch, static_form=form), ref.eval()
