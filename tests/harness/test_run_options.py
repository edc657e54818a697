"""The `run` flags are declared once, as the fields of `RunOptions`: the parser, the checks and the
command that reproduces a run are read off them, so a new flag is one field."""
from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass, fields
from typing import Optional

import pytest

from harness.cli import build_parser
from harness.errors import HarnessError
from harness.run_options import RunOptions, flag, flag_name


def _run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _flags(parser: argparse.ArgumentParser) -> dict:
    """dest -> the option action, help left out."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def _away_from_default(action: argparse.Action) -> list:
    """argv that gives the flag a value other than its default."""
    name = action.option_strings[0]
    if isinstance(action, argparse._StoreTrueAction):
        return [name]
    if action.choices:
        return [name, [c for c in action.choices if c != action.default][-1]]
    if action.const is not None:  # --resume [CKPT]: a path, then the bare flag in its own case
        return [name, "some/iter_4.pth"]
    if action.metavar == "KEY=VALUE":
        return [name, "a=1", "b=[2,3]"]
    value = {int: ["3", "4"], float: ["0.25", "0.5"]}.get(action.type, ["a", "b"])
    return [name, *(value if action.nargs == "+" else value[:1])]


def test_every_run_flag_is_a_field_and_every_field_a_flag():
    actions = _flags(_run_parser(build_parser()))
    assert list(actions) == [f.name for f in fields(RunOptions)]  # same names, same order (the --help order)
    for f in fields(RunOptions):
        assert actions[f.name].option_strings == [flag_name(f), *f.metadata["deprecated"]]
        assert actions[f.name].help == f.metadata["help"]


def test_the_reproducing_command_gives_every_replayed_flag_back():
    parser = _run_parser(build_parser())
    argv = [word for action in _flags(parser).values() for word in _away_from_default(action)]
    opts = RunOptions.from_args(parser.parse_args(argv))
    for f in fields(RunOptions):  # every flag was given a value away from its default
        assert getattr(opts, f.name) != getattr(RunOptions(), f.name), f.name
    command = opts.argv()
    again = RunOptions.from_args(parser.parse_args(command))
    for f in fields(RunOptions):
        if f.metadata["replay"]:
            assert getattr(again, f.name) == getattr(opts, f.name), f.name
            assert flag_name(f) in command, f.name
        else:  # the results store aside: a replay records where it likes
            assert flag_name(f) not in command, f.name
    assert command[command.index("--models"):] == ["--models", "a", "b", "--seeds", "3", "4"]  # the runs, last
    # the bare --resume (the latest checkpoint in the work dir) replays bare
    bare = RunOptions.from_args(parser.parse_args(["--models", "m", "--resume"]))
    assert bare.resume == "auto" and bare.argv() == ["--resume", "--models", "m", "--seeds", "0"]


def test_defaults_replay_as_nothing_but_the_run():
    assert RunOptions(models=["dhvn_nano"], seeds=[1]).argv() == ["--models", "dhvn_nano", "--seeds", "1"]
    # floats in their shortest exact form, as the parser reads them back
    assert RunOptions(lr=3e-4, flops_budget=[0.3, 1.0]).argv()[:5] == ["--lr", "0.0003", "--flops-budget", "0.3", "1"]


@pytest.mark.parametrize("spelling", ["--flops-budget", "--budget"])
def test_flops_budget_and_its_deprecated_spelling_are_one_flag(spelling, capsys):
    """--budget, the old name of --flops-budget, still parses to the same field, with a one-line
    note on stderr; the help says so, and the reproducing command uses the new name."""
    parser = _run_parser(build_parser())
    opts = RunOptions.from_args(parser.parse_args(["--models", "m", spelling, "0.5", "1"]))
    assert opts.flops_budget == [0.5, 1.0] and opts.argv()[:3] == ["--flops-budget", "0.5", "1"]
    note = capsys.readouterr().err.strip()
    assert note == ("" if spelling == "--flops-budget" else "harness: --budget is deprecated; use --flops-budget")
    assert "--budget is its deprecated old spelling" in _flags(parser)["flops_budget"].help


def test_a_new_flag_is_one_field():
    """A field added to the declaration (here in a subclass) is a flag of the parser, is checked,
    and is carried by the reproducing command, with no other edit."""

    @dataclass
    class WithWarmup(RunOptions):
        warmup_iters: Optional[int] = flag(
            type=int, help="warm-up iterations",
            check=lambda name, value, opts: None if value >= 1 else f"{name} must be >= 1")

    parser = argparse.ArgumentParser()
    WithWarmup.add_arguments(parser)
    opts = WithWarmup.from_args(parser.parse_args(["--models", "m", "--warmup-iters", "5"]))
    opts.check()
    assert opts.argv() == ["--warmup-iters", "5", "--models", "m", "--seeds", "0"]
    with pytest.raises(HarnessError, match="--warmup-iters must be >= 1"):
        WithWarmup.from_args(parser.parse_args(["--models", "m", "--warmup-iters", "0"])).check()


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--max-iters", "-1"], "--max-iters must be >= 1, got -1"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--seeds", "0", "-1"], "--seeds must lie in [0, 2**32), got -1"),
    (["--eval-only"], "--eval-only needs --checkpoint PATH"),
    (["--flops-budget", "0.5"], "--flops-budget evaluates a trained checkpoint: use it with --eval-only --checkpoint PATH"),
    (["--eval-only", "--checkpoint", "c.pth", "--flops-budget", "1.5"],
     "--flops-budget is a fraction of the full form's FLOPs in (0, 1], got 1.5"),
    (["--results", "r.json"], "--results is a JSON Lines store and must end in .jsonl, got 'r.json'"),
])
def test_each_check_is_the_fields_own(argv, message):
    parser = _run_parser(build_parser())
    opts = RunOptions.from_args(parser.parse_args(["--models", "m", *argv]))
    with pytest.raises(HarnessError) as e:
        opts.check()
    assert str(e.value) == message


def test_cmd_run_is_short():
    from harness.commands.run import cmd_run
    assert len(inspect.getsource(cmd_run).splitlines()) < 40
