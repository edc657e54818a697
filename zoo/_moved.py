"""Old module paths kept for one release after a move (docs/DESIGN.md, "Layout")."""
from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["moved"]


def moved(old: str, new: str) -> None:
    """Make module `old` the module `new` itself (so a patch through either name holds), with a
    DeprecationWarning naming the new path."""
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning,
                  stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
