"""A cross-process lock made of one file created with ``O_CREAT | O_EXCL``.

Creation with ``O_EXCL`` is atomic on local filesystems and on NFSv3+, so this
works where ``fcntl``/``flock`` locks are unreliable (NFS, some FUSE
filesystems).  The lock file holds ``host pid token`` for whoever debugs a
stuck lock.  A holder that died leaves its file behind: a lock file whose
mtime is older than ``stale`` seconds is moved aside under a unique name
(only one contender's rename can succeed) and, if the file moved aside turns
out to be fresh after all (taken over meanwhile), it is linked back.
Holders of long critical sections call :meth:`FileLock.touch` to stay fresh.

Thread/process safety: one :class:`FileLock` object may be used by several
threads; each ``acquire`` competes like a separate process would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator

__all__ = ["FileLock", "LockTimeout"]


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
        token = f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}\n".encode()
        delay = self.poll
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._break_stale()
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{self.path} is held by another process") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            try:
                os.write(fd, token)
            finally:
                os.close(fd)
            return

    def release(self) -> None:
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

    def _break_stale(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if time.time() - st.st_mtime <= self.stale:
            return
        aside = f"{self.path}.stale-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(self.path, aside)
        except OSError:
            return
        try:
            if time.time() - os.stat(aside).st_mtime <= self.stale:
                # a fresh lock was taken meanwhile: give it back
                with contextlib.suppress(OSError):
                    os.link(aside, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)
