"""The distribution as a user installs it: the `routing-zoo` console script, --version, py.typed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata, resources

import pytest

import harness
import zoo


def test_one_version_everywhere(capsys):
    from harness.cli import main
    assert harness.__version__ == zoo.__version__ == metadata.version("routing-zoo")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"routing-zoo {zoo.__version__}"


def test_console_script_is_the_harness():
    entry = [e for e in metadata.entry_points(group="console_scripts") if e.name == "routing-zoo"]
    assert [e.value for e in entry] == ["harness.cli:main"]
    exe = shutil.which("routing-zoo")
    if exe is None:  # installed, but this environment's scripts folder is not on PATH
        exe = os.path.join(os.path.dirname(sys.executable), "routing-zoo")
    proc = subprocess.run([exe, "list", "dhvn_nano"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "dhvn_nano" in proc.stdout
    proc = subprocess.run([exe, "run", "--models", "nope", "--suite", "mnist5k"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("harness: error: no model matches 'nope'")
    assert "usage: routing-zoo" in subprocess.run([exe, "--help"], capture_output=True, text=True).stdout


def test_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.run(f"{sys.executable} -m harness list | head -1", shell=True, capture_output=True, text=True,
                          timeout=300)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
    assert proc.stdout.startswith("model")


@pytest.mark.parametrize("package", ["zoo", "harness", "leaderboard"])
def test_typed_marker_ships(package):
    assert resources.files(package).joinpath("py.typed").is_file()
