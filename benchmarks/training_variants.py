"""What `benchmarks.bench_training_modes` times: one family's routed model in each training mode,
its static comparators, and one training step of each, built as `python -m harness run` builds them.

A step is the harness's own (harness/engine/wrappers.py): the wrapper's `mode="loss"` forward (the
task loss plus every weighted auxiliary objective of the suite config), backward, the recipe's
gradient clip and an AdamW step with the suite's betas and weight decay. The learning rate is 1e-6,
not the recipe's: AdamW costs the same at any rate, and a trained mix stays the trained mix over the
rounds instead of drifting with the updates. The batch is the suite's training batch size of evenly
spaced training items (mnist5k's test split is sorted by class; routing depends on the content).

Variants (docs/DESIGN.md, glossary; "Static plans"):
  * dense: the routed model as the harness trained it until issue 24, every branch on every item;
  * sparse: `RouterSpec.train_execution="sparse"`, a branch runs on the items that chose it, routing
    by the trained weights' own decisions (the trained mix), or forced to a share e of the items on
    the expensive path at every router (`zoo.routing.force`, e at random, the rest on `cheap_choice`);
  * capacity k: sparse training with `RouterSpec.capacity=k`, exactly round(k·n) items of each row on
    the expensive path by top-k of the router's scores;
  * comparators, trained as static models: the registered static form (`zoo.model_info`'s
    `static_form`: DHVN always-both, ESH soft, Exp11's baseline plan), the static always-full
    reference where it is another model (`zoo.static_reference`: Exp11's plain GDN + attention
    layers), and the cheapest static plan by executed FLOPs at this shape.

Training FLOPs are 3 x the forward's executed FLOPs (the usual convention: the backward costs about
twice the forward), the forward counted by `zoo.flops.count_flops` on the same batch under the same
decisions: the variant's last training forward is replayed through `zoo.routing.force` in its own
execution mode (dense counts every branch on every item).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

SHARES = (0.25, 0.5, 0.75)        # forced shares of the items on the expensive path
CAPACITIES = (0.25, 0.5, 0.75)
LR = 1e-6
WORK_DIR = "work_dirs/embedded/{suite}/{model}/seed0"  # the embedded job's seed-0 run


@dataclass
class Variant:
    name: str                      # its key in the JSON: "dense", "sparse_trained", "sparse_share50", "capacity50", ...
    label: str                     # what the table says
    wrapper: nn.Module             # the harness wrapper (ZooClassifier / ZooLM) around the network
    kind: str                      # "routed" or "static"
    execution: Optional[str] = None          # the routed model's training execution
    share: Optional[float] = None            # forced share on the expensive path
    capacity: Optional[float] = None
    policy: Optional[Callable] = None        # a zoo.routing.force policy
    roles: List[str] = field(default_factory=list)  # comparator roles: static_form, static_reference, cheapest_plan

    @property
    def net(self) -> nn.Module:
        return self.wrapper.net


def family_cases(only=None) -> List[dict]:
    """Each family's routed model of the main job on its embedded suite (docs/DESIGN.md, "Families")."""
    import zoo
    out = []
    for name in zoo.list_families():
        f = zoo.get_family(name)
        if f.bench and f.embedded and (not only or f.bench.key in only or name in only):
            out.append(dict(family=name, key=f.bench.key, model=f.bench.small[0], suite=f.suite))
    return out


def suite_setup(model: str, suite: str, batch_size: Optional[int] = None):
    """(cfg, inputs, targets, description): the run's resolved config and one training batch."""
    from mmengine.registry import DATASETS
    from torch.utils.data import default_collate

    from harness.loading import suite_config
    from harness.measure.executed_flops import sample_indices
    cfg, _ = suite_config(model, suite)
    batch = int(batch_size or cfg.train_dataloader["batch_size"])
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader["dataset"]))
    items = default_collate([dataset[i] for i in sample_indices(len(dataset), batch)])
    x, y = items["inputs"].contiguous(), items["data_samples"].contiguous()
    shape = "x".join(map(str, x.shape))
    return cfg, x, y, f"{suite} training items, {shape} ({'token ids' if x.dtype == torch.long else 'images'})"


def _wrapper(cfg, arch: str, router: Optional[dict] = None, net: Optional[nn.Module] = None) -> nn.Module:
    """The harness wrapper of `cfg` for `arch` (its router settings updated by `router`), holding
    `net` instead of its own network when given (a static reference is no registered model)."""
    from mmengine.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg["arch"] = arch
    kwargs = dict(model_cfg.get("arch_kwargs") or {})
    kwargs["router"] = {**dict(kwargs.get("router") or {}), **(router or {})}
    model_cfg["arch_kwargs"] = kwargs
    wrapper = MODELS.build(model_cfg)
    if net is not None:
        wrapper.net = net
    return wrapper.train()


def trained_weights(model: str, suite: str, cfg) -> Optional[tuple]:
    """(state dict of the network, where it came from): the embedded job's seed-0 checkpoint, else
    the zoo's shipped tag for this suite (`zoo.pretrained`), else None (an untrained router)."""
    import zoo
    from harness.engine import checkpoint as ckpt_mod
    work_dir = WORK_DIR.format(suite=suite, model=model)
    marker = os.path.join(work_dir, "last_checkpoint")
    if os.path.exists(marker):
        with open(marker) as f:
            path = os.path.join(work_dir, os.path.basename(f.read().strip()))
        state = ckpt_mod.load_checkpoint_file(path)["state_dict"]
        return {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}, path
    if suite in zoo.pretrained.tags_of(model):
        kwargs = {k: v for k, v in cfg.model["arch_kwargs"].items() if k != "router"}
        net = zoo.create_model(f"{model}.{suite}", pretrained=True, **kwargs)
        return net.state_dict(), f"shipped weights {model}.{suite}"
    return None


def _load(net: nn.Module, state: dict) -> None:
    """The trained weights; a fixed-capacity router's threshold buffer is new to them."""
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("capacity_threshold")]
    if missing or unexpected:
        raise RuntimeError(f"trained weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")


def has_capacity() -> bool:
    from zoo.specs import RouterSpec
    return "capacity" in RouterSpec.field_names()


def build_variants(model: str, cfg, x, weights: Optional[tuple], shares=SHARES, capacities=CAPACITIES,
                   seed: int = 0) -> List[Variant]:
    from harness.measure.benchkit import FrozenPolicy, policy_for
    state = weights[0] if weights else None
    mix = "trained mix" if weights else "untrained router"
    out = [Variant("dense", f"dense, {mix}", _wrapper(cfg, model), "routed", execution="dense"),
           Variant("sparse_trained", f"sparse, {mix}", _wrapper(cfg, model, dict(train_execution="sparse")),
                   "routed", execution="sparse")]
    for e in shares:
        v = Variant(f"sparse_share{round(e * 100)}", f"sparse, forced {e:.0%} expensive",
                    _wrapper(cfg, model, dict(train_execution="sparse")), "routed", execution="sparse", share=e)
        v.policy = FrozenPolicy(policy_for(v.net, {"skip": 1.0 - e}), seed=seed)
        out.append(v)
    for k in capacities if has_capacity() else ():
        out.append(Variant(f"capacity{round(k * 100)}", f"sparse, capacity {k:g}",
                           _wrapper(cfg, model, dict(train_execution="sparse", capacity=k)), "routed",
                           execution="sparse", capacity=k))
    if state is not None:
        for v in out:
            _load(v.net, state)
    return out + _comparators(model, cfg, x, out[0].net)


def _comparators(model: str, cfg, x, routed_net) -> List[Variant]:
    """The static form, the always-full reference (where it is another model) and the cheapest
    static plan by forward FLOPs on `x`; one Variant per distinct model, with all its roles."""
    import zoo
    from zoo.flops import count_flops
    info = zoo.model_info(model)
    form, plans = info.get("static_form"), list(info.get("static_plans") or [])
    by_name: Dict[str, Variant] = {}

    def add(name, role, net=None, arch=None):
        if name not in by_name:
            by_name[name] = Variant(f"static:{name}", name, _wrapper(cfg, arch or name, net=net), "static")
        by_name[name].roles.append(role)
    if form:
        add(form, "static_form")
    label, ref = zoo.static_reference(model, copy.deepcopy(routed_net).eval())
    add(label, "static_reference", net=ref.train(), arch=form if label != form else None)
    flops = {}
    for plan in plans:
        net = by_name[plan].net if plan in by_name else _wrapper(cfg, plan).net
        with torch.no_grad():
            flops[plan] = count_flops(net, x)
    if flops:
        add(min(flops, key=lambda p: (flops[p], p)), "cheapest_plan")
    return list(by_name.values())


def replay_policy(net: nn.Module) -> Optional[Callable]:
    """A `zoo.routing.force` policy that takes again every decision of `net`'s last forward."""
    import zoo
    decided = {r.layer: r.last.decisions.detach().clone() for r in zoo.routing.routers(net) if r.last is not None}
    if not decided:
        return None

    def policy(router, shape):
        d = decided[router.layer]
        if tuple(d.shape) != tuple(shape):
            raise RuntimeError(f"router {router.layer}: the replayed decisions are {tuple(d.shape)}, asked {tuple(shape)}")
        return d
    return policy


def expensive_share(net: nn.Module) -> Optional[float]:
    """Mean over routers of the share of items off the cheap choice in the last forward."""
    import zoo
    shares = [1.0 - float((r.last.decisions == r.choices.index(r.cheap_choice)).float().mean())
              for r in zoo.routing.routers(net) if r.last is not None]
    return sum(shares) / len(shares) if shares else None


def step_fn(v: Variant, x: torch.Tensor, y: torch.Tensor, cfg) -> Callable[[], float]:
    """One timed training step of `v` -> seconds (module docstring)."""
    import time
    from harness.measure.benchkit import routing_context
    ow = cfg.optim_wrapper
    opt_cfg = ow.get("optimizer", {})
    optim = torch.optim.AdamW(v.wrapper.parameters(), lr=LR, betas=tuple(opt_cfg.get("betas", (0.9, 0.999))),
                              weight_decay=float(opt_cfg.get("weight_decay", 0.01)))
    clip = (ow.get("clip_grad") or {}).get("max_norm")
    params = [p for p in v.wrapper.parameters() if p.requires_grad]

    def run() -> float:
        with routing_context(v.net, None, v.policy):
            t0 = time.perf_counter()
            losses = v.wrapper(x, y, mode="loss")
            loss = sum(losses.values())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, float(clip))
            optim.step()
            return time.perf_counter() - t0
    return run


def forward_flops(v: Variant, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Executed FLOPs of one training forward of `v` (module docstring) and its expensive share."""
    from zoo.flops import count_flops
    from harness.measure.benchkit import routing_context
    if v.kind == "static":
        with torch.no_grad():
            return dict(forward=count_flops(v.net, x), expensive_share=None)
    with routing_context(v.net, None, v.policy), torch.no_grad():
        v.wrapper(x, y, mode="loss")           # in train mode: the decisions a training step takes
    share = expensive_share(v.net)
    with routing_context(v.net, v.execution, v.policy or replay_policy(v.net)), torch.no_grad():
        return dict(forward=count_flops(v.net, x), expensive_share=share)
