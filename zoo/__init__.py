"""Routing-aware model zoo: hybrid networks that choose, per sample, patch or token,
which branch (or branches) to run; sparse execution leaves out the work no item chose as far as
each branch allows (ESH's keys/values and scan still run over every patch of an image with any
patch on that branch, Exp11's GDN over every token and its keys/values over every token of a
batch with any softmax token: see each family's module docstring).

    import zoo
    model = zoo.create_model("eshvision_s", num_classes=10)
    zoo.list_models("dhvn_*")
    with zoo.routing.execution(model, "dense"): ...
    zoo.routing.trace(model)
    zoo.reparameterize_model(model.eval())   # deploy: BatchNorm folded into convs
    zoo.register_mmengine()                   # MODELS.build(dict(type="dhvn_tiny")) (the harness does it)
    zoo.family_of("dhvn_nano")                # the family's descriptor: display, demo, bench settings
    zoo.static_reference("dhvn_nano", model)  # (name, the always-full static model it is timed against)
"""
from . import routing
from .registry import (UnknownModelError, build_model, create_model, is_model, list_models,
                       model_info, register_model, resolve_spec)
from .specs import Spec
from .reparameterize import reparameterize_model
# every family package: registers its variants (bridged into timm/mmengine) and its descriptor
from . import families
from .families import family_of, get_family, list_families, static_reference
from . import flops  # noqa: F401  (zoo.flops.count_flops / flops_report: executed FLOPs)
from .bridges import register_mmengine

__all__ = ["create_model", "list_models", "model_info", "register_model", "resolve_spec",
           "build_model", "is_model", "UnknownModelError", "Spec", "routing", "reparameterize_model",
           "register_mmengine", "families", "get_family", "family_of", "list_families", "static_reference"]
__version__ = "0.1.0"
