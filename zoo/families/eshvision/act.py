"""Adaptive computation time (Graves, 2016) for the patches that may ponder.

State 0 is the block's output for every patch. Patches in `mask` may take up to
`max_extra_steps` more steps; a step is a callable that re-computes ONLY the still-running
patches (it gets the images that have any, their patches packed per image, see
`zoo.ops.dispatch.pack_rows`, and returns their new states), so pondering costs in proportion
to the patches that ponder.

Halting, per patch: h_k = sigmoid(halt(state_k)). A patch stops at the first state N where
the running sum of h passes 1 - eps, or at its last allowed state; that state gets the
remainder R = 1 - sum_{k<N} h_k and earlier states get h_k, so the halting weights sum to 1.
The output is the halting-weighted sum of the states. The same rule runs in training and at
eval (the seed pondered in training only, so it evaluated a different network).

With `rows` (B, k), positions per image that hold every patch allowed to ponder, the steps run
on those rows of every image instead of on a packing of the running patches: shapes known
before the data, for fixed-capacity training and compiled eval (docs/DESIGN.md, "Compiled
execution"). A row that is not running keeps its state, so every value is the packed form's;
the rows that are not running, and the images with no pondering patch, are computed and dropped,
and every step runs (no early stop when all have halted).

Ponder cost, per patch: Graves' N + R, with N the number of states used (1 .. 1 + max steps).
One departure, for patches that stop at their first state (including every patch not allowed
to ponder): R there is 1 - h_0, the halting mass that wanted to continue, instead of Graves'
constant 1. Graves' cost has no gradient for a patch that halts at once, so while nobody
ponders (a zero-initialised router gives alpha = 0.5 < threshold) the halting unit would learn
nothing; with 1 - h_0 it learns to halt at once on patches that do not need more compute,
which is the direction the ponder cost pushes anyway. The ordering is kept: a patch that takes
n extra steps always costs more than one that takes fewer.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from ...layers.routed import fixed_rows
from ...ops.dispatch import Packed, gather_rows, pack_rows, scatter_items, select_items, unpack_rows
from ...specs import ACTSpec

__all__ = ["ACTPonder", "ACTOutput"]

Step = Callable[[torch.Tensor, Packed], torch.Tensor]


class ACTOutput(NamedTuple):
    output: torch.Tensor        # (B, N, D) halting-weighted states
    ponder_cost: torch.Tensor   # (B, N) N + R per patch
    steps: torch.Tensor         # (B, N) extra steps taken (0 for patches that did not ponder)
    halting_mass: torch.Tensor  # (B, N) sum of halting weights (1 up to rounding)


class ACTPonder(nn.Module):
    def __init__(self, dim: int, spec: ACTSpec = ACTSpec(), halt_bias: float = 1.0):
        super().__init__()
        self.spec = spec
        self.halt = nn.Linear(dim, 1)
        self.halt_bias = halt_bias

    @torch.no_grad()
    def init_weights(self) -> None:
        # Graves: a positive halting bias starts the network with short ponders
        nn.init.trunc_normal_(self.halt.weight, std=0.02)
        self.halt.bias.fill_(self.halt_bias)

    def halting(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.halt(x).squeeze(-1).float())

    def forward(self, x: torch.Tensor, mask: torch.Tensor, step: Step,
                rows: Optional[torch.Tensor] = None) -> ACTOutput:
        """x (B, N, D) state 0 of every patch; mask (B, N) patches allowed to ponder; rows
        (B, k) sorted positions holding every patch of mask, to ponder in fixed shapes."""
        K, eps = self.spec.max_extra_steps, self.spec.eps
        h = self.halting(x)
        stop = ~mask | (h >= 1 - eps) | (K < 1)
        p = torch.where(stop, torch.ones_like(h), h)
        out = p.unsqueeze(-1).to(x.dtype) * x
        mass = p
        cost = torch.where(stop, 2 - h, torch.zeros_like(h))
        spent = torch.where(stop, torch.zeros_like(h), h)   # halting mass given to earlier states
        steps = torch.zeros_like(mask, dtype=torch.long)
        running = ~stop
        if rows is not None:
            out, cost, mass, steps = self._ponder(x, out, cost, mass, spent, steps, running, step, rows)
            return ACTOutput(out, cost, steps, mass)
        if not bool(running.any()):
            return ACTOutput(out, cost, steps, mass)
        # ponder on the images that have pondering patches only; the rest keep state 0
        images = select_items(running.any(dim=1))
        sub = [t.index_select(0, images) for t in (x, out, cost, mass, spent, steps, running)]
        sub = self._ponder(*sub, step)
        out, cost, mass, steps = (scatter_items(full, images, part)
                                  for full, part in zip((out, cost, mass, steps), sub))
        return ACTOutput(out, cost, steps, mass)

    def _ponder(self, states, out, cost, mass, spent, steps, running, step: Step,
                rows: Optional[torch.Tensor] = None):
        K, eps = self.spec.max_extra_steps, self.spec.eps
        fixed = None if rows is None else fixed_rows(rows)
        for k in range(1, K + 1):
            if fixed is None:
                if not bool(running.any()):
                    break
                packed = pack_rows(running)
            else:
                packed = fixed
            new = step(states, packed)                                   # (b, M, D)
            if fixed is not None:  # rows that are not running keep their state
                new = torch.where(running.gather(1, rows).unsqueeze(-1), new, gather_rows(states, rows))
            states = unpack_rows(states, packed, new)
            h = unpack_rows(torch.zeros_like(spent), packed, self.halting(new))
            stop = running & ((spent + h >= 1 - eps) | (k == K))
            go_on = running & ~stop
            zero = torch.zeros_like(h)
            p = torch.where(stop, 1 - spent, torch.where(go_on, h, zero))
            out = out + p.unsqueeze(-1).to(out.dtype) * states
            mass = mass + p
            cost = cost + torch.where(stop, (k + 1) + (1 - spent), zero)
            spent = torch.where(go_on, spent + h, spent)
            steps = steps + running.long()
            running = go_on
        return out, cost, mass, steps
