"""Which routing mode trained a leaderboard row (issue 24).

A record's `train.routing_mode` (harness/engine/routing_mode.py) says whether its routed model
trained in dense or sparse execution, and at which fixed capacity if any. Rows trained in
different modes are different models: averaging their seeds together would mix them, so each mode
is a row of its own, named by the model and its mode:

    row_name("dhvn_nano", mode_label(rec))   # "dhvn_nano" (dense), "dhvn_nano (train: sparse / cap 0.5)"

Dense training without a capacity is how every routed model trained before the field existed, so a
record without it, with null (no routers: static plans, timm peers) or with that mode keeps the
bare model name, and the rows of the committed results read as before.
"""
from __future__ import annotations

import math
from typing import Optional

__all__ = ["mode_label", "row_name", "LABEL_NOTE"]

LABEL_NOTE = ("\"(train: …)\" after a model: its routers trained in that mode (sparse: a branch no item "
              "chose is not computed; cap k: a fixed share k of the items takes the expensive path, by "
              "top-k); a row without it trained dense, every branch on every item. Rows of different "
              "modes are different models, averaged over their own seeds.")


def mode_label(record: dict) -> Optional[str]:
    """'train: sparse', 'train: sparse / cap 0.5', 'train: dense / cap 0.25'; None for dense
    training without a capacity, for a model without routers and for records older than the field."""
    train = record.get("train")
    mode = train.get("routing_mode") if isinstance(train, dict) else None
    if not isinstance(mode, dict):
        return None
    execution = mode.get("train_execution")
    execution = execution if isinstance(execution, str) and execution else "dense"
    capacity = mode.get("capacity")
    has_capacity = (isinstance(capacity, (int, float)) and not isinstance(capacity, bool)
                    and math.isfinite(capacity))
    if execution == "dense" and not has_capacity:
        return None
    return f"train: {execution}" + (f" / cap {capacity:g}" if has_capacity else "")


def row_name(model: str, label: Optional[str]) -> str:
    """The row a record belongs to: its model, with its training mode when that is not plain dense."""
    return model if label is None else f"{model} ({label})"
