"""What lets a long job be stopped and started again without losing or mixing results: a
folder lock, step keys, a record of finished steps, and an all-or-nothing swap of result files.

Step keys. A finished step of the embedded job is kept only while its key holds. The key is
the SHA-256 of the step's own argv (its recipe: suite, model, seed, budgets, every option),
the key of the step it depends on (a budget curve, on its training run), and the code hash:
the SHA-256 of every *.py file under zoo/ and harness/ (suite configs included), read from the
working tree, so an uncommitted edit counts as much as a commit. Change the recipe or the code
and the step runs again; change neither and it is skipped.

The swap. New result files replace the committed ones in two phases:
1. each new file is copied beside its target (`.NAME.embedded-new`, same folder, so the same
   file system) and flushed to disk; then a journal (`.embedded-swap.json`) naming every pair is
   written, atomically;
2. each copy is renamed over its target (atomic per file), and the journal is removed.
A kill in phase 1 leaves the committed files untouched (the copies are cleared next time); a kill
in phase 2 leaves the journal, and `finish_swap` (run by the next `embedded` before anything
else) renames the remaining copies: every copy it names was complete before the journal was
written, so the swap is always finished, never half-undone.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence

from .errors import HarnessError

__all__ = ["hold_lock", "code_hash", "step_key", "Finished", "swap_in", "finish_swap", "JOURNAL"]

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOURNAL = ".embedded-swap.json"
_NEW = ".embedded-new"


def hold_lock(folder: str, refusal: str):
    """Take `folder`/.harness-run.lock without waiting (the lock `run` holds on its work dir);
    a held lock raises HarnessError(refusal + where the lock is). Returns the lock to release."""
    from filelock import FileLock, Timeout
    os.makedirs(folder, exist_ok=True)
    lock = FileLock(os.path.join(folder, ".harness-run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise HarnessError(f"{refusal} (its lock {os.path.abspath(lock.lock_file)} is held)") from None
    return lock


def code_hash(root: str = PACKAGE_ROOT, packages: Sequence[str] = ("zoo", "harness")) -> str:
    h = hashlib.sha256()
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                h.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def step_key(argv: Sequence[str], code: str, after: Optional[str] = None) -> str:
    return hashlib.sha256(json.dumps([list(argv), code, after]).encode()).hexdigest()


class Finished:
    """The finished steps of a job (`<folder>/finished.json`: step name -> key and seconds),
    rewritten atomically after each step."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, "finished.json")
        try:
            with open(self.path) as f:
                self.steps: Dict[str, dict] = dict(json.load(f))
        except (OSError, ValueError, TypeError):
            self.steps = {}

    def holds(self, name: str, key: str) -> bool:
        return (self.steps.get(name) or {}).get("key") == key

    def add(self, name: str, key: str, seconds: float) -> None:
        from leaderboard.atomic import atomic_write
        self.steps[name] = dict(key=key, seconds=round(seconds, 1))
        atomic_write(self.path, json.dumps(self.steps, indent=1, sort_keys=True) + "\n")


def _fsync_copy(src: str, dst: str) -> None:
    with open(src, "rb") as f, open(dst, "wb") as g:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            g.write(block)
        g.flush()
        os.fsync(g.fileno())


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def finish_swap(results_dir: str) -> List[str]:
    """Finish a swap a kill interrupted (see the module docstring); returns the files it put in
    place. Copies left by a kill before the journal was written are removed."""
    journal = os.path.join(results_dir, JOURNAL)
    done = []
    if os.path.exists(journal):
        with open(journal) as f:
            pairs = json.load(f)
        for tmp, dst in pairs:
            if os.path.exists(tmp):
                os.replace(tmp, dst)
                done.append(dst)
        _sync_folder(results_dir)
        os.unlink(journal)
    if os.path.isdir(results_dir):
        for name in os.listdir(results_dir):
            # copies, and the temporary of a journal a kill stopped before it landed
            if name.startswith(".") and name.endswith(_NEW) or name.startswith(f".{JOURNAL}."):
                os.unlink(os.path.join(results_dir, name))
    return done


def swap_in(files: Sequence[str], results_dir: str) -> List[str]:
    """Replace results_dir/<basename> with each of `files`, all or nothing (module docstring)."""
    from leaderboard.atomic import atomic_write
    os.makedirs(results_dir, exist_ok=True)
    finish_swap(results_dir)
    pairs = []
    for src in files:
        name = os.path.basename(src)
        tmp = os.path.join(results_dir, f".{name}{_NEW}")
        _fsync_copy(src, tmp)
        pairs.append((tmp, os.path.join(results_dir, name)))
    atomic_write(os.path.join(results_dir, JOURNAL), json.dumps(pairs))
    for tmp, dst in pairs:
        os.replace(tmp, dst)
    _sync_folder(results_dir)
    os.unlink(os.path.join(results_dir, JOURNAL))
    return [dst for _, dst in pairs]
