"""The one gate/router of the zoo, used at sample, patch and token granularity.

A `Router` turns item features into a `Route`: integer decisions, branch weights whose
forward value is the decision taken (one-hot) and whose gradient is the soft probability,
and a flag telling the routed block whether to execute sparsely. After every forward it
keeps a detached `RouteRecord`, which `zoo.routing.trace(model)` collects.

Granularity only changes the shape of the items: (B, C) features give (B,) decisions for
per-sample routing; (B, N, C) give (B, N) for patches or tokens.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.gating import (
    budget_loss, choice_shares, expected_compute_share, explore, gumbel_straight_through, load_balance_loss,
    routing_entropy, straight_through, straight_through_at,
)
from ..specs import RouterSpec
from . import capacity
from .router_state import Control

__all__ = ["Router", "Route", "RouteRecord", "EvalProbs", "probabilities", "LastForward", "GRANULARITIES",
           "EXECUTION_MODES", "routes_budget_loss", "budget_floor", "check_budget_target"]

GRANULARITIES = ("sample", "patch", "token")
EXECUTION_MODES = ("sparse", "dense")

Policy = Union[int, Callable[["Router", torch.Size], torch.Tensor]]


class EvalProbs:
    """The noise-free probabilities of eval logits, computed on first read.

    At eval nothing in sparse execution reads them (argmax decides), yet the 2-wide softmax
    was half of an Exp11 token router's time. The value is the one `Router.forward` would have
    computed then: the same ops on the same logits and temperature (the router computes
    pending values before `set_tau` or a state-dict load changes its tau buffer)."""

    def __init__(self, logits: torch.Tensor, tau: torch.Tensor, binary: bool):
        self._logits, self._tau, self._binary = logits, tau, binary
        self._value: Optional[torch.Tensor] = None

    @property
    def value(self) -> torch.Tensor:
        if self._value is None:
            self._value = probabilities(self._logits, self._tau, self._binary)
            self._logits = self._tau = None
        return self._value


def probabilities(logits: torch.Tensor, tau, binary: bool) -> torch.Tensor:
    """softmax(logits / tau); a binary router's (..., 1) logit z gives [sigmoid(-z/tau), sigmoid(z/tau)]."""
    if binary:
        # softmax([0, z] / tau) is [sigmoid(-z / tau), sigmoid(z / tau)]: one elementwise op
        # instead of a cat and a 2-wide softmax (5.9x faster at (64, 49, 2)); sigmoid(-x)
        # rather than 1 - sigmoid(x) keeps a tiny probability exact instead of cancelling
        s = logits / tau
        return torch.sigmoid(torch.cat([-s, s], dim=-1))
    return torch.softmax(logits / tau, dim=-1)


def _resolved(probs):
    return probs.value if isinstance(probs, EvalProbs) else probs


@dataclass
class RouteRecord:
    """What one router decided in the last forward (detached, on the model's device)."""
    layer: str
    granularity: str
    choices: tuple
    decisions: torch.Tensor   # (B,) or (B, N) integer choice indices
    # (..., len(choices)) noise-free probabilities softmax(logits / tau); at eval an
    # `EvalProbs`, computed when read
    _probs: Union[torch.Tensor, EvalProbs]

    @property
    def probs(self) -> torch.Tensor:
        return _resolved(self._probs)

    def shares(self) -> dict:
        s = choice_shares(self.decisions, len(self.choices))
        return {c: float(v) for c, v in zip(self.choices, s)}

    def entropy(self) -> float:
        return routing_entropy(self.decisions, len(self.choices))

    def load_balance(self) -> float:
        return float(load_balance_loss(self.probs.float(), self.decisions))

    def __getitem__(self, key):  # records read as mappings too: rec["decisions"]
        return getattr(self, key)


class LastForward:
    """Graph tensors a forward leaves for a later call (aux losses): deepcopy (EMA, timm's
    model copies) and pickle refuse non-leaf tensors, so a copy starts empty instead."""

    def __reduce__(self):
        return LastForward, ()


@dataclass
class Route:
    """A router's output as the routed block consumes it."""
    choices: tuple
    decisions: torch.Tensor
    # forward value: one-hot (hard) or probs (soft); gradient: probs. None means the plain
    # one-hot of `decisions` with no gradient (eval, forced choices): it is built only if read
    _weights: Optional[torch.Tensor]
    # differentiable noise-free probabilities, for auxiliary losses (an `EvalProbs` at eval)
    _probs: Union[torch.Tensor, EvalProbs]
    sparse: bool              # True: compute each branch only for its own items
    costs: Optional[torch.Tensor] = None  # (choices,) FLOPs per item of each choice (the router's)
    selected: Optional[torch.Tensor] = None  # fixed-capacity training: sorted (B, k) / (k,) non-cheap items

    @property
    def probs(self) -> torch.Tensor:
        return _resolved(self._probs)

    @property
    def weights(self) -> torch.Tensor:
        if self._weights is None:
            # sparse execution at eval never reads it: 20 us of a 200 us ESH patch router
            self._weights = F.one_hot(self.decisions, len(self.choices)).float()
        return self._weights

    @property
    def carries_gradient(self) -> bool:
        """Whether the weights carry the router's gradient (then a routed block multiplies by them)."""
        return self._weights is not None and self._weights.requires_grad

    def index(self, name: str) -> int:
        return self.choices.index(name)

    def mask(self, *names: str) -> torch.Tensor:
        """Items whose decision is any of `names`."""
        if len(names) == 1:  # one comparison, not a zero fill and an OR per name
            return self.decisions == self.index(names[0])
        m = torch.zeros_like(self.decisions, dtype=torch.bool)
        for n in names:
            m |= self.decisions == self.index(n)
        return m


def budget_floor(routers: Sequence["Router"]) -> float:
    """The least expected compute share the budget objective can reach: every item of every
    router on its cheapest choice, over every item on its dearest (`expected_compute_share`)."""
    spent = sum(r.items * float(r.costs.min()) for r in routers)
    full = sum(r.items * float(r.costs.max()) for r in routers)
    return spent / full if full else 1.0


def check_budget_target(routers: Sequence["Router"], target: Optional[float], model: str = "the model") -> None:
    """A training budget below `budget_floor` cannot be met: the objective would push every item
    to its cheapest choice and still pay, so it is refused (one line, naming the floor)."""
    if target is None or not routers or any(r.costs.is_meta for r in routers):
        return
    floor = budget_floor(routers)
    if float(target) < floor - 1e-9:
        raise ValueError(f"router compute_target (the training budget) {float(target):g} is below what {model} "
                         f"can reach: every item on its cheapest choice executes {floor:.3f} of its full routed "
                         f"compute; set router.compute_target "
                         f">= {floor:.3f}")


def routes_budget_loss(routes: Sequence[Route], target: float) -> torch.Tensor:
    """The compute-aware objective over the routes of one forward: (expected share of the
    full routed compute - target)^2 (`zoo.ops.gating.budget_loss`)."""
    share = expected_compute_share([r.probs for r in routes], [r.costs for r in routes])
    return budget_loss(share, target)


class Router(nn.Module):
    """Gate: features -> per-item logits over `choices` -> a `Route`.

    Training (mode="gumbel"): one Gumbel draw, straight-through. mode="hard": straight-through
    on the noise-free probabilities. mode="soft": the probabilities weight every branch.
    Eval: argmax of the logits, no noise, so an item's decision depends on that item alone.
    `spec.capacity`: top-k per row in training, a calibrated threshold at eval (`zoo.layers.capacity`).

    `binary=True` gives one logit s for `choices[1]` against a fixed 0 for `choices[0]`, so
    probs[..., 1] = sigmoid(s): ESH-Vision's alpha, and argmax is "alpha > 0.5".
    """
    # assigned, these set every thread's default; zoo.routing's contexts override them for
    # the calling thread only (`router_state`)
    execution = Control(None)
    forced = Control(None)
    cost_shift = Control(0.0)

    def __init__(self, in_features: int, choices: Sequence[str], granularity: str,
                 spec: RouterSpec = RouterSpec(), layer: str = "", binary: bool = False,
                 extra_features: int = 0, full: Optional[str] = None):
        super().__init__()
        if full is not None and full not in choices:
            raise ValueError(f"full choice {full!r} is not one of {tuple(choices)}")
        self._full = full
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if binary and len(choices) != 2:
            raise ValueError("a binary router needs exactly two choices")
        self.choices, self.granularity, self.layer = tuple(choices), granularity, layer
        self.spec, self.binary = spec, binary
        n_in, n_out = in_features + extra_features, 1 if binary else len(self.choices)
        if spec.hidden:
            self.net = nn.Sequential(nn.Linear(n_in, spec.hidden), nn.GELU(), nn.Linear(spec.hidden, n_out))
        else:
            self.net = nn.Sequential(nn.Linear(n_in, n_out))
        if spec.zero_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("tau", torch.tensor(float(spec.tau)))
        capacity.attach(self)  # with RouterSpec.capacity, the calibrated eval threshold (`zoo.layers.capacity`)
        # what each choice costs, declared by the routed block (`set_costs`); derived from the
        # spec, so not part of the state dict
        self.register_buffer("costs", torch.ones(len(self.choices)), persistent=False)
        self.items = 1  # items decided per model input (`set_costs`): weights routers in `budget_floor`
        self.execution: Optional[str] = None  # None: sparse at eval, `spec.train_execution` in training
        self.forced: Optional[Policy] = None
        # the FLOPs budget (`zoo.routing.flops_budget`): eval decisions are
        # argmax(logits - cost_shift * costs / max(costs)); 0 is plain argmax
        self.cost_shift: float = 0.0
        self.last: Optional[RouteRecord] = None  # detached, for zoo.routing.trace
        self._graph = LastForward()               # the last Route itself, for aux losses

    @property
    def last_route(self) -> Optional[Route]:
        """The Route of the last forward, with its graph (None before any forward or in a copy)."""
        return getattr(self._graph, "route", None)

    def set_costs(self, costs: Mapping[str, float], items: int = 1) -> None:
        """FLOPs one item spends in the routed block on each choice (every choice named), and how
        many items the router decides per model input (per image for patches; 1 per sample; the
        routers of one LM share a sequence, so 1 serves them all)."""
        if set(costs) != set(self.choices):
            raise ValueError(f"router {self.layer!r}: costs must name exactly {self.choices}, got {sorted(costs)}")
        values = [float(costs[c]) for c in self.choices]
        if not all(math.isfinite(v) and v >= 0 for v in values) or max(values) <= 0:
            raise ValueError(f"router {self.layer!r}: costs must be finite, >= 0 and not all 0, got {values}")
        self.costs.copy_(torch.tensor(values))
        self.items = int(items)
        if self.spec.zero_init:
            self._lean_to_cheapest()

    @torch.no_grad()
    def _lean_to_cheapest(self) -> None:
        """A zero-initialised gate ties every choice, and argmax breaks a tie towards the first
        one, whatever it costs. A 1e-6 margin breaks it towards the cheapest choice instead:
        hard routing starts as the cheapest form, and the budget objective and the task loss
        buy compute where it helps. (Started at the full form instead, routed dhvn_nano drifted
        to transformer-only routes and trained worse.) Gumbel noise swamps the margin; the first
        optimiser step outgrows it."""
        bias = self.net[-1].bias
        if bias.is_meta:
            return
        bias.zero_()
        cheapest = min(range(len(self.choices)), key=lambda i: float(self.costs[i]))
        if self.binary:
            bias.fill_(1e-6 if cheapest == 1 else -1e-6)
        else:
            bias[cheapest] = 1e-6

    @property
    def full_choice(self) -> str:
        """The choice of the model's full form: declared by the block, else the dearest."""
        if self._full is not None:
            return self._full
        c = self.costs.tolist()
        return self.choices[max(range(len(c)), key=lambda i: (c[i], i))]

    @property
    def cheap_choice(self) -> str:
        """The cheapest choice other than the full one (the first of equals)."""
        return self.choices[int(capacity.cheap_index(self))]

    def set_tau(self, tau: float) -> None:
        tau = float(tau)
        if not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"temperature tau must be a finite number > 0, got {tau}")
        self._resolve_pending_probs()
        self.tau.fill_(tau)

    def _resolve_pending_probs(self) -> None:
        """Pending eval probabilities read the tau buffer: compute them before it changes."""
        if self.last is not None and isinstance(self.last._probs, EvalProbs):
            self.last._probs.value

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a temperature <= 0 or non-finite would make every eval probability NaN; refused here,
        # since loaders that only warn (mmengine's non-strict load) would carry it through
        tau = state_dict.get(prefix + "tau")
        if isinstance(tau, torch.Tensor) and tau.numel() == 1 and not tau.is_meta:
            value = float(tau)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"router {self.layer!r}: the state dict's {prefix}tau is {value}; a temperature "
                                 f"must be a finite number > 0")
        self._resolve_pending_probs()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def is_sparse(self) -> bool:
        if self.spec.mode == "soft" and self.forced is None:
            return False  # a continuous merge needs every branch
        if self.execution is not None:
            return self.execution == "sparse"
        return not self.training or self.spec.train_execution == "sparse"

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-choice logits (..., len(choices)); a binary router's first column is its fixed 0."""
        out = self._gate(feats)
        if self.binary:
            out = torch.cat([torch.zeros_like(out), out], dim=-1)
        return out

    def _gate(self, feats: torch.Tensor) -> torch.Tensor:
        """The net's clamped output: (..., len(choices)), or (..., 1) for a binary router."""
        # in fp32 whatever the model's dtype (bf16, fp16) or autocast: a near-tie of two logits
        # decides which branch runs, and half precision would flip it. fp32 weights are used as
        # they are (`.float()` returns the same tensor), so fp32 numerics are unchanged.
        x = feats.float()
        # entering a disabled-autocast context costs as much as the gate's matmul right after a
        # large layer (cold caches), so it is entered only when autocast is on
        off = torch.autocast(device_type=feats.device.type, enabled=False) \
            if torch.is_autocast_enabled(feats.device.type) else contextlib.nullcontext()
        with off:
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bias = None if layer.bias is None else layer.bias.float()
                    x = F.linear(x, layer.weight.float(), bias)
                else:
                    x = layer(x)
        c = self.spec.logit_clamp
        # in place on the fresh output when no graph records it: one small allocation less
        return x.clamp(-c, c) if x.requires_grad else x.clamp_(-c, c)

    def forward(self, feats: torch.Tensor) -> Route:
        expected = 2 if self.granularity == "sample" else 3
        if feats.dim() != expected:
            raise ValueError(f"{self.granularity} router expects {expected}-D features, got {tuple(feats.shape)}")
        logits = self._gate(feats)
        if self.cost_shift and not self.training:
            # the budget knob moves the logits themselves, so everything downstream of the
            # decision (ESH's ponder threshold on alpha) sees the same shifted router
            shift = self.cost_shift * (self.costs / self.costs.max()).to(logits.dtype)
            # binary: [0, z] - shift has the softmax and argmax of the one logit z - (s1 - s0)
            logits = logits - (shift[1] - shift[0] if self.binary else shift)
        # float(tau) is a host sync on GPU; inference only needs the division, so it keeps the
        # 0-d buffer (set_tau already refused tau <= 0). Training samples need the checked float.
        tau = float(self.tau) if self.training else self.tau
        if self.training or self.spec.mode == "soft" or logits.requires_grad:
            probs = probabilities(logits, tau, self.binary)
        else:  # eval without a graph: built if read (a trace, ESH's ponder threshold)
            probs = EvalProbs(logits, tau, self.binary)
        n, selected = len(self.choices), None
        if self.forced is not None:
            decisions = self._forced_decisions(logits.shape[:-1], logits.device)
            weights = None  # one-hot, built if read
        elif self.spec.capacity is not None:  # docs/DESIGN.md, "Training execution and fixed capacity"
            decisions, weights, selected = capacity.decide(self, logits, probs)
        elif self.spec.mode == "soft":
            decisions, weights = probs.argmax(dim=-1), probs
        elif self.training:
            if self.spec.mode == "gumbel":
                weights, decisions, soft = gumbel_straight_through(logits, tau, self.spec.logit_clamp,
                                                                   binary=self.binary)
            else:
                (weights, decisions), soft = straight_through(probs), probs
            if self.spec.explore > 0:
                decisions = explore(decisions, n, self.spec.explore)
                weights = straight_through_at(soft, decisions)
        else:
            # argmax of [0, z] is 1 exactly where z > 0 (a tie goes to the first choice)
            decisions = (logits[..., 0] > 0).long() if self.binary else logits.argmax(dim=-1)
            weights = None  # one-hot, built if read (dense execution, dense_mix)
        # integer decisions never carry a graph, so they need no detach
        self.last = RouteRecord(self.layer, self.granularity, self.choices, decisions,
                                probs if isinstance(probs, EvalProbs) else probs.detach())
        route = Route(self.choices, decisions, weights, probs, self.is_sparse(), self.costs, selected)
        self._graph.route = route
        return route

    def _forced_decisions(self, shape: torch.Size, device) -> torch.Tensor:
        if callable(self.forced):
            decisions = self.forced(self, shape).to(device=device, dtype=torch.long)
            if decisions.shape != shape:
                raise ValueError(f"policy for {self.layer} returned {tuple(decisions.shape)}, expected {tuple(shape)}")
            return decisions
        return torch.full(shape, int(self.forced), dtype=torch.long, device=device)

    def extra_repr(self) -> str:
        return (f"layer={self.layer!r}, granularity={self.granularity}, choices={self.choices}, "
                f"mode={self.spec.mode}")
