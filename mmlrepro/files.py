"""Writing files safely: atomic replacement, and output locations checked before any compute.

Every file the package writes (store records, per-user arrays, checkpoints, the report) goes
through :func:`atomic_write`: the content is written to a temporary file in the same folder and
renamed into place, so a reader never sees half a file and a crash leaves the old file whole.
:func:`check_writable` is called on every output location before a run loads data or takes a
step, so a run never trains for an hour and then fails to save (issue 15).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class OutputError(ValueError):
    """An output location (results store, checkpoints, report, figures) cannot be written."""


def stderr(line: str) -> None:
    """The default ``log`` of the store and the trainer: one line to standard error."""
    print(line, file=sys.stderr)


def set_aside_stamp() -> str:
    """The UTC time in the name of a file set aside (store files, checkpoints): ``20261206T073000``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")


def _temporary_beside(path: Path) -> str:
    """A new empty temporary file in ``path``'s folder (created), named after ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def exclusive_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """As :func:`atomic_write`, but the file must not exist: the complete temporary file is
    hard-linked to ``path``, which fails (``FileExistsError``, nothing written) when another
    writer got there first, so no file is ever replaced."""
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        write(tmp)
        os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _json_writer(data: Any) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
    return write


def atomic_write_json(data: Any, path: str | os.PathLike, exclusive: bool = False) -> Path:
    """``data`` as indented, key-sorted JSON, written atomically (``exclusive``: by
    :func:`exclusive_write`, never over an existing file)."""
    return (exclusive_write if exclusive else atomic_write)(path, _json_writer(data))


def unique_path(folder: str | os.PathLike, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or ``folder/stem.2.suffix``, ``.3``, ... : the first name not taken
    (a file is moved there at once by the caller, which holds the store's lock)."""
    folder = Path(folder)
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}.{n}{suffix}"
    return path


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block: every writer
    of the store takes it, so no two check-then-write sequences interleave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def describe_error(err: BaseException) -> str:
    """``err`` in one line: ``PATH: reason`` for an OSError with a file name, else its message
    (or its class name when it has none)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        target = f" -> {err.filename2}" if err.filename2 is not None else ""
        return f"{err.filename}{target}: {err.strerror}"
    return " ".join(str(err).split()) or err.__class__.__name__


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Raise :class:`OutputError` unless ``folder`` is a writable folder or could be created as one.

    Nothing is created: the folder, or its nearest existing parent, must be a folder in which a
    file can be created (proved with a temporary file, deleted at once). ``what`` names the
    location in the message (e.g. ``"results store"``).
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor) or str(p) == ".")
    if not existing.is_dir():
        raise OutputError(f"{what} {folder}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{what} {folder} is not writable ({existing}: {err.strerror or err})") from None
    return folder


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be written as a file (not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file")
    check_writable(path.parent if str(path.parent) else Path("."), f"{what}'s folder")
    return path
