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


def build_parser() -> argparse.ArgumentParser:
    from zoo import __version__  # the distribution's one version (harness.__version__ is the same)

    from .commands import VERBS
    # the same parser serves `python -m harness` and the `routing-zoo` console script
    prog = "routing-zoo" if os.path.basename(sys.argv[0]) == "routing-zoo" else "python -m harness"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train and evaluate zoo and timm models on benchmark suites with mmengine runners, "
                    "append results, and regenerate the leaderboard.")
    parser.add_argument("--version", action="version", version=f"routing-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


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
