"""Claims and heartbeats of the FileStore (NFS-safe), mixed into :class:`FileStore`.

``.claims/{run_id}.claim`` in the run's experiment folder holds the owner
string (first line, see :mod:`metalab._internal._owner`); its mtime is the
heartbeat.  The file appears whole (``create_exclusive``: temp file
hard-linked into place, which fails if the claim exists; atomic on local
filesystems and NFSv3+), so an empty claim can only be debris.  A stale
claim (``holder_is_stale``: dead owner at once, empty debris after a grace,
else heartbeat older than ``stale_after``) is removed only by the holder of
``{claim}.takeover`` (itself a lock file naming its owner), who re-checks
staleness under it, moves the claim aside under a unique name and then
competes again.

Thread/process safety: every method may be called concurrently from several
threads, processes and hosts sharing the folder (see :meth:`FileClaims.try_claim`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, ClassVar

from metalab._internal._atomic import TMP_PREFIX, create_exclusive
from metalab._internal._lockfile import FileLock, LockTimeout
from metalab._internal._names import check_name
from metalab._internal._owner import holder_is_stale, read_owner_file
from metalab._internal._time import to_iso, utcnow

__all__ = ["FileClaims"]

#: what follows the run id in the name of a run record's temp file
_RECORD_TMP_INFIX = ".json."
#: guards each store's listing of temp files (see FileClaims._sweep_debris)
_DEBRIS_LOCK = threading.Lock()
#: seconds a listing of temp files serves later takeovers before runs/ is listed again
_DEBRIS_LISTING_TTL_S = 60.0


def _record_temp_files(runs: str) -> dict[str, list[str]]:
    """``{run id: [paths]}`` of the run records' temp files in the folder ``runs``."""
    found: dict[str, list[str]] = {}
    try:
        with os.scandir(runs) as it:
            for entry in it:
                name = entry.name
                if name.startswith(TMP_PREFIX) and _RECORD_TMP_INFIX in name:
                    rid = name[len(TMP_PREFIX):].rsplit(_RECORD_TMP_INFIX, 1)[0]
                    found.setdefault(rid, []).append(entry.path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return found


class FileClaims:
    """The claim methods of :class:`~metalab.store.FileStore` (a mixin: it uses the
    store's ``_folder(run_id)`` and ``_ensure_meta()``).  The write methods are
    guarded like the store's own (a read-only store refuses them)."""

    if TYPE_CHECKING:  # provided by FileStore
        def _folder(self, run_id: str) -> str: ...

        def _ensure_meta(self) -> None: ...

    supports_claims: ClassVar[bool] = True

    def _claim_path(self, run_id: str) -> str:
        check_name(run_id, "run id")
        return os.path.join(self._folder(run_id), ".claims", f"{run_id}.claim")

    @staticmethod
    def _read_claim(path: str) -> tuple[str, float] | None:
        """(owner, mtime) of a claim file, or None if it is gone.

        An empty or unreadable claim gives the owner ``""`` (debris of a
        writer that died, or of a full disk); it counts as stale after a
        short grace (:func:`~metalab._internal._owner.holder_is_stale`).
        """
        held = read_owner_file(path)
        if held is None:
            return None
        return held[0], held[1] if held[1] is not None else 0.0

    def claim_holder(self, run_id: str) -> tuple[str, float] | None:
        """(owner string, seconds since its last heartbeat) of the claim on ``run_id``; None if unclaimed."""
        held = self._read_claim(self._claim_path(run_id))
        if held is None:
            return None
        return held[0], max(0.0, time.time() - held[1])

    def try_claim(self, run_id: str, owner: str, stale_after: float) -> bool:
        """Claim ``run_id`` for ``owner`` (see :meth:`Store.try_claim`).

        Safe between threads, processes and hosts sharing the folder (NFS:
        heartbeats are file mtimes, so clocks of the hosts should agree
        within a fraction of ``stale_after``).  If writing the claim fails
        (disk full, ...), nothing is left behind and the OSError propagates.
        """
        path = self._claim_path(run_id)
        self._ensure_meta()
        data = f"{owner}\n{to_iso(utcnow())}\n".encode()
        for _ in range(4):
            # created in place: one file per claim on the hot path; a reader that finds
            # it still empty treats it as being written (holder_is_stale's grace)
            if create_exclusive(path, data, durable=False, in_place=True):
                return True
            held = self._read_claim(path)
            if held is None:
                continue  # released meanwhile: try again
            holder, mtime = held
            if holder == owner:
                with contextlib.suppress(OSError):
                    os.utime(path)
                return True
            if not holder_is_stale(holder, time.time() - mtime, stale_after):
                return False  # a live claim
            if not self._remove_stale_claim(path, stale_after):
                return False
        return False

    def _remove_stale_claim(self, path: str, stale_after: float) -> bool:
        """Delete a stale claim under an exclusive takeover lock; True if the way is free."""
        lock = FileLock(f"{path}.takeover", stale=stale_after)
        try:
            lock.acquire(wait=0.0)
        except LockTimeout:
            return False  # another launch is taking it over (or died doing so: broken next time)
        try:
            held = self._read_claim(path)  # re-read under the lock: it may have changed
            if held is not None:
                if not holder_is_stale(held[0], time.time() - held[1], stale_after):
                    return False
                aside = f"{path}.stale-{uuid.uuid4().hex[:12]}"
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    return True
                with contextlib.suppress(OSError):
                    os.unlink(aside)
                self._sweep_debris(path)
            return True
        finally:
            lock.release()

    def _sweep_debris(self, claim_path: str) -> None:
        """Remove the temp files of the run's record that the stale holder left
        (``runs/.tmp-{run_id}.json.*``: a killed writer's staged final record,
        see :mod:`metalab.store._group_commit`).  Called with the takeover lock
        held and the stale claim gone: nobody else writes that record now, and
        a holder that only stalled cannot put an old record over the new
        attempt's.  The folder is listed once per store (only after a crash
        does anything take a claim over), the temp files of later takeovers
        looked up in that listing while it is younger than
        :data:`_DEBRIS_LISTING_TTL_S` (a long-lived process lists again).
        """
        run_id = os.path.basename(claim_path)[: -len(".claim")]
        runs = os.path.join(os.path.dirname(os.path.dirname(claim_path)), "runs")
        with _DEBRIS_LOCK:
            listings: dict[str, tuple[float, dict[str, list[str]]]] = self.__dict__.setdefault(
                "_debris_listings", {})
            kept = listings.get(runs)
        if kept is None or time.monotonic() - kept[0] > _DEBRIS_LISTING_TTL_S:
            kept = (time.monotonic(), _record_temp_files(runs))  # (outside the lock)
            with _DEBRIS_LOCK:
                listings[runs] = kept
        with _DEBRIS_LOCK:
            debris = kept[1].pop(run_id, [])
        for tmp in debris:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def touch_heartbeat(self, run_id: str, owner: str) -> bool:
        path = self._claim_path(run_id)
        held = self._read_claim(path)
        if held is None or held[0] != owner:
            return False
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def release_claim(self, run_id: str, owner: str) -> None:
        path = self._claim_path(run_id)
        held = self._read_claim(path)
        if held is not None and held[0] == owner:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

