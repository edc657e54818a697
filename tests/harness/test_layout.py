"""The harness's rooms (docs/DESIGN.md, "Layout"): imports run one way, from the verbs down to the
core, the two wings (engine, measure) stand apart, no module imports itself back in a circle, and
the module paths from before the wings still import the same modules."""
from __future__ import annotations

import ast
import contextlib
import importlib
import os
import subprocess
import sys
import warnings

import pytest

import harness

HARNESS = os.path.dirname(os.path.abspath(harness.__file__))

# each room and the floor it stands on; a module may import its own floor and the floors below
FLOORS = {
    "core": ("errors", "options", "names", "records", "tasks", "suites", "job_state", "progress", "runtime",
             "viz"),
    "engine": ("engine",),
    "measure": ("measure",),
    "runs": ("run", "run_options", "loading", "readme_job"),
    "commands": ("commands",),
    "entry": ("cli", "__main__", "__init__"),
}
LEVEL = {"core": 0, "engine": 1, "measure": 1, "runs": 2, "commands": 3, "entry": 4}
ROOM_FLOOR = {room: floor for floor, rooms in FLOORS.items() for room in rooms}


def _modules(root: str = HARNESS):
    """harness-relative module name ("engine.hooks", "cli", "" for the package) -> path; configs are
    left out (mmengine configs, not modules)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("configs", "__pycache__")]
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), root)[:-3].replace(os.sep, ".")
                if rel == "__init__" or rel.endswith(".__init__"):  # a package: its own name ("" for harness)
                    rel = rel[: -len("__init__")].rstrip(".")
                out[rel] = os.path.join(folder, name)
    return out


MODULES = _modules()


def _imports(module: str, path: str, modules=MODULES):
    """The harness modules `module` imports, anywhere in it (imports inside functions too)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "harness" or node.module.startswith("harness.")):
                target = node.module[len("harness."):] if node.module != "harness" else ""
            else:
                continue
            for alias in node.names:  # `from . import x` may name a module
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("harness."):] for a in node.names if a.name.startswith("harness.")}
    return {m for m in found if m in modules and m != module}


IMPORTS = {m: _imports(m, p) for m, p in MODULES.items()}


def _room(module: str) -> str:
    return module.split(".")[0] or "__init__"


def _floor(module: str) -> str:
    return ROOM_FLOOR[_room(module)]


def test_every_module_stands_on_a_floor():
    assert sorted({_room(m) for m in MODULES} - set(ROOM_FLOOR)) == []


def test_imports_run_down_and_the_wings_stand_apart():
    up = [f"{m} -> {t}" for m, targets in IMPORTS.items() for t in targets
          if LEVEL[_floor(t)] > LEVEL[_floor(m)]
          or (LEVEL[_floor(t)] == LEVEL[_floor(m)] == 1 and _floor(t) != _floor(m))]
    assert up == []


def test_no_import_circle():
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for t in IMPORTS[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return seen
    assert [m for m in MODULES if m in reach(m)] == []


@pytest.mark.parametrize("old, new", sorted(harness.MOVED.items()))
def test_the_old_module_paths_are_the_moved_modules(old, new):
    module = importlib.import_module(f"harness.{new}")
    with pytest.warns(DeprecationWarning, match=f"harness.{old} moved to harness.{new}") if \
            f"harness.{old}" not in sys.modules else contextlib.nullcontext():
        assert importlib.import_module(f"harness.{old}") is module
    assert getattr(harness, old) is module and module.__spec__.name == f"harness.{new}"


OLD_PATH_PROBE = """
import sys, warnings
import harness
print(sorted(m for m in sys.modules if m.startswith(("harness.measure", "harness.commands"))))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from harness.benchkit import LoadGate
    from harness import flops_cmd
print(LoadGate.__module__, flops_cmd.__name__)
print([str(w.message) for w in caught if w.category is DeprecationWarning])
"""


def test_old_paths_are_imported_only_when_asked_for_and_warn():
    out = subprocess.run([sys.executable, "-c", OLD_PATH_PROBE], capture_output=True, text=True, check=True)
    nothing, names, warned = out.stdout.strip().splitlines()
    assert nothing == "[]"
    assert names == "harness.measure.benchkit harness.commands.flops"
    assert warned == str(["harness.benchkit moved to harness.measure.benchkit; the old path goes in the next release",
                          "harness.flops_cmd moved to harness.commands.flops; the old path goes in the next release"])


def test_a_config_may_import_an_old_path():
    """A config of one's own that names `custom_imports=dict(imports=['harness.hooks'])`."""
    from mmengine.utils import import_modules_from_strings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        hooks, = import_modules_from_strings(["harness.hooks"])
    from harness.engine.hooks import NaNGuardHook
    assert hooks.NaNGuardHook is NaNGuardHook


if __name__ == "__main__":
    # python tests/harness/test_layout.py [HARNESS_DIR]: its rooms (top-level modules and folders,
    # configs/ among them) and the import arrows between two rooms
    root = sys.argv[1] if len(sys.argv) > 1 else HARNESS
    modules = _modules(root)
    arrows = {(_room(m), _room(t)) for m, p in modules.items() for t in _imports(m, p, modules) if _room(m) != _room(t)}
    rooms = {_room(m) for m in modules} | {"configs"}
    print(f"{len(rooms)} rooms, {len(arrows)} arrows between rooms")
