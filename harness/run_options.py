"""The `run` flags, declared once.

Each field of `RunOptions` is one flag of `python -m harness run`, named after the field
(`max_iters` is --max-iters). Its metadata holds the help, the argparse keywords (or, for an option
several commands share, its entry in `harness.options.OPTIONS`), the check on a given value, and
how the command that reproduces one run carries it. The parser (`add_arguments`), the checks
(`check`) and that command (`argv`) are read off the fields, so a new `run` flag is one field here
(docs/DESIGN.md, "Layout").
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Callable, List, Optional, Tuple

from . import options
from .errors import HarnessError

__all__ = ["RunOptions", "flag", "shared", "flag_name"]

# (flag, given value, all the options) -> the one-line error, or None
Check = Callable[[str, object, "RunOptions"], Optional[str]]


def flag(default=None, *, help: str, check: Optional[Check] = None, replay: bool = True, selects: bool = False,
         option: Optional[str] = None, deprecated: Tuple[str, ...] = (), **argparse_kwargs):
    """A field that is a `run` flag. check: refuses a given value (None and False are not given).
    replay=False: the reproducing command leaves it out. selects: the flag selects runs
    (--models, --seeds); the command names its one model and seed last, even at the default.
    option: the name of a shared option (`harness.options.OPTIONS`) whose grammar the flag takes.
    deprecated: old spellings the parser still takes, each with a one-line note on stderr."""
    meta = dict(help=help, check=check, replay=replay, selects=selects, option=option, deprecated=deprecated,
                argparse=argparse_kwargs)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def shared(name: str, help: Optional[str] = None, **kwargs):
    """A `run` flag that is the shared option `name` of `harness.options.OPTIONS`, with its default."""
    _, argparse_kwargs, default_help = options.OPTIONS[name]
    default = argparse_kwargs.get("default", False if argparse_kwargs.get("action") == "store_true" else None)
    if argparse_kwargs.get("nargs") in ("+", "*") and default is None:
        default = []
    return flag(default, help=help or default_help, option=name, **kwargs)


def flag_name(f) -> str:
    return "--" + f.name.replace("_", "-")


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


class _OldSpelling(argparse.Action):
    """Stores the value as the flag's own spelling does; given by an old spelling, says so on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string != self.option_strings[0]:
            print(f"harness: {option_string} is deprecated; use {self.option_strings[0]}", file=sys.stderr)
        setattr(namespace, self.dest, values)


# ---------------------------------------------------------------- checks


def _at_least_one(name, value, opts):
    return f"{name} must be >= 1, got {value}" if value < 1 else None


def _positive(name, value, opts):
    return None if math.isfinite(value) and value > 0 else f"{name} must be a finite number > 0, got {value}"


def _seed_range(name, values, opts):
    bad = [s for s in values if not 0 <= s < 2**32]
    return f"{name} must lie in [0, 2**32), got {bad[0]}" if bad else None


def _needs_checkpoint(name, value, opts):
    from .names import shipped_tag  # a shipped tag brings its weights (harness/names.py)
    if opts.checkpoint or (opts.models and all(shipped_tag(m) for m in opts.models)):
        return None
    return f"{name} needs --checkpoint PATH"


def _budget(name, values, opts):
    if not opts.eval_only:
        return f"{name} evaluates a trained checkpoint: use it with --eval-only --checkpoint PATH"
    bad = [b for b in values if not (math.isfinite(b) and 0 < b <= 1)]
    return f"{name} is a fraction of the full form's FLOPs in (0, 1], got {bad[0]:g}" if bad else None


def _jsonl(name, value, opts):
    # "" would fall back to the committed store; any other name would become a store no
    # leaderboard reads (it reads <results-dir>/*.jsonl)
    return None if value.endswith(".jsonl") else \
        f"{name} is a JSON Lines store and must end in .jsonl, got {value!r}"


# ---------------------------------------------------------------- the flags


@dataclass
class RunOptions:
    models: List[str] = shared("models", selects=True, required=False,  # a --config's model.arch serves
                               help="zoo names or fnmatch patterns (quote them), or timm:NAME for timm's own "
                                    "models; with --config, the config's model.arch unless given")
    suite: Optional[str] = shared("suite", help="benchmark suite (see `python -m harness list`); with --config, "
                                                "the config's own `suite` unless given")
    config: Optional[str] = flag(metavar="PY", help="an mmengine config of your own instead of the suite's; its "
                                 "_base_ may be a suite config (harness/configs/<suite>.py); --models, --seeds and "
                                 "--cfg-options still apply")
    epochs: Optional[int] = flag(type=int, check=_at_least_one,
                                 help="train for this many epochs (epoch-based loop)")
    max_iters: Optional[int] = flag(type=int, check=_at_least_one,
                                    help="train for this many iterations (iteration-based loop)")
    batch_size: Optional[int] = shared("batch_size", help="training batch size", check=_at_least_one)
    lr: Optional[float] = flag(type=float, check=_positive, help="peak learning rate")
    seeds: List[int] = shared("seeds", check=_seed_range, selects=True)
    work_dir: Optional[str] = flag(help="checkpoints and logs (default: work_dirs/<suite>/<model>/seed<seed>; "
                                        "with several runs, <work-dir>/<model>/seed<seed>)")
    data_root: Optional[str] = shared("data_root")
    cfg_options: dict = shared("cfg_options")
    model_kwargs: dict = shared("model_kwargs")
    eval_only: bool = flag(False, action="store_true", check=_needs_checkpoint,
                           help="skip training; evaluate --checkpoint, or a shipped tag's weights (--models "
                                "dhvn_nano.mnist5k)")
    checkpoint: Optional[str] = shared("checkpoint", help="weights to evaluate (--eval-only) or to start training "
                                                          "from; a shipped tag in --models starts from its own")
    flops_budget: Optional[List[float]] = flag(
        type=float, nargs="+", metavar="F", check=_budget, deprecated=("--budget",),
        help="with --eval-only: evaluate a routed model once per FLOPs budget F in (0, 1], a fraction of its "
             "full form's FLOPs (zoo.routing.flops_budget, calibrated on the training split); one record per "
             "budget. --budget is its deprecated old spelling")
    resume: Optional[str] = flag(nargs="?", const="auto", metavar="CKPT",  # "auto": the latest in the work dir
                                 help="continue training from the latest checkpoint in the work dir (or from CKPT)")
    device: str = shared("device")
    amp: bool = flag(False, action="store_true", help="mixed precision (AmpOptimWrapper; bf16 on CPU)")
    compile: bool = shared("compile", help="torch.compile the training step (mmengine's cfg.compile)")
    results: Optional[str] = flag(check=_jsonl, replay=False,
                                  help="results store (default: leaderboard/results/<suite>.jsonl)")
    no_record: bool = flag(False, action="store_true", replay=False, help="do not append to the results store")
    launcher: str = flag("none", choices=["none", "pytorch", "slurm", "mpi"],
                         help="distributed launcher, e.g. under torchrun: --launcher pytorch")
    verbose: bool = flag(False, action="store_true",
                         help="mmengine's full console output (environment, config, hooks, every log key); "
                              "the log file in the work dir has it either way")

    @classmethod
    def add_arguments(cls, parser) -> None:
        """Every field as a flag of `parser`, in field order."""
        for f in fields(cls):
            meta = f.metadata
            if meta["option"]:
                options.add(parser, meta["option"], help=meta["help"], **meta["argparse"])
            else:
                kwargs = dict(meta["argparse"])
                if kwargs.get("action") != "store_true":
                    kwargs.setdefault("default", _default(f))
                if meta["deprecated"]:
                    kwargs["action"] = _OldSpelling
                parser.add_argument(flag_name(f), *meta["deprecated"], help=meta["help"], **kwargs)

    @classmethod
    def from_args(cls, args) -> "RunOptions":
        return cls(**{f.name: copy.deepcopy(getattr(args, f.name)) for f in fields(cls)})

    def check(self) -> None:
        """Each given value's check, in field order; the first problem is the one-line error."""
        for f in fields(self):
            value, check = getattr(self, f.name), f.metadata["check"]
            if check is not None and value is not None and value is not False:
                problem = check(flag_name(f), value, self)
                if problem:
                    raise HarnessError(problem)

    def argv(self) -> List[str]:
        """The flags that give these options again (`python -m harness run` + this): every flag
        away from its default, then the selecting ones (--models, --seeds)."""
        given, selecting = [], []
        for f in fields(self):
            meta, value = f.metadata, getattr(self, f.name)
            if meta["replay"] and (meta["selects"] or value != _default(f)):
                (selecting if meta["selects"] else given).extend(_words(flag_name(f), value, meta["argparse"]))
        return given + selecting


def _text(value) -> str:
    """A value as the parser reads it back: floats in their shortest exact form."""
    if isinstance(value, float):
        short = format(value, "g")
        return short if float(short) == value else repr(value)
    return str(value)


def _kv(key: str, value) -> str:
    """KEY=VALUE as mmengine's DictAction reads it back (lists a,b; tuples (a,b))."""
    if isinstance(value, tuple):
        return f"{key}=({','.join(map(str, value))})"
    if isinstance(value, list):
        return f"{key}=[{','.join(map(str, value))}]"
    return f"{key}={value}"


def _words(name: str, value, argparse_kwargs: dict) -> List[str]:
    if value is True or value == argparse_kwargs.get("const", MISSING):
        return [name]
    if isinstance(value, dict):
        return [name, *(_kv(k, v) for k, v in value.items())]
    if isinstance(value, (list, tuple)):
        return [name, *map(_text, value)]
    return [name, _text(value)]
