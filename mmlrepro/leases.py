"""Run leases: reservations in the store, so that no run is trained twice (issue 19).

A run being trained is leased by the process that writes its result to the store (the
``reproduce`` process, or the driver of a pool or of Ray tasks): ``<store>/leases/<key>.json``
holds the host, the pid, a token and a heartbeat (Unix time), refreshed every
:data:`HEARTBEAT_S` seconds while the run trains. Another process skips a leased run. A lease
is stale when its pid is gone on this host, or when its heartbeat is older than
:data:`STALE_S`; a stale lease is taken over, and the run's checkpoint (one per run key, in the
checkpoint folder) resumes where the dead process left it. Every read-decide-write of a lease
holds an exclusive ``flock`` on ``leases/.lock``, so two processes never take the same lease.

Older code kept these reservations in ``<store>/claims/`` (:data:`LEGACY_FOLDER`): a live one
found there, written by a process still running that code, is honoured as held; a stale one is
taken over (and removed) like a stale lease.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlrepro.files import atomic_write_json

HEARTBEAT_S = 30.0   # a held lease is refreshed this often
STALE_S = 300.0      # a lease whose heartbeat is older than this is taken over
FOLDER = "leases"            # <store>/leases/<key>.json
LEGACY_FOLDER = "claims"     # where older code keeps them: still honoured


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


def stale_reason(lease: dict[str, Any], now: float, stale_s: float = STALE_S) -> str | None:
    """Why ``lease`` may be taken over (its pid gone on this host, or no recent heartbeat), or None."""
    age = now - float(lease.get("heartbeat", 0.0))
    if age > stale_s:
        return f"no heartbeat for {age:.0f} s"
    if lease.get("host") == platform.node() and not _pid_alive(int(lease.get("pid", -1))):
        return f"pid {lease.get('pid')} is gone"
    return None


def describe_lease(lease: dict[str, Any], now: float) -> str:
    """Whose ``lease`` is: "host pid N, heartbeat S s ago"."""
    return f"{lease.get('host')} pid {lease.get('pid')}, heartbeat {now - float(lease.get('heartbeat', 0)):.0f} s ago"


def _read(path: Path) -> dict[str, Any] | None:
    """The lease in ``path``; None when there is none, ``{}`` when unreadable (no heartbeat: stale)."""
    try:
        lease = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return lease if isinstance(lease, dict) else {}


@contextmanager
def _flocked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder/.lock``."""
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Leases:
    """The leases of one store held by this process; :meth:`acquire`, :meth:`release`,
    :meth:`beat`, or :meth:`heartbeat` as a context that beats in a background thread."""

    root: Path
    stale_s: float = STALE_S
    held: dict[str, str] = field(default_factory=dict)   # key -> token
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def folder(self) -> Path:
        return self.root / FOLDER

    @property
    def legacy_folder(self) -> Path:
        return self.root / LEGACY_FOLDER

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's mutex and the folder's ``flock``, and the legacy folder's too where it
        exists (the lock older code takes), so neither reads a reservation the other is writing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._mutex, _flocked(self.folder):
            if self.legacy_folder.is_dir():
                with _flocked(self.legacy_folder):
                    yield
            else:
                yield

    def _read(self, key: str) -> dict[str, Any] | None:
        return _read(self.path(key))

    def _write(self, key: str, token: str) -> None:
        atomic_write_json({"key": key, "host": platform.node(), "pid": os.getpid(), "token": token,
                           "heartbeat": time.time()}, self.path(key))

    def acquire(self, key: str) -> tuple[bool, str]:
        """Lease run ``key``: ``(True, "")`` when this process now holds it (a stale lease taken
        over: ``(True, why it was stale)``), ``(False, whose it is)`` when another holds it, here
        or in the legacy folder."""
        with self._locked():
            now, notes = time.time(), []
            legacy = self.legacy_folder / f"{key}.json"
            for path in (self.path(key), legacy):
                lease = _read(path)
                if lease is None:
                    continue
                why = stale_reason(lease, now, self.stale_s)
                if why is None:
                    return False, describe_lease(lease, now)
                notes.append(f"took over the stale lease of {lease.get('host')} pid {lease.get('pid')} ({why})")
            legacy.unlink(missing_ok=True)
            token = secrets.token_hex(8)
            self._write(key, token)
            self.held[key] = token
            return True, "; ".join(notes)

    def release(self, key: str) -> None:
        """Give up the lease of ``key`` (left alone if another process took it over)."""
        with self._locked():
            token = self.held.pop(key, None)
            lease = self._read(key)
            if token is not None and lease is not None and lease.get("token") == token:
                self.path(key).unlink(missing_ok=True)

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)

    def beat(self) -> list[str]:
        """Refresh the heartbeat of every held lease; returns the keys lost to a take-over."""
        lost = []
        with self._locked():
            for key, token in list(self.held.items()):
                lease = self._read(key)
                if lease is None or lease.get("token") != token:
                    lost.append(key)
                    del self.held[key]
                else:
                    self._write(key, token)
        return lost

    @contextmanager
    def heartbeat(self, every_s: float = HEARTBEAT_S) -> Iterator[Leases]:
        """Beat every ``every_s`` seconds in a daemon thread; release every lease on exit."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                self.beat()

        thread = threading.Thread(target=loop, name="mmlrepro-leases-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.release_all()
