"""Executed FLOPs: what one forward really computes under hard routing, against the dense cost.

    import zoo.flops
    zoo.flops.count_flops(model, x)            # FLOPs of one forward, as routed right now
    zoo.flops.flops_report(model, x)           # executed vs dense, per sample (per token for LMs)

Unit: FLOPs = 2 x MACs (a multiply-add counts 2), everywhere.

Counter: `torch.utils.flop_counter.FlopCounterMode` on the ops actually dispatched, so a
branch that sparse execution skips, or a query that is never computed, costs nothing, and
padding that packing adds does cost. What is counted:
  * matmuls (mm, addmm, bmm, baddbmm, linear), convolutions (incl. depthwise) and attention
    (SDPA kernels: QK^T and AV over the full score matrix, causal or not; the CPU kernel is
    taught to the counter in `zoo.ops.counting`);
  * modules in `MODULE_FLOPS`, whose layer arithmetic is written as elementwise code: each
    family registers the rules of its own (`Family.module_flops`); Exp11's GDN short conv (a
    depthwise causal conv as shifted multiply-adds) counts as the conv it is, one multiply-add
    per tap and output;
  * the scans and the gated delta rule, by the formulas beside each op (`zoo.ops.counting`):
    the SSD and delta-rule formulas count their matmuls (and the delta rule's triangular
    solve); the Mamba-1 formula counts its per-state recurrence (7 per token, channel and
    state entry), which is elementwise but is the scan's whole work.
What is not counted: elementwise and reduction work elsewhere - norms (Layer/Group/RMS),
activations and gates, softmax outside SDPA, residual adds, pooling, interpolation, RoPE,
the entropy prior, the routers' softmax/argmax and the gather/scatter of routed items (the
routers' own Linear layers are counted).

Dense reference: the same weights under `zoo.routing.execution(model, "dense")` with every
router forced to the full choice it declares (`Router.full_choice`). Dense execution already
computes every branch for every item; the forced choice fixes what else depends on the decision:
  * DHVN: "both" (conv, transformer and the fusion for every sample: the static hybrid);
  * ESH-Vision: "attention". ACT ponders attention patches with alpha > 0.7, and alpha > 0.7
    implies the router picks attention, so forcing attention keeps exactly the ponder steps
    hard routing takes (forcing "ssm" would drop them and undercount the dense cost);
  * Exp11: "softmax" (the GDN over every token plus a softmax read for every token).

Attention conventions (`convention=`, default "allowed"; `zoo.ops.counting.flop_convention`
sets it for every formula that counts attention, in one place):
  * "allowed": QK^T and AV over the (query, key) pairs the mask allows
    (`zoo.ops.counting.attention_pairs`): a causal layer over T tokens counts T(T+1)/2 pairs,
    dense or with packed queries alike (a packed padding query counts its own causal prefix, as
    it runs); an additive bias (ESH) allows every pair. It measures the work the model needs.
  * "computed": the pairs the kernels multiply (`zoo.ops.counting.cpu_sdpa_pairs`): the dense
    causal CPU kernel runs whole 512-key blocks up to each query block's diagonal (1.99x the
    triangle at T=256, 1.50x at T=1024); Exp11's packed queries (`sorted_query_pairs`) run every
    key up to each 128-query block's latest position in the batch. It measures the work the
    code does, which is what the clock sees.
Both count the same matmuls, recurrences and padding rows otherwise; with no causal mask
(DHVN's pooled attention, ESH's biased attention and pondering) they are equal.
`flops_report` gives both.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .layers import router_controls as routing
from .layers.family import MODULE_FLOPS
from .layers.router import Router
from .ops import counting as _counting

__all__ = ["count_flops", "dense_flops", "count_call_flops", "flops_report", "full_choice", "full_policy", "UNIT",
           "MODULE_FLOPS", "CONVENTIONS", "CONVENTION_NOTES"]

UNIT = "FLOPs (2 x MACs)"
CONVENTIONS = _counting.CONVENTIONS
# what each convention counts, in one line each: records carry it beside the numbers
CONVENTION_NOTES = {
    "allowed": "attention over the (query, key) pairs the mask allows: T(T+1)/2 per causal layer",
    "computed": "attention over the pairs the CPU kernels multiply: whole causal key blocks, "
                "every key up to each packed query block's latest position, padding rows included",
}


def full_choice(router: Router) -> str:
    """The choice that makes dense execution the full always-both cost: the router's declared
    full form (`Router.full_choice`)."""
    return router.full_choice


def full_policy(router: Router, shape: torch.Size) -> torch.Tensor:
    """A `zoo.routing.force` policy: every item takes its router's full choice."""
    return torch.full(tuple(shape), router.choices.index(router.full_choice), dtype=torch.long)


@contextlib.contextmanager
def _declared_module_flops(model: nn.Module):
    rules = dict(MODULE_FLOPS)  # every family's, as registered now

    def hook(module, args, kwargs, output):
        _counting.declare_flops(output, rules[type(module)](module, args, kwargs, output))
    handles = [m.register_forward_hook(hook, with_kwargs=True)
               for m in model.modules() if type(m) in rules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def count_flops(model: nn.Module, *inputs, convention: str = "allowed", **kwargs) -> int:
    """FLOPs (2 x MACs) executed by one forward of `model(*inputs, **kwargs)` in eval mode, no grad,
    under whatever execution mode / forced policy the caller has set, attention counted by
    `convention` ("allowed" or "computed", module docstring)."""
    return count_call_flops(lambda: model(*inputs, **kwargs), model, convention)


def count_call_flops(fn, model: nn.Module, convention: str = "allowed") -> int:
    """FLOPs (2 x MACs) executed by `fn()`, any call into parts of `model` (one routed layer, one
    branch), counted as `count_flops` counts a whole forward: eval mode, no grad."""
    with _eval_mode(model), torch.no_grad(), _counting.counting(), _declared_module_flops(model), \
            _counting.flop_convention(convention):
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
    return int(counter.get_total_flops())


def _items(x: torch.Tensor) -> tuple:
    """(unit, count): token-id inputs are counted per token, images per sample."""
    if x.is_floating_point():
        return "sample", int(x.shape[0])
    return "token", int(x.numel())


def dense_flops(model: nn.Module, inputs: torch.Tensor, full: Optional[str] = None,
                convention: str = "allowed") -> int:
    """FLOPs of the dense reference: dense execution, every router at its full choice (or at
    `full`), with no budget shift. ESH's pondering follows alpha, which the inference budget knob
    (`zoo.routing.flops_budget`) moves; unshifted, the reference is one fixed denominator for every
    budget (docs/DESIGN.md, "Dense reference")."""
    rs = routing.routers(model)
    with routing.setting(rs, "cost_shift", [0.0] * len(rs)), routing.execution(model, "dense"), \
            routing.force(model, full or full_policy):
        return count_flops(model, inputs, convention=convention)


def flops_report(model: nn.Module, inputs: torch.Tensor, full: Optional[str] = None,
                 conventions: Sequence[str] = CONVENTIONS) -> dict:
    """Executed (hard routing, sparse execution) against dense FLOPs of one batch of `inputs`.

    `full` forces one choice name for the dense reference instead of `full_choice` per router.
    Models without routers (static variants, timm peers) or with soft routers (every branch
    merged) have executed == dense, saved 0.
    Returns totals for the batch and per-item means (`per`: "sample" for images, "token" for
    token ids), and saved = 1 - executed / dense. The plain keys count attention by the
    "allowed" convention; with "computed" in `conventions` (the default) the same keys suffixed
    `_computed` count what the kernels multiply, and `conventions` says what each means.
    """
    for c in conventions:
        _counting.check_convention(c)
    routers = routing.routers(model)
    # A soft router merges every branch by its probabilities, so its model already runs the
    # dense computation; forcing a choice would replace that merge (and, in ESH, change what
    # ACT ponders), so the model's own cost is its dense reference.
    has_dense = bool(routers) and not all(r.spec.mode == "soft" for r in routers)
    per, n = _items(inputs)
    out = dict(unit=UNIT, per=per, items=n, conventions={c: CONVENTION_NOTES[c] for c in ("allowed", *conventions)})
    for c in dict.fromkeys(("allowed", *conventions)):   # "allowed" always: the plain keys
        with routing.execution(model, "sparse") if routers else contextlib.nullcontext():
            executed = count_flops(model, inputs, convention=c)
        dense = dense_flops(model, inputs, full, convention=c) if has_dense else executed
        suffix = "" if c == "allowed" else "_" + c
        out.update({"executed" + suffix: executed, "dense" + suffix: dense,
                    "executed" + suffix + "_per_item": executed / n, "dense" + suffix + "_per_item": dense / n,
                    "saved" + suffix: (1.0 - executed / dense) if dense else 0.0})
    return out
