"""Benchmark harness: train and evaluate zoo and timm models on suites with mmengine runners.

    python -m harness list 'dhvn_*'
    python -m harness run --models 'dhvn_*' --suite mnist5k --seeds 0 1 2
    python -m harness leaderboard [--check]
    python -m harness embedded          # the README job, about 22 minutes on 2 CPU cores

Importing the package registers its datasets, model wrappers, hooks and metrics in
mmengine's registries, so the configs under harness/configs can name them by `type=`.
"""
from . import checkpoint, console, hooks, metrics, optim, recipe, suites, wrappers  # noqa: F401  (registration)
from .errors import HarnessError
from zoo import __version__  # one version for the distribution (routing-zoo)

__all__ = ["HarnessError", "main", "__version__"]


def main(argv=None):
    from .cli import main as _main
    return _main(argv)
