"""The static always-full reference a routed model's sparse run is timed against
(docs/DESIGN.md, glossary, and "Performance targets").

A routed model in dense execution is a flattering reference: it carries the weighted mix over
full activations (and Exp11's masks), which a plain static model never pays. The reference is a
model without routing that computes everything the full path computes: the dearest static plan,
not the one a user would pick (the leaderboard holds a routed model to its cheapest trained
static plan of equal quality, `leaderboard.static_plans`). Each family decides what it is
(`ZooModel.static_reference`, docs/DESIGN.md, "Families"); the reference gets the routed model's
weights wherever a name and shape match, so trained rows time trained weights on both sides.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch.nn as nn

__all__ = ["static_reference"]


def static_reference(arch: str, net: nn.Module,
                     build: Optional[Callable[[str], nn.Module]] = None) -> Tuple[str, nn.Module]:
    """(description, module) of `arch`'s always-full static reference (`zoo.static_reference`).
    `build(name)` builds a registered model at the routed model's input shapes (same suite and overrides)."""
    import zoo

    from ..names import base_model
    return zoo.static_reference(base_model(arch), net, build)  # a shipped tag: its model's reference
