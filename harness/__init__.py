"""Benchmark harness: train and evaluate zoo and timm models on suites with mmengine runners.

    python -m harness list 'dhvn_*'
    python -m harness run --models 'dhvn_*' --suite mnist5k --seeds 0 1 2
    python -m harness leaderboard [--check]
    python -m harness embedded          # the README job, about 22 minutes on 2 CPU cores

Importing the package registers its datasets, model wrappers, hooks and metrics in
mmengine's registries, so the configs under harness/configs can name them by `type=`.
Its rooms are told in docs/DESIGN.md, "Layout".
"""
import importlib as _importlib
import sys as _sys

from . import engine, suites  # noqa: F401  (registration)
from .errors import HarnessError
from zoo import __version__  # one version for the distribution (routing-zoo)

__all__ = ["HarnessError", "main", "__version__"]

# the module paths from before the harness had wings, kept importable for one release (configs'
# custom_imports, scripts of one's own): `harness.hooks` is `harness.engine.hooks`, the same module
MOVED = {
    **{name: f"engine.{name}" for name in ("checkpoint", "config_checks", "console", "distributed", "hooks",
                                           "metrics", "optim", "recipe", "resume", "schedule", "wrappers")},
    **{name: f"measure.{name}" for name in ("bench_report", "benchkit", "budget_eval", "executed_flops",
                                            "static_reference")},
    **{name: f"commands.{name}" for name in ("bench", "compare", "export", "visualize")},
    "flops_cmd": "commands.flops",
}
for _old, _new in MOVED.items():
    _sys.modules[f"{__name__}.{_old}"] = globals()[_old] = _importlib.import_module(f"{__name__}.{_new}")


def main(argv=None):
    from .cli import main as _main
    return _main(argv)
