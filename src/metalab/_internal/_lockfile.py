"""A cross-process lock made of one file created exclusively.

The lock file appears whole (:func:`~metalab._internal._atomic.create_exclusive`:
written to a temp file, then hard-linked into place, which fails if the file
exists; atomic on local filesystems and on NFSv3+), so this works where
``fcntl``/``flock`` locks are unreliable (NFS, some FUSE filesystems).  The
file holds the holder's owner string (:mod:`metalab._internal._owner`).

A holder that died leaves its file behind.  Such a file is *stale* and is
broken (:func:`~metalab._internal._owner.holder_is_stale`): at once when its
owner is certainly dead (this host and boot, pid gone or reused), when it is
empty or unreadable debris older than a short grace, and otherwise when its
mtime is older than ``stale`` seconds.  A stale file is moved aside under a
unique name (only one contender's rename can succeed); if the file moved aside
turns out to belong to a live holder after all (taken over meanwhile), it is
linked back.  Holders of long critical sections call :meth:`FileLock.touch`
to stay fresh.

Thread/process safety: one :class:`FileLock` object may be used by several
threads; each ``acquire`` competes like a separate process would.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator

from metalab._internal._atomic import create_exclusive
from metalab._internal._owner import holder_is_stale, new_owner, owner_label, read_owner_file

__all__ = ["FileLock", "LockTimeout", "hold"]

#: the pause between attempts doubles from ``poll`` up to this many seconds
_MAX_POLL_S = 0.2
#: hex digits of the random suffix of a stale lock file moved aside
_ASIDE_SUFFIX_HEX = 12


class LockTimeout(OSError):
    """The lock stayed held by someone else for longer than the wait allowed."""


class FileLock:
    """Exclusive lock on ``path`` (see the module docstring).

    Args:
        path: the lock file; its folder must exist.
        stale: seconds after which an untouched lock counts as abandoned.
        poll: seconds between attempts while the lock is held elsewhere.
    """

    def __init__(self, path: str, *, stale: float = 120.0, poll: float = 0.01) -> None:
        self.path = path
        self.stale = stale
        self.poll = poll

    def acquire(self, wait: float) -> None:
        """Take the lock, waiting at most ``wait`` seconds.

        Raises:
            LockTimeout: still held elsewhere after ``wait`` seconds.
            OSError: the lock file cannot be created (read-only folder, ...).
        """
        deadline = time.monotonic() + wait
        token = f"{new_owner()}\n".encode()
        delay = self.poll
        while True:
            if create_exclusive(self.path, token, durable=False):
                return
            self._break_stale()
            if time.monotonic() > deadline:
                raise LockTimeout(f"{self.path} is held by {self.holder_text()}") from None
            time.sleep(delay)
            delay = min(delay * 2, _MAX_POLL_S)

    def release(self) -> None:
        """Remove the lock file (idempotent; errors are ignored)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    @contextlib.contextmanager
    def held(self, wait: float) -> Iterator[FileLock]:
        """``with lock.held(wait):`` acquire, run the block, release."""
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()

    def touch(self) -> None:
        """Mark the lock as still in use (long critical sections)."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    @staticmethod
    def _holder(path: str) -> tuple[str, float] | None:
        """(owner line, age in seconds) of a lock file; ``""`` if empty or unreadable
        (age infinite when its status cannot be read); None if gone."""
        held = read_owner_file(path)
        if held is None:
            return None
        holder, mtime = held
        return holder, (time.time() - mtime) if mtime is not None else float("inf")

    def holder_text(self) -> str:
        """Who holds the lock, for messages: ``host:pid (last touched N s ago)``."""
        held = self._holder(self.path)
        if held is None:
            return "nobody any more"
        holder, age = held
        when = f"last touched {age:.0f} s ago" if age != float("inf") else "unreadable"
        return f"{owner_label(holder)} ({when})" if holder else f"an empty lock file ({when})"

    def _break_stale(self) -> None:
        held = self._holder(self.path)
        if held is None or not holder_is_stale(held[0], held[1], self.stale):
            return
        aside = f"{self.path}.stale-{uuid.uuid4().hex[:_ASIDE_SUFFIX_HEX]}"
        try:
            os.rename(self.path, aside)
        except OSError:
            return
        try:
            moved = self._holder(aside)
            if moved is not None and moved[0] != held[0] and not holder_is_stale(*moved, self.stale):
                # a live holder took the lock meanwhile: give it back
                with contextlib.suppress(OSError):
                    os.link(aside, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)


@contextlib.contextmanager
def hold(path: str, *, wait: float, stale: float,
         busy: Callable[[FileLock], BaseException]) -> Iterator[FileLock]:
    """``with hold(path, ...):`` hold the lock file ``path`` for the block.

    Raises:
        ``busy(lock)``: it stayed held elsewhere for ``wait`` seconds (the
            message should say who holds it: :meth:`FileLock.holder_text`).
        OSError: the lock file cannot be created.
    """
    lock = FileLock(path, stale=stale)
    try:
        lock.acquire(wait=wait)
    except LockTimeout:
        raise busy(lock) from None
    try:
        yield lock
    finally:
        lock.release()
