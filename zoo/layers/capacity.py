"""Fixed-capacity routing: a router's decisions when `RouterSpec.capacity` is set
(docs/DESIGN.md, "Training execution and fixed capacity").

Each item has one score, how strongly its router prefers the expensive path (every choice other
than `Router.cheap_choice`) to the cheap choice:

    score = logsumexp(logits of the non-cheap choices) - logit of the cheap choice

the log-odds of the expensive path at temperature 1 (a binary router's score is its logit z when
the cheap choice is choices[0]). It is read off the logits, not the tempered probabilities, so
a temperature schedule (`set_tau`) does not move it, just as it never moves an argmax.

* Training: per row (the batch for sample routers, each image or sequence for patch and token
  routers) exactly k = `capacity_k(capacity, n)` items take the expensive path: the top-k
  scores. A taken item takes the argmax of its non-cheap logits, the others the cheap choice.
  The weights are straight-through at the taken choice: forward value exactly 1, gradient the
  soft probability's. The boundary between the k-th and (k+1)-th score feeds an exponential
  moving average, the router's `capacity_threshold` buffer.
* Eval: an item takes the expensive path when its score is above that threshold: its decision
  reads its own logits only, never its batch mates' or later tokens'.

Every op here has a shape known before the data arrives (topk, scatter, gather, where): no
boolean-mask indexing and no host sync, so a compiled graph (`fullgraph=True`) holds it whole.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..ops.gating import straight_through_at

__all__ = ["CAPACITY_MOMENTUM", "THRESHOLD", "capacity_k", "attach", "cheap_index", "scores", "decide",
           "topk_selected"]

# the threshold's moving average keeps 99 % per training step: about the last 100 batches,
# long enough to average out one batch's draw, short enough to follow a router still learning
CAPACITY_MOMENTUM = 0.99
THRESHOLD = "capacity_threshold"  # the buffer's name in the router's state dict


def capacity_k(capacity: float, n: int) -> int:
    """Items of a row of n that take the expensive path: capacity * n rounded half up, at least
    1 and, from n = 2, at most n - 1, so both paths keep items (and gradient) in every row;
    a row of one item takes the expensive path."""
    k = int(capacity * n + 0.5)
    return max(1, min(k, n - 1)) if n > 1 else 1


def attach(router) -> None:
    """Give a capacity router (`RouterSpec.capacity` set; others are left alone, so their state
    dicts keep their keys) its threshold buffer. It is persistent, so a checkpoint carries the
    calibration; NaN until the first training step (eval then decides score > 0, the expensive
    path more likely than the cheap choice). A state dict from before the buffer existed still
    loads: the pre-hook keeps the router's current value."""
    if router.spec.capacity is None:
        return
    router.register_buffer(THRESHOLD, torch.tensor(float("nan")))
    router._register_load_state_dict_pre_hook(_keep_missing_threshold, with_module=True)


def _keep_missing_threshold(module, state_dict, prefix, *args) -> None:
    key = prefix + THRESHOLD
    if key not in state_dict:
        state_dict[key] = getattr(module, THRESHOLD).detach().clone()


def cheap_index(router) -> torch.Tensor:
    """The router's cheap choice as a 0-d long tensor on its device, by `Router.cheap_choice`'s
    rule (the full choice is the declared one, else the dearest, last of equals; the cheap one
    the cheapest other choice, first of equals), computed without reading the costs on the host."""
    costs = router.costs
    n = costs.shape[0]
    if router._full is not None:
        full = torch.tensor(router.choices.index(router._full), device=costs.device)
    else:
        full = n - 1 - costs.flip(0).argmax()
    others = costs.masked_fill(F.one_hot(full, n).bool(), float("inf"))
    return others.argmin()  # argmin returns the first of equal minima


def _full_logits(router, logits: torch.Tensor) -> torch.Tensor:
    # a binary router's gate gives z alone; its logits are [0, z]
    return torch.cat([torch.zeros_like(logits), logits], dim=-1) if router.binary else logits


def scores(router, logits: torch.Tensor, cheap: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(...,) each item's score from the gate's (shifted) output `logits`."""
    full = _full_logits(router, logits)
    cheap = cheap_index(router) if cheap is None else cheap
    is_cheap = F.one_hot(cheap, full.shape[-1]).bool()
    cheap_logit = full.masked_fill(~is_cheap, 0.0).sum(dim=-1)  # not full[..., cheap]: a tensor index syncs
    return torch.logsumexp(full.masked_fill(is_cheap, float("-inf")), dim=-1) - cheap_logit


def topk_selected(score: torch.Tensor, k: int) -> torch.Tensor:
    """The sorted indices of each row's k largest scores along the last dim: (B, k) or (k,)."""
    return score.topk(k, dim=-1).indices.sort(dim=-1).values


def decide(router, logits: torch.Tensor, probs) -> Tuple[torch.Tensor, Optional[torch.Tensor],
                                                         Optional[torch.Tensor]]:
    """(decisions, weights, selected) of a capacity router for the gate's output `logits`:
    top-k in training (weights straight-through, `selected` the taken items), the calibrated
    threshold at eval (weights None: the plain one-hot, built if read; `selected` None)."""
    full = _full_logits(router, logits)
    C = full.shape[-1]
    cheap = cheap_index(router)
    is_cheap = F.one_hot(cheap, C).bool()
    score = scores(router, logits, cheap)
    expensive = full.masked_fill(is_cheap, float("-inf")).argmax(dim=-1)  # best non-cheap choice
    threshold = getattr(router, THRESHOLD)
    if not router.training:
        router._graph.capacity_scores = score.detach()  # read by `zoo.routing.capacity_agreement`
        above = score > torch.where(torch.isnan(threshold), torch.zeros_like(threshold), threshold)
        return torch.where(above, expensive, cheap), None, None
    n = score.shape[-1]
    k = capacity_k(router.spec.capacity, n)
    _update_threshold(threshold, score.detach(), k)
    ranked = score.detach()
    if router.spec.explore > 0:
        ranked, expensive = _explore(ranked, expensive, cheap, C, router.spec.explore, router.spec.capacity)
    selected = topk_selected(ranked, k)
    decisions = torch.full_like(expensive, 0) + cheap
    decisions = decisions.scatter(-1, selected, expensive.gather(-1, selected))
    return decisions, straight_through_at(probs, decisions), selected


def _explore(ranked, expensive, cheap, C: int, rate: float, capacity: float):
    """`RouterSpec.explore` under a fixed capacity: a share `rate` of the items is placed at
    random, ranked first with probability `capacity` and last otherwise, so top-k still takes
    exactly k; an exploring item that is taken takes a uniformly random non-cheap choice."""
    pick = torch.rand(ranked.shape, device=ranked.device) < rate
    high = torch.rand(ranked.shape, device=ranked.device) < capacity
    placed = torch.where(high, torch.full_like(ranked, float("inf")), torch.full_like(ranked, float("-inf")))
    r = torch.randint(0, C - 1, ranked.shape, device=ranked.device)
    other = r + (r >= cheap).long()  # 0..C-2 onto the choices other than the cheap one
    return torch.where(pick, placed, ranked), torch.where(pick, other, expensive)


@torch.no_grad()
def _update_threshold(threshold: torch.Tensor, score: torch.Tensor, k: int) -> None:
    """Move the threshold towards this step's boundary: per row, the midpoint of the k-th and
    (k+1)-th largest scores (the k-th itself in a row of one), averaged over the rows."""
    n = score.shape[-1]
    top = score.topk(min(k + 1, n), dim=-1).values
    boundary = (top[..., k - 1] + top[..., k]) / 2 if k < n else top[..., k - 1]
    boundary = boundary.float().mean()
    threshold.copy_(torch.where(torch.isnan(threshold), boundary,
                                CAPACITY_MOMENTUM * threshold + (1 - CAPACITY_MOMENTUM) * boundary))
