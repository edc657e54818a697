"""`python -m harness VERB`: the top parser and the dispatch. Each verb is a module of
`harness.commands` (docs/DESIGN.md, "Layout").

Every user mistake ends as one line on stderr, `harness: error: ...`, and exit status 2,
before any work where it can be detected up front, and never with a partial record.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from . import runtime
from .errors import HarnessError

__all__ = ["main", "build_parser"]


def _version() -> str:
    """zoo.__version__, the distribution's one version (harness.__version__ is the same), read
    from zoo/__init__.py's source: importing zoo would import torch for --version."""
    import importlib.util
    import re
    spec = importlib.util.find_spec("zoo")
    with open(spec.origin, encoding="utf-8") as f:
        found = re.search(r'^__version__ = ["\']([^"\']+)["\']', f.read(), re.M)
    return found.group(1) if found else "unknown"


class _VersionAction(argparse.Action):
    """argparse's `version` action, reading the version only when it is asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show program's version number and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(f"routing-zoo {_version()}\n", sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from .commands import VERBS
    # the same parser serves `python -m harness` and the `routing-zoo` console script
    prog = "routing-zoo" if os.path.basename(sys.argv[0]) == "routing-zoo" else "python -m harness"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train and evaluate zoo and timm models on benchmark suites with mmengine runners, "
                    "append results, and regenerate the leaderboard.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def _register() -> None:
    """The registration `import harness` does (datasets, wrappers, hooks and metrics in
    mmengine's registries), which the CLI's own start leaves until its arguments have parsed
    (harness/__init__.py, `_cli_starting`); a no-op once done."""
    from . import engine, suites  # noqa: F401


def _one_line(e: Exception) -> str:
    """The error's own line. A HarnessError raised in a data-loader worker comes back wrapped in
    the worker's traceback ("Caught HarnessError in DataLoader worker process 0 ..."): its last
    line is the message."""
    text = str(e).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split("HarnessError: ", 1)[-1]
    return text.splitlines()[0] if text else type(e).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _register()
    try:
        runtime.tune_allocator()
        code = args.func(args, argv)
    except HarnessError as e:
        print(f"harness: error: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:
        print("harness: interrupted; no record written for the unfinished run", file=sys.stderr)
        raise SystemExit(130)
    except BrokenPipeError:
        # the reader went away (`routing-zoo list | head`): stop quietly, as a shell tool does; the
        # rest of the output goes nowhere instead of raising again at interpreter exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141)
    if code:
        raise SystemExit(code)
    return 0
