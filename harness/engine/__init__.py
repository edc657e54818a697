"""The mmengine plumbing: model wrappers, hooks, metrics, the training recipe's parts, the runner's
console, checkpoints, distributed launch, the schedule and the checks on a resolved config.

Importing it registers the wrappers, hooks, metrics and optimiser wrappers in mmengine's
registries, so a config names them by `type=` (docs/DESIGN.md, "Layout").
"""
from . import checkpoint, console, hooks, metrics, optim, recipe, routing_mode, wrappers  # noqa: F401  (registration)
