"""Pure functions behind the one router: straight-through Gumbel-softmax and routing statistics."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "straight_through", "gumbel_straight_through", "load_balance_loss", "routing_entropy",
    "choice_shares", "expected_compute_share", "budget_loss", "straight_through_at", "explore",
    "alpha_variance_loss",
]


def _check_tau(tau: float | torch.Tensor) -> float:
    tau = float(tau)
    if not tau > 0 or not math.isfinite(tau):
        raise ValueError(f"temperature tau must be a finite number > 0, got {tau}")
    return tau


def straight_through(soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward value is the one-hot argmax of `soft`; the gradient is `soft`'s.

    Returns (weights, decisions). Because `hard` and `soft` come from the *same* tensor,
    the gradient belongs to the decision that was taken (the original DHVN drew twice).
    """
    decisions = soft.argmax(dim=-1)
    hard = F.one_hot(decisions, soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft, decisions


def straight_through_at(soft: torch.Tensor, decisions: torch.Tensor) -> torch.Tensor:
    """Weights whose forward value is one_hot(decisions) and whose gradient is `soft`'s."""
    hard = F.one_hot(decisions, soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def explore(decisions: torch.Tensor, num_choices: int, rate: float,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each item independently takes a uniformly random choice with probability `rate`."""
    if rate <= 0:
        return decisions
    pick = torch.rand(decisions.shape, device=decisions.device, generator=generator) < rate
    random = torch.randint(0, num_choices, decisions.shape, device=decisions.device, generator=generator)
    return torch.where(pick, random, decisions)


def gumbel_straight_through(logits: torch.Tensor, tau: float, clamp: float = 15.0,
                            generator: Optional[torch.Generator] = None, binary: bool = False
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Gumbel draw, in fp32 with clamped logits: returns (weights, decisions, soft).

    soft = softmax((logits + g) / tau); hard = one_hot(argmax soft); weights = hard - soft.detach() + soft.
    fp32 and clamping keep every value finite for tau in [0.1, 10] even under bf16 autocast.

    binary=True takes one logit z (..., 1) standing for the logits [0, z]: it draws the same two
    Gumbel variables per item (the same random stream) and forms the same soft sample as
    sigmoid of +-(z + g1 - g0) / tau, without the cat and the 2-wide softmax.
    """
    tau = _check_tau(tau)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float().clamp(-clamp, clamp)
        shape = (*logits.shape[:-1], 2) if binary else logits.shape
        u = torch.rand(shape, device=logits.device, generator=generator)
        tiny = torch.finfo(torch.float32).tiny
        g = -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))
        if binary:
            s = (logits + (g[..., 1:] - g[..., :1])) / tau
            soft = torch.sigmoid(torch.cat([-s, s], dim=-1))
        else:
            soft = torch.softmax((logits + g) / tau, dim=-1)
        weights, decisions = straight_through(soft)
    return weights, decisions, soft


def choice_shares(decisions: torch.Tensor, num_choices: int) -> torch.Tensor:
    """Fraction of items that took each choice (the routes actually taken)."""
    counts = torch.bincount(decisions.reshape(-1), minlength=num_choices).float()
    return counts / counts.sum().clamp_min(1.0)


def load_balance_loss(probs: torch.Tensor, decisions: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer balance loss N * sum_i f_i * P_i.

    f_i comes from `decisions` (the routes actually taken, not a noise-free argmax);
    P_i is the mean router probability, which carries the gradient. It equals 1 at a
    uniform split and grows towards N as routing collapses onto one choice.
    """
    num_choices = probs.shape[-1]
    f = choice_shares(decisions, num_choices).to(probs.dtype)
    p = probs.reshape(-1, num_choices).mean(dim=0)
    return num_choices * (f * p).sum()


def routing_entropy(decisions: torch.Tensor, num_choices: int) -> float:
    """Entropy (nats) of the distribution of choices taken; 0 means every item took one choice."""
    shares = choice_shares(decisions, num_choices)
    nz = shares[shares > 0]
    return float(-(nz * nz.log()).sum())


def expected_compute_share(probs: list, costs: list) -> torch.Tensor:
    """Expected share of the full routed compute of one forward, over several routers.

    probs[r] (..., C_r) are router r's probabilities over its items, costs[r] (C_r,) the FLOPs one
    item spends on each choice. Spent = sum over routers and items of probs . costs; full = the
    same items all at their router's dearest choice. Differentiable in the probabilities.
    """
    spent = sum((p.float() * c.to(p.device, torch.float32)).sum() for p, c in zip(probs, costs))
    full = sum(p[..., 0].numel() * c.max().to(p.device, torch.float32) for p, c in zip(probs, costs))
    return spent / full


def budget_loss(share: torch.Tensor, target: float) -> torch.Tensor:
    """(share - target)^2: pushes routing towards cheaper choices while the expected compute
    share is above the target and towards dearer ones below it; zero gradient at the target.
    Two-sided on purpose: with nested choices ("both" contains "conv"), a one-sided hinge would
    leave routing to drift to whatever the task loss prefers below the budget, and the task loss
    alone always prefers the dearest choice."""
    return (share - float(target)) ** 2


def alpha_variance_loss(alphas) -> torch.Tensor:
    """Minus the mean, over blocks and images, of the spatial variance of alpha (B, N) per block.

    The seed's -Var(alpha) over everything is also maximised by whole blocks going all-0 or
    all-1; per image and per block, a collapsed block has zero variance and earns nothing.
    """
    return -torch.stack([a.float().var(dim=1, unbiased=False).mean() for a in alphas]).mean()
