"""Subcommands beyond the core four, each in its own module.

A module named here defines ``add_parser(subparsers)``, which adds its subparser and sets
``func=fn(args, argv) -> int`` on it. Keeping them apart keeps ``cli.py`` small and lets a
command import its heavy dependencies (matplotlib, the FLOP counter) only when it runs.
"""
from __future__ import annotations

import importlib

__all__ = ["EXTENSION_MODULES", "add_extension_parsers"]

EXTENSION_MODULES = (
    "harness.bench",
    "harness.flops_cmd",
    "harness.visualize", "harness.compare",
)


def add_extension_parsers(subparsers) -> list:
    names = []
    for module_name in EXTENSION_MODULES:
        module = importlib.import_module(module_name)
        names.append(module.add_parser(subparsers))
    return names
