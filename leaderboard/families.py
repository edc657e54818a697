"""Which family a leaderboard row belongs to, and how the family is shown: read off the zoo's
family descriptors (docs/DESIGN.md, "Families"), so a new family needs no edit here. The timm
peers are no zoo family; their grey is the leaderboard's own.

    family_name("eshvision_xs")            # "eshvision" (zoo.family_of)
    family_name("timm:resnet18")           # "timm"
    color("exp11"), rank("exp11")          # "#DD8452", (2, "exp11")
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

__all__ = ["TIMM", "TIMM_COLOR", "family_name", "color", "rank"]

TIMM = "timm"
TIMM_COLOR = "#8C8C8C"
UNKNOWN_COLOR = "black"


def _descriptor(family: str):
    import zoo
    from zoo.layers.family import UnknownFamilyError
    try:
        return zoo.get_family(family)
    except UnknownFamilyError:
        return None


def family_name(model: str, recorded: Optional[str] = None) -> Optional[str]:
    """The family a record names (`recorded`) first; else the zoo's for a registered model
    (`zoo.family_of`), "timm" for a timm peer, None for a name the zoo does not know."""
    if recorded:
        return recorded
    if model.startswith(TIMM + ":"):
        return TIMM
    import zoo
    from zoo.layers.family import UnknownFamilyError
    from zoo.registry import UnknownModelError
    try:
        return zoo.family_of(model).name
    except (UnknownModelError, UnknownFamilyError):
        return None


def color(family: Optional[str]) -> str:
    """The family's colour in every figure (its `display.color`)."""
    if family == TIMM:
        return TIMM_COLOR
    descriptor = _descriptor(family) if family else None
    return descriptor.display.color if descriptor else UNKNOWN_COLOR


def rank(family: Optional[str]) -> Tuple[float, str]:
    """Sort key of a family in tables: its `display.order`, then the families the zoo does not
    describe (timm peers, unknown names), by name."""
    descriptor = _descriptor(family) if family else None
    return (descriptor.display.order if descriptor else math.inf), family or ""
