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
import importlib.util as _importlib_util
import os as _os
import sys as _sys
import warnings as _warnings

from .errors import HarnessError

__all__ = ["HarnessError", "main", "__version__"]


def _cli_starting() -> bool:
    """True while `python -m harness` (Python sets sys.argv[0] to "-m" while it locates the module)
    or the `routing-zoo` script imports this package. The CLI then registers the harness's parts
    itself once its arguments parse (`harness.cli.main`), so --help, --version and a mistyped flag
    answer without torch, timm, mmengine or cv2 (docs/DESIGN.md, "CLI startup")."""
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "routing-zoo":
        return True
    argv = list(getattr(_sys, "orig_argv", ()))
    return _sys.argv[:1] == ["-m"] and "-m" in argv and argv[argv.index("-m") + 1:][:1] == [__name__]


if not _cli_starting():
    from . import engine, suites  # noqa: F401  (registration)
    from zoo import __version__  # one version for the distribution (routing-zoo)


def __getattr__(name):
    """What the CLI's start left out, on first use: the version, the registering subpackages."""
    if name == "__version__":
        from zoo import __version__
        return __version__
    if name in ("engine", "suites"):
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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


class _MovedFinder:
    """Imports an old path of MOVED as the moved module itself (so a patch through either name
    holds), with a DeprecationWarning naming the new path; nothing is imported before it is asked for."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        package, _, old = name.rpartition(".")
        if package == __name__ and old in MOVED:
            return _importlib_util.spec_from_loader(name, _MovedFinder)

    @staticmethod
    def create_module(spec):
        new = f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}"
        _warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release", DeprecationWarning,
                       stacklevel=2)
        module = _importlib.import_module(new)
        spec.moved_spec = module.__spec__  # the import system sets __spec__ to the old path's
        return module

    @staticmethod
    def exec_module(module):
        module.__spec__ = module.__spec__.moved_spec


_sys.meta_path.insert(0, _MovedFinder)


def main(argv=None):
    from .cli import main as _main
    return _main(argv)
