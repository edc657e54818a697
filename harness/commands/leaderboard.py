"""`python -m harness leaderboard`: regenerate (or --check) leaderboard/LEADERBOARD.md from the
results store."""
from __future__ import annotations

import os
import sys

from .. import options
from ..errors import HarnessError

__all__ = ["add_parser", "cmd_leaderboard"]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser("leaderboard", help="regenerate leaderboard/LEADERBOARD.md from the results store",
                              description="Regenerate the markdown leaderboard from <results-dir>/*.jsonl.")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the committed file differs from what would be generated")
    options.add(p, "results_dir")
    options.add(p, "leaderboard_page")
    p.set_defaults(func=cmd_leaderboard)
    return "leaderboard"


def cmd_leaderboard(args, argv=()) -> int:
    from leaderboard.figures import FIGURES_DIRNAME
    from leaderboard.render import check_leaderboard, write_leaderboard
    from leaderboard.sections import extra_sections
    _check_leaderboard_paths(args.results_dir, args.out)
    figures = os.path.join(os.path.dirname(os.path.abspath(args.results_dir)), FIGURES_DIRNAME)
    if args.check:
        from leaderboard.atomic import cut_files
        ok = check_leaderboard(args.results_dir, args.out, extra_sections(args.results_dir, write=False))
        # the page can match while a figure it links was cut short (a killed writer)
        for path in cut_files(figures):
            print(f"{path} is cut short or empty", file=sys.stderr)
            ok = False
        if not ok:
            print(f"harness: {args.out} is out of date; run `python -m harness leaderboard`", file=sys.stderr)
            return 1
        print(f"harness: {args.out} is up to date")
        return 0
    # before anything is drawn: a page or figures folder that cannot be written loses nothing
    # a symlinked page is written through: its target is replaced, the link stays
    page = options.check_page(args.out)
    options.check_writable(figures, "figures folder", done="nothing was written", folder_only=True)
    write_leaderboard(args.results_dir, page, extra_sections(args.results_dir, write=True))
    print(f"harness: wrote {args.out}")
    return 0


def _check_leaderboard_paths(results_dir: str, out: str) -> None:
    """A results dir that is not one, and a page that would land among the records, are refused:
    either would replace the committed page with a wrong one (or feed the page back in)."""
    if not os.path.isdir(results_dir):
        # a mistyped path must not regenerate (and so empty) the committed page
        raise HarnessError(f"results dir {results_dir} does not exist; nothing was written "
                           f"(the default is {options.RESULTS_DIR})")
    if out.endswith(".jsonl"):
        raise HarnessError(f"--out {out} would be read back as results (the store is *.jsonl): the page is "
                           f"markdown; nothing was written")
    page = os.path.realpath(out)
    if os.path.dirname(page) == os.path.realpath(results_dir) \
            or os.path.exists(os.path.join(results_dir, os.path.basename(options.LEADERBOARD_PAGE))):
        raise HarnessError(f"results dir {results_dir} holds the leaderboard page, not results (*.jsonl); "
                           f"nothing was written (the default is {options.RESULTS_DIR})")
