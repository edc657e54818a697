"""What the generated suites (cluttered digits, MQAR) share: a random stream fixed by their
parameters, and one-line errors for parameters out of range.

Each generator draws from its own `torch.Generator`, seeded from a hash of the generator's name,
its version, the split and every parameter, so a suite's data depends on nothing but those:
not on the run seed, the process, or which other suite was built first
(docs/DESIGN.md, "Embedded suites").
"""
from __future__ import annotations

import hashlib
from typing import Optional

import torch

from ..errors import HarnessError

__all__ = ["stream", "check_int", "check_split", "evenly_spaced"]


def stream(*parts) -> torch.Generator:
    """A generator seeded from `parts` (names, version, split, parameters, seed)."""
    digest = hashlib.sha256("/".join(map(repr, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def check_int(owner: str, name: str, value, minimum: int, maximum: Optional[int] = None, why: str = "") -> int:
    """`value` as an int in [minimum, maximum], or a one-line HarnessError naming the parameter."""
    if (not isinstance(value, int) or isinstance(value, bool) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        reason = f" ({why})" if why else ""
        raise HarnessError(f"{owner}: {name} must be an integer {bound}{reason}, got {value!r}")
    return value


def check_split(owner: str, split) -> str:
    if split not in ("train", "test"):
        raise HarnessError(f"{owner}: split must be 'train' or 'test', got {split!r}")
    return split


def evenly_spaced(size: int, limit: Optional[int]) -> Optional[torch.Tensor]:
    """`limit` evenly spaced indices of `size` items (quick checks and tests), or None for all:
    evenly spaced rather than the first ones, so a label-sorted split keeps every class."""
    if limit is None or limit >= size:
        return None
    return torch.linspace(0, size - 1, limit).round().long()
