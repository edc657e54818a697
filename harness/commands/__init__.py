"""The `python -m harness` verbs, one module each: its subparser (`add_parser`) and its `cmd_*`.
`harness.cli` builds the top parser from `VERBS`, in this order, and dispatches
(docs/DESIGN.md, "Layout"). Each verb imports its heavy dependencies only when it runs."""
from . import bench, compare, embedded, export, flops, leaderboard, run, visualize
from . import list as list_verb  # the module; `list` stays the builtin here

VERBS = (list_verb, run, leaderboard, embedded, bench, flops, visualize, compare, export)
