"""Markdown sections that follow the suite tables (Performance, figures).

A provider is ``fn(results_dir, write) -> Optional[str]``. With ``write=True`` it may also
produce files the section links (e.g. figures); with ``write=False`` (``--check``) it must
only return the markdown it would produce, so the check has no side effects. Providers
are listed by module path and imported lazily, so `leaderboard` stays light to import.
"""
from __future__ import annotations

import importlib
from typing import List

__all__ = ["SECTION_PROVIDERS", "extra_sections"]

# "module:function", in page order
SECTION_PROVIDERS = (
    "leaderboard.performance:performance_section",
    "leaderboard.figures:figures_section",
)


def extra_sections(results_dir, write: bool) -> List[str]:
    out = []
    for ref in SECTION_PROVIDERS:
        module_name, fn_name = ref.split(":")
        section = getattr(importlib.import_module(module_name), fn_name)(results_dir, write)
        if section:
            out.append(section)
    return out
