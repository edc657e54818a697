"""Which routing mode trained a network: every record's `train.routing_mode` (issue 24).

A routed model trains in dense execution (every branch on every item, mixed by the route
weights) or in sparse execution (an unchosen branch is not computed), at threshold routing or at
a fixed capacity (a share of the items to the expensive path, by top-k); `RouterSpec.train_execution`
and `RouterSpec.capacity` decide it (docs/DESIGN.md, glossary: dense / sparse execution). Those are
models trained differently, so each record says which mode trained its weights, and the
leaderboard keeps rows of different modes apart (leaderboard/train_modes.py).

* The mode is `{"train_execution": ..., "capacity": ...}`, as `zoo.routing.training_mode` reads it off
  the routers; null for a network without routers (static plans, timm peers).
* A suite config declares `model.arch_kwargs.router = dict()`, so `--cfg-options
  model.arch_kwargs.router.train_execution=sparse` (or `.capacity=0.5`) sets it; a config of one's own
  without the key gets it here (`declare_router_settings`). The zoo checks the values when the model is
  built (a bad one is one line, `check_buildable`); a timm peer has no routers, so its settings are only
  checked, and dropped (`build_network`).
* Checkpoints carry the mode in `meta.routing_mode` (`RoutingModeHook`): `--eval-only` builds the network
  in the mode its checkpoint trained in (`adopt_checkpoint_mode`: a fixed-capacity router keeps its eval
  threshold among the weights, so that network is the only one they fit) and its record says that mode,
  and `--resume` refuses to continue a run in another mode. A checkpoint without it was written before
  sparse training existed, so it was trained dense.
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..errors import HarnessError

__all__ = ["DENSE", "routing_mode", "checkpoint_routing_mode", "recorded", "prepare", "adopt_checkpoint_mode",
           "declare_router_settings",
           "check_router_settings", "check_resume_mode", "describe", "RoutingModeHook"]

# how every routed model trained before issue 24, and the default of RouterSpec
DENSE = {"train_execution": "dense", "capacity": None}


def routing_mode(net: nn.Module) -> Optional[dict]:
    """{"train_execution", "capacity"} of `net`'s routers (any module holding them, a harness wrapper
    too); None when it has none."""
    import zoo
    if not zoo.routing.routers(net):
        return None
    mode = zoo.routing.training_mode(net)
    return {"train_execution": str(mode["train_execution"]),
            "capacity": None if mode.get("capacity") is None else float(mode["capacity"])}


def checkpoint_routing_mode(meta: Optional[dict], net: nn.Module) -> Optional[dict]:
    """The mode that trained a harness checkpoint's weights (`meta`: the checkpoint's meta), for `net`
    built to load them: its `routing_mode`; dense for a routed model's checkpoint written before the
    field existed."""
    meta = meta or {}
    if "routing_mode" in meta:
        return meta["routing_mode"]
    return dict(DENSE) if routing_mode(net) is not None else None


def recorded(net: nn.Module, opts, meta: Optional[dict]) -> Optional[dict]:
    """The record's `train.routing_mode`: the network's, or for --eval-only its checkpoint's."""
    return checkpoint_routing_mode(meta, net) if opts.eval_only else routing_mode(net)


def prepare(plans, opts) -> None:
    """Before a run's models are built: every plan's router settings checked (a timm peer's too), and
    an --eval-only plan set to the routing mode its checkpoint trained in."""
    from .checkpoint import load_checkpoint_file
    # a shipped tag has no checkpoint meta: its weights trained dense, the mode it builds in
    meta = load_checkpoint_file(opts.checkpoint).get("meta") if opts.eval_only and opts.checkpoint else None
    for plan in plans:
        if opts.eval_only and opts.checkpoint:
            adopt_checkpoint_mode(plan.cfg, meta, opts.checkpoint)
        check_router_settings(plan.model, plan.cfg.model["arch_kwargs"].get("router"))


def adopt_checkpoint_mode(cfg, meta: Optional[dict], path: str) -> None:
    """Set `cfg.model.arch_kwargs.router` to the routing mode a checkpoint trained in (`meta`: its
    meta), so the network built to evaluate it is the one it trained; a field the config or the command
    set to something else is refused in one line."""
    mode = (meta or {}).get("routing_mode")
    if not mode:
        return
    kwargs = cfg.model["arch_kwargs"]
    router = kwargs.get("router") or {}
    if not isinstance(router, dict):
        raise HarnessError(f"model.arch_kwargs.router must be a dict of RouterSpec fields, got {router!r}")
    router = dict(router)
    for key, value in mode.items():
        if key in router and router[key] != value:
            raise HarnessError(f"checkpoint {path} was trained with router {key}={value!r}, but this run sets "
                               f"{key}={router[key]!r}; drop it to evaluate the checkpoint as it trained")
        router[key] = value
    kwargs["router"] = router


def declare_router_settings(arch_kwargs) -> None:
    """Give a config's `model.arch_kwargs` an empty `router` dict when it has none, so that
    --cfg-options can set a field inside it (check_option_keys refuses a key under a missing parent)."""
    if hasattr(arch_kwargs, "setdefault"):
        arch_kwargs.setdefault("router", {})


def check_router_settings(arch: str, router) -> None:
    """Router settings a network without routers will not use (a timm peer) are still checked, so a
    typo or a bad value fails in one line whichever models a run names."""
    from zoo.specs import RouterSpec
    if not router:
        return
    if not isinstance(router, dict):
        raise HarnessError(f"model.arch_kwargs.router must be a dict of RouterSpec fields, got {router!r}")
    try:
        RouterSpec().replace(**router)
    except (TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HarnessError(f"cannot build {arch} with these settings: {first}") from None


def describe(mode: Optional[dict]) -> str:
    """'dense', 'sparse', 'sparse, capacity 0.5'; 'no routers' for None."""
    if mode is None:
        return "no routers"
    text = str(mode.get("train_execution", "dense"))
    if mode.get("capacity") is not None:
        text += f", capacity {mode['capacity']:g}"
    return text


@HOOKS.register_module()
class RoutingModeHook(Hook):
    """Writes the model's routing mode into each checkpoint's meta (module docstring)."""
    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["routing_mode"] = routing_mode(runner.model)


def check_resume_mode(checkpoint: dict, wrapper: nn.Module, path: str) -> None:
    """--resume continues the run its checkpoint came from: in the mode that trained it."""
    want, have = routing_mode(wrapper), checkpoint_routing_mode(checkpoint.get("meta"), wrapper)
    if want != have:
        raise HarnessError(f"checkpoint {path} was trained with routing mode {describe(have)}; this run asks for "
                           f"{describe(want)}: resume it in its own mode, or start a new run (a new --work-dir)")
