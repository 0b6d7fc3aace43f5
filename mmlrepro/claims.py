"""Claims in the store, so that no run is trained twice (issue 19).

A run being trained is claimed by the process that writes its result to the store (the
``reproduce`` process, or the driver of a pool or of Ray tasks): ``<store>/claims/<key>.json``
holds the host, the pid, a token and a heartbeat (Unix time), refreshed every
:data:`HEARTBEAT_S` seconds while the run trains. Another process skips a claimed run. A claim
is stale when its pid is gone on this host, or when its heartbeat is older than
:data:`STALE_S`; a stale claim is taken over, and the run's checkpoint (one per run key, in the
checkpoint folder) resumes where the dead process left it. Every read-decide-write of a claim
holds an exclusive ``flock`` on ``claims/.lock``, so two processes never take the same claim.
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

HEARTBEAT_S = 30.0   # a held claim is refreshed this often
STALE_S = 300.0      # a claim whose heartbeat is older than this is taken over


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


def stale_reason(claim: dict[str, Any], now: float, stale_s: float = STALE_S) -> str | None:
    """Why ``claim`` may be taken over (its pid gone on this host, or no recent heartbeat), or None."""
    age = now - float(claim.get("heartbeat", 0.0))
    if age > stale_s:
        return f"no heartbeat for {age:.0f} s"
    if claim.get("host") == platform.node() and not _pid_alive(int(claim.get("pid", -1))):
        return f"pid {claim.get('pid')} is gone"
    return None


def describe_claim(claim: dict[str, Any], now: float) -> str:
    return f"{claim.get('host')} pid {claim.get('pid')}, heartbeat {now - float(claim.get('heartbeat', 0)):.0f} s ago"


@dataclass
class Claims:
    """The claims of one store held by this process; :meth:`acquire`, :meth:`release`,
    :meth:`beat`, or :meth:`heartbeat` as a context that beats in a background thread."""

    root: Path
    stale_s: float = STALE_S
    held: dict[str, str] = field(default_factory=dict)   # key -> token
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def folder(self) -> Path:
        return self.root / "claims"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._mutex, open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            claim = json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}   # unreadable: no heartbeat, so stale
        return claim if isinstance(claim, dict) else {}

    def _write(self, key: str, token: str) -> None:
        atomic_write_json({"key": key, "host": platform.node(), "pid": os.getpid(), "token": token,
                           "heartbeat": time.time()}, self.path(key))

    def acquire(self, key: str) -> tuple[bool, str]:
        """Claim run ``key``: ``(True, "")`` when this process now holds it (a stale claim taken
        over: ``(True, why it was stale)``), ``(False, whose it is)`` when another holds it."""
        with self._locked():
            now, claim, taken = time.time(), self._read(key), ""
            if claim is not None:
                why = stale_reason(claim, now, self.stale_s)
                if why is None:
                    return False, describe_claim(claim, now)
                taken = f"took over the stale claim of {claim.get('host')} pid {claim.get('pid')} ({why})"
            token = secrets.token_hex(8)
            self._write(key, token)
            self.held[key] = token
            return True, taken

    def release(self, key: str) -> None:
        """Give up the claim of ``key`` (left alone if another process took it over)."""
        with self._locked():
            token = self.held.pop(key, None)
            claim = self._read(key)
            if token is not None and claim is not None and claim.get("token") == token:
                self.path(key).unlink(missing_ok=True)

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)

    def beat(self) -> list[str]:
        """Refresh the heartbeat of every held claim; returns the keys lost to a take-over."""
        lost = []
        with self._locked():
            for key, token in list(self.held.items()):
                claim = self._read(key)
                if claim is None or claim.get("token") != token:
                    lost.append(key)
                    del self.held[key]
                else:
                    self._write(key, token)
        return lost

    @contextmanager
    def heartbeat(self, every_s: float = HEARTBEAT_S) -> Iterator[Claims]:
        """Beat every ``every_s`` seconds in a daemon thread; release every claim on exit."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                self.beat()

        thread = threading.Thread(target=loop, name="mmlrepro-claims-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.release_all()
