"""The protocol every routed block follows, whatever it routes (docs/DESIGN.md, "Routed blocks").

A routed block's forward computes its router's features, asks the router for a `Route`, and hands
its own inputs and the route to `dispatch`, which runs `run_routed`. So every block says the same three
things, and tools need neither class names nor private methods:

* `choices`: its router's choices, in the router's order;
* `run_routed(inputs, route)`: the routed part of the block: each item's choice run for that item
  (only the branches an item needs under sparse execution, every branch under dense) and
  combined into the block's output;
* `run_choice(choice, inputs, items=None)`: one choice as a static model computes it: on every
  item (the branch alone, no router, selection or scatter), or only at `items` (a bool mask shaped
  like the route's decisions), the output there when exactly those items take `choice`. It equals
  what `run_routed` gives those items under such a route; the family writes the first case
  (`static_choice`), and the second comes from `run_routed` itself.

`routed_calls(model, x)` runs one forward and returns each routed block's call: the block, the
inputs its `run_routed` got, its route, and the router with the features it read, so that the routed
side (`call.routed()`: the router, then `run_routed`) and the static side (`call.block.run_choice(c,
call.inputs)`) can be timed or compared on the inputs a real forward gives (the router-overhead
benchmark does both).
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .router import Route, Router

__all__ = ["RoutedBlock", "RoutedCall", "routed_calls"]

_CALLS: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("zoo_routed_calls", default=None)


class RoutedBlock(nn.Module):
    """Base of every routed block (see the module docstring)."""
    choices: Tuple[str, ...] = ()

    def dispatch(self, inputs: tuple, route: Route) -> torch.Tensor:
        """What the block's forward calls: `run_routed`, recorded when `routed_calls` is listening."""
        calls = _CALLS.get()
        if calls is not None:
            calls.append(RoutedCall(self, tuple(inputs), route))
        return self.run_routed(inputs, route)

    def run_routed(self, inputs: tuple, route: Route) -> torch.Tensor:
        """Each item's choice run for that item, combined into the block's output (the family's code)."""
        raise NotImplementedError

    def static_choice(self, choice: str, inputs: tuple) -> torch.Tensor:
        """`choice` on every item, as a static model computes it (the family's code)."""
        raise NotImplementedError

    def run_choice(self, choice: str, inputs: tuple, items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`choice` on every item (items None: the block's output), or its output at `items` (a
        bool mask like the route's decisions; rows in the order of `mask.nonzero()`) when exactly
        those items take it and the others another choice, run by sparse execution."""
        if choice not in self.choices:
            raise ValueError(f"{type(self).__name__} has no choice {choice!r}; its choices are {self.choices}")
        if items is None:
            return self.static_choice(choice, inputs)
        index = self.choices.index(choice)
        other = next(i for i, c in enumerate(self.choices) if c != choice)
        decisions = torch.where(items, torch.full_like(items, index, dtype=torch.long),
                                torch.full_like(items, other, dtype=torch.long))
        probs = F.one_hot(decisions, len(self.choices)).float()
        return self.run_routed(inputs, Route(self.choices, decisions, None, probs, sparse=True))[items]


@dataclass
class RoutedCall:
    """One routed block's call in a forward (`routed_calls`)."""
    block: RoutedBlock
    inputs: tuple                        # what the block's `run_routed` got besides the route
    route: Route
    router: Optional[Router] = None      # the router that made `route`
    features: Optional[torch.Tensor] = None  # what that router read

    def routed(self) -> torch.Tensor:
        """The routed side: the router on its features, then the block's `run_routed` under that route."""
        return self.block.run_routed(self.inputs, self.router(self.features))


def routed_calls(model: nn.Module, *inputs, **kwargs) -> List[RoutedCall]:
    """One forward of `model(*inputs, **kwargs)` without gradients, under whatever execution and
    forced choices the caller set; every routed block's call in the order they ran."""
    made = []

    def hook(router, args, route):
        made.append((route, router, args[0]))
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Router)]
    token = _CALLS.set([])
    try:
        with torch.no_grad():
            model(*inputs, **kwargs)
        calls = _CALLS.get()
    finally:
        _CALLS.reset(token)
        for h in handles:
            h.remove()
    for call in calls:
        call.router, call.features = next(((r, f) for route, r, f in made if route is call.route), (None, None))
    return calls
