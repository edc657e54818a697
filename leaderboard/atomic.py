"""Writing a user-named output safely: the one place that decides what may be replaced.

Every file the harness and the leaderboard write (pages, figures and their JSON, weights,
benchmark JSON and CSV) goes through `atomic_path` or `atomic_write`: a temporary file beside
the target, then a rename, so a kill leaves either the old file or the new one, never a cut one.

What an existing path may be:
- a regular file: replaced whole;
- a symlink: resolved, and its target is written (the link itself stays); a link whose target
  is missing, or resolves to something other than a regular file, is refused;
- anything else (a folder where a file is expected, a fifo, a device node such as /dev/null, a
  socket): refused, since a rename would replace it with a regular file.
`UnsafeOutput` says why, in words that follow the path ("... /dev/null is a character device").

A regular file is replaced only when it is one the command itself writes (`refuse_foreign`, with
the command's own test on the file's first bytes): `export --out README.md` must not turn the
README into weights. An empty file holds nothing to lose and may be replaced.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import Callable, Iterator, Union

__all__ = ["UnsafeOutput", "resolve_output", "refuse_foreign", "file_head", "atomic_path", "atomic_write", "cut_files"]

PathLike = Union[str, "os.PathLike[str]"]


class UnsafeOutput(ValueError):
    """An output path that must not be written (one line: the path and what it is)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "something else"


def resolve_output(path: PathLike, folder: bool = False) -> str:
    """The path to write for `path`: symlinks resolved. Refuses (UnsafeOutput) an existing path
    that is not a regular file (with folder=True: not a folder), and a dangling symlink."""
    path = os.fspath(path)
    if not path:
        raise UnsafeOutput("an output path is empty")
    if not folder and path.endswith(("/", os.sep)):
        raise UnsafeOutput(f"{path} ends in a slash: that names a folder, not a file to write")
    _check_components(path)
    real = os.path.realpath(path)
    linked = os.path.islink(path) or real != os.path.abspath(path)
    try:
        mode = os.stat(real).st_mode
    except (FileNotFoundError, NotADirectoryError):  # (a missing path, or one below a file)
        if os.path.islink(path):
            raise UnsafeOutput(f"{path} is a symlink to {real}, which does not exist") from None
        return real
    ok = stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)
    if not ok:
        via = f" (through a symlink, {real})" if linked else ""
        raise UnsafeOutput(f"{path} is {_kind(mode)}{via}, not a {'folder' if folder else 'regular file'} to write")
    return real


def file_head(path: PathLike, size: int = 4096) -> bytes:
    """The first `size` bytes of a file: enough for an owner test, bounded whatever the file."""
    with open(path, "rb") as f:
        return f.read(size)


def refuse_foreign(path: PathLike, owns: Callable[[str], bool], ours: str) -> None:
    """Raises UnsafeOutput when `path` (symlinks resolved) is a non-empty regular file that
    `owns(real_path)` does not recognise as its command's own output (`ours` names what that is,
    e.g. "a weights file written by export"). A missing or empty file passes; so does anything
    `resolve_output` refuses on its own, which its caller checks."""
    real = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(real)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return
    try:
        mine = owns(real)
    except (OSError, ValueError):  # unreadable, or not what the test parses: not ours
        mine = False
    if not mine:
        raise UnsafeOutput(f"{path} exists and is not {ours}, so it is left as it was "
                           f"(remove it or choose another path)")


def _check_components(path: str) -> None:
    """What the OS would refuse only at the rename, refused up front: a name longer than the
    file system allows, and `missing/..`, which realpath would quietly fold away."""
    parts = path.split(os.sep)
    for i, part in enumerate(parts):
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise UnsafeOutput(f"{path} has a name of {len(part)} characters; a file name may have at most 255")
        prefix = os.sep.join(parts[:i]) or ("/" if path.startswith(os.sep) else ".")
        if part == ".." and not os.path.isdir(prefix):
            raise UnsafeOutput(f"{path} goes through {prefix}/.., and {prefix} is not a folder")


@contextlib.contextmanager
def atomic_path(path: PathLike, mode: int = 0o644) -> Iterator[str]:
    """Yields a temporary path beside `path` (same folder, same suffix, so writers that infer a
    format from it still do); when the block ends without an error, the file is flushed to disk
    and renamed over `path` (resolved by `resolve_output`); on an error it is removed."""
    target = resolve_output(path)
    folder, name = os.path.split(target)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=f".tmp{os.path.splitext(name)[1]}")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the rename must not land before the bytes do
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; an output is read by every user, as before
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: PathLike, data: Union[str, bytes]) -> str:
    """Write `data` (str as UTF-8, "\\n" line endings kept) to `path` atomically; returns the path written."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return resolve_output(path)


_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82"


def cut_files(folder: PathLike) -> list:
    """The PNG and JSON files in `folder` that are not whole: a PNG without its signature or its
    closing IEND chunk, a JSON file that does not parse (0 bytes included). A writer killed
    before `atomic_path` existed, or a copy cut short, leaves such files."""
    import json
    cut = []
    folder = os.fspath(folder)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        if name.endswith(".png"):
            with open(path, "rb") as f:
                head = f.read(8)
                f.seek(max(os.path.getsize(path) - len(_PNG_END), 0))
                whole = head == _PNG_START and f.read() == _PNG_END
        elif name.endswith(".json"):
            try:
                with open(path, "rb") as f:
                    json.loads(f.read().decode("utf-8"))
                whole = True
            except (ValueError, RecursionError):
                whole = False
        else:
            continue
        if not whole:
            cut.append(path)
    return cut
