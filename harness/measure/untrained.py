"""Whether a model's routers have ever been trained, read off their gate weights from outside.

A router's last gate layer starts at zero (`RouterSpec.zero_init`, the default of every variant),
and `Router._lean_to_cheapest` then sets one bias to +-1e-6 so that argmax picks the cheapest
choice. A fresh routed model therefore routes everything to its cheapest branch, and its routing
figures (a "79.9 % saved" from `flops`, a bench 6x faster than its static form) describe no trained
model. The first optimiser step moves those weights far past 1e-6, so "every weight 0 and every
bias within 1e-6" is a gate that has never been trained (docs/DESIGN.md, "Untrained routers").
A router built with zero_init=False starts random and cannot be told apart this way: it is
never reported.
"""
from __future__ import annotations

import sys
from typing import List, Optional

__all__ = ["untrained_routers", "untrained_note", "mark_untrained", "LEAN_MARGIN"]

LEAN_MARGIN = 1e-6  # the tie-breaking bias of a fresh gate (zoo/layers/router.py, _lean_to_cheapest)


def _gate_is_fresh(router) -> bool:
    if not getattr(router.spec, "zero_init", False):
        return False
    last = router.net[-1]
    if last.weight.is_meta:
        return False
    bias_fresh = last.bias is None or float(last.bias.detach().abs().max()) <= LEAN_MARGIN
    return bias_fresh and not bool(last.weight.detach().any())


def untrained_routers(net) -> List[str]:
    """The layer names (or indices) of the routers of `net` whose gates are still at their init."""
    import zoo
    return [r.layer or str(i) for i, r in enumerate(zoo.routing.routers(net)) if _gate_is_fresh(r)]


def untrained_note(net, model: str) -> Optional[str]:
    """One line saying that `model`'s routing figures come from untrained routers, or None."""
    import zoo
    total = len(zoo.routing.routers(net))
    fresh = untrained_routers(net)
    if not fresh:
        return None
    which = "its routers have" if len(fresh) == total else f"{len(fresh)} of its {total} routers have"
    return (f"harness: note: {model}: {which} never been trained (gates at their zero init, so every item "
            f"takes the cheapest choice); its routing figures describe no trained model: give trained "
            f"weights (--checkpoint)")


def mark_untrained(routing: dict, net, model: str) -> dict:
    """A record's routing with `"untrained": true` on each router still at init (e.g. --eval-only of
    a fresh checkpoint), for `compare` to say so too; the note is printed once when any is."""
    fresh = set(untrained_routers(net)) & set(routing)
    if fresh:
        print(untrained_note(net, model), file=sys.stderr)
    return {layer: dict(r, untrained=True) if layer in fresh else r for layer, r in routing.items()}
