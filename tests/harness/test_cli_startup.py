"""The CLI answers --help, --version and argument errors without importing torch, timm, mmengine
or cv2 (docs/DESIGN.md, "CLI startup"): each is a fresh `python -X importtime -m harness ...`
process, whose import log names every module it imported. No timing is asserted here; the
figures are in the closing note. A real verb still registers what its configs name."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("torch", "timm", "mmengine", "cv2")
VERBS = ("list", "run", "leaderboard", "embedded", "bench", "flops", "visualize", "compare", "export")


def _imports(*args: str, script=None):
    """(exit code, stdout, stderr without the import log, top-level modules imported)."""
    cmd = [sys.executable, "-X", "importtime"] + (["-c", script] if script else ["-m", "harness"]) + list(args)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    log = [line for line in p.stderr.splitlines() if line.startswith("import time:")]
    err = "\n".join(line for line in p.stderr.splitlines() if not line.startswith("import time:"))
    tops = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in log}
    return p.returncode, p.stdout, err, tops


@pytest.mark.parametrize("args", [("--help",), ("--version",), *[(verb, "--help") for verb in VERBS],
                                  ("run", "--max-iters", "x"), ("bench", "--bogus"), ("nonsense",), ()],
                         ids=lambda a: " ".join(a) or "no-verb")
def test_help_version_and_argument_errors_import_no_heavy_module(args):
    code, out, err, tops = _imports(*args)
    assert code == (0 if args[-1:] in [("--help",), ("--version",)] else 2), err
    assert not tops & set(HEAVY), f"{' '.join(args)} imported {sorted(tops & set(HEAVY))}"
    if args == ("--version",):
        import zoo
        assert out.strip() == f"routing-zoo {zoo.__version__}"
    elif code == 2:
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("python -m harness")


def test_the_console_script_starts_light_too():
    # the routing-zoo entry point is harness.cli:main, under a script named routing-zoo
    code, out, err, tops = _imports(script="import sys; sys.argv[0] = 'routing-zoo'; "
                                           "from harness.cli import main; main(['--help'])")
    assert code == 0 and out.startswith("usage: routing-zoo"), err
    assert not tops & set(HEAVY)


def test_a_verb_still_finds_the_registered_datasets():
    # flops builds the suite's test set from its config (type='Mnist5k'): the CLI registered it
    code, out, err, tops = _imports("flops", "--models", "dhvn_nano_ccc", "--suite", "mnist5k", "--limit", "4",
                                    "--device", "cpu", "--json")
    assert code == 0, err
    assert '"dhvn_nano_ccc"' in out and {"torch", "mmengine"} <= tops


def test_importing_the_package_still_registers():
    code, out, err, _ = _imports(script="import harness; from mmengine.registry import HOOKS, DATASETS; "
                                        "print(HOOKS.get('NaNGuardHook').__name__, DATASETS.get('Mnist5k').__name__, "
                                        "harness.__version__)")
    assert code == 0, err
    import zoo
    assert out.split() == ["NaNGuardHook", "Mnist5k", zoo.__version__]
