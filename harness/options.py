"""Every command-line option more than one command takes, declared once, and the checks on them.

A command adds an option with `add(parser, "models", help=...)`: the flag, its type, its grammar
(`KEY=VALUE` options all parse with mmengine's DictAction) and its default live here; the command
may only word the help its own way. The checks that several commands share (counts that must be
at least 1, the data root a suite needs, the device, the name of a model's work dir) are here too,
each raising the harness's one-line error.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

from .errors import HarnessError

__all__ = ["add", "OPTIONS", "RESULTS_DIR", "LEADERBOARD_PAGE", "check_at_least_one", "check_data_root",
           "check_writable", "check_page", "check_seeds", "resolve_device", "work_dir_name"]

RESULTS_DIR = os.path.join("leaderboard", "results")           # one <suite>.jsonl per suite
LEADERBOARD_PAGE = os.path.join("leaderboard", "LEADERBOARD.md")


class _DictAction(argparse.Action):
    """mmengine's DictAction, imported when a KEY=VALUE option is given, not when the parser is
    built: --help and argument errors answer without mmengine (docs/DESIGN.md, "CLI startup")."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction
        DictAction(self.option_strings, self.dest, nargs=self.nargs)(parser, namespace, values, option_string)


def _dict_action():
    return _DictAction


# name -> (flag, argparse keywords, default help)
OPTIONS = {
    "models": ("--models", dict(nargs="+", required=True, metavar="PAT"),
               "zoo names or fnmatch patterns (quote them), shipped tags such as dhvn_nano.mnist5k (their "
               "weights, on their suite), or timm:NAME for timm's own models"),
    "model": ("--model", dict(metavar="NAME"), "one zoo model name, or a shipped tag such as dhvn_nano.mnist5k"),
    "suite": ("--suite", dict(), "benchmark suite (see `python -m harness list`)"),
    "checkpoint": ("--checkpoint", dict(metavar="PTH"), "a checkpoint the harness wrote (work_dir/iter_N.pth)"),
    "data_root": ("--data-root", dict(metavar="DIR"), "dataset location for suites that need one"),
    "model_kwargs": ("--model-kwargs", dict(nargs="+", default={}, metavar="KEY=VALUE", action="dict"),
                     "model constructor overrides, e.g. patch_size=4 (img_size/in_chans/max_seq_len "
                     "also reshape the data)"),
    "cfg_options": ("--cfg-options", dict(nargs="+", default={}, metavar="KEY=VALUE", action="dict"),
                    "override config keys, e.g. train_dataloader.num_workers=2"),
    "device": ("--device", dict(choices=["auto", "cpu", "cuda"], default="auto"),
               "where to run: cuda when available with auto (the default)"),
    "batch_size": ("--batch-size", dict(type=int, metavar="N"), "items per batch"),
    "seeds": ("--seeds", dict(type=int, nargs="+", default=[0], metavar="S"), "one run per seed (default: 0)"),
    "json": ("--json", dict(action="store_true"), "print the results as JSON instead of a table"),
    "compile": ("--compile", dict(action="store_true"),
                "torch.compile the model's step (routing's data-dependent shapes recompile or break "
                "graphs; see the README's measurement)"),
    "results_dir": ("--results-dir", dict(metavar="DIR", default=RESULTS_DIR),
                    "the results store (one <suite>.jsonl per suite)"),
    "leaderboard_page": ("--out", dict(default=LEADERBOARD_PAGE), None),
}


def add(parser, name: str, help: Optional[str] = None, **overrides):
    """Add option `name` of OPTIONS to `parser` (overrides: argparse keywords such as required)."""
    flag, kwargs, default_help = OPTIONS[name]
    kwargs = dict(kwargs, **overrides)
    if kwargs.get("action") == "dict":
        kwargs["action"] = _dict_action()
    return parser.add_argument(flag, help=help or default_help, **kwargs)


def check_at_least_one(args, *names: str) -> None:
    """Counts given on the command line (epochs, iterations, batch size, ...) must be >= 1."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise HarnessError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_data_root(suite, data_root: Optional[str], cfg_options: Optional[dict] = None) -> None:
    """A suite that reads from disk needs --data-root (or a --cfg-options that points it somewhere)."""
    if suite.needs_root and not data_root and not cfg_options:
        raise HarnessError(f"suite {suite.name} needs --data-root: {suite.layout}")


def check_seeds(seeds, flag: str = "--seeds") -> None:
    """Seeds torch and numpy accept, each once: a seed named twice would give two runs one work dir."""
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise HarnessError(f"{flag} must lie in [0, 2**32), got {bad[0]}; nothing was run")
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if twice:
        raise HarnessError(f"{flag} names seed {twice[0]} more than once; nothing was run")


def _is_page(path: str) -> bool:
    """A page the leaderboard wrote carries its GENERATED FILE line near the top (leaderboard.render)."""
    from leaderboard.atomic import file_head
    return b"GENERATED FILE: do not edit by hand" in file_head(path)


def check_page(out: str, done: str = "nothing was written") -> str:
    """The leaderboard page `out` may be written: not a *.jsonl name (the leaderboard would read it
    back as results), and not an existing file the leaderboard did not write (a README)."""
    if out.endswith(".jsonl"):
        raise HarnessError(f"--out {out} would be read back as results (the store is *.jsonl): the page is "
                           f"markdown; {done}")
    return check_writable(out, "leaderboard page", done=done, owns=_is_page,
                          ours="a leaderboard page (its GENERATED FILE line)")


def resolve_device(requested: str = "auto") -> str:
    """'cpu' or 'cuda' for --device auto|cpu|cuda; cuda without a GPU is a one-line error."""
    import torch
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda was requested but no CUDA device is available")
    return "cuda" if torch.cuda.is_available() else "cpu"


def work_dir_name(model: str) -> str:
    """A model name as one path component (timm:NAME and hub/NAME keep no ':' or '/')."""
    return model.replace(":", "-").replace("/", "-")


def check_writable(path: str, what: str, done: str = "nothing was run", folder_only: bool = False,
                   owns=None, ours: str = "") -> str:
    """`path` (a file to append to or create; with folder_only, a folder to write into) can be
    written: it is writable if it exists, else a file can be created in its nearest existing
    folder. An existing path that is not a regular file (a folder, a fifo, a device node) or not
    a folder (folder_only), and a dangling symlink, are refused (`leaderboard.atomic`); so is an
    existing non-empty file that `owns(path)` does not recognise as the command's own (`ours`
    says what that is; `leaderboard.atomic.refuse_foreign`). Returns the path with symlinks
    resolved: what the command writes. Creates nothing: a refused command leaves no empty
    folders behind."""
    from leaderboard.atomic import UnsafeOutput, refuse_foreign, resolve_output
    try:
        real = resolve_output(path, folder=folder_only)
        if owns is not None:
            refuse_foreign(path, owns, ours)
    except UnsafeOutput as e:
        raise HarnessError(f"the {what} cannot be written: {e}; {done}") from None
    probe = os.path.join(real, ".harness-write-check") if folder_only else real
    folder = os.path.dirname(probe)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        if not os.path.isdir(folder):
            raise OSError(f"{folder} is not a folder")
        if os.path.exists(probe):
            with open(probe, "ab"):  # a regular file (resolve_output): opening cannot block
                pass
        else:
            import tempfile
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".harness-write-check-"):
                pass
    except OSError as e:
        raise HarnessError(f"the {what} {path} cannot be written ({e.strerror or e}); {done}") from None
    return real
