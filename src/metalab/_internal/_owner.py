"""Owners of claims and lock files, and whether an owner is certainly dead.

A claim (``.claims/{run_id}.claim``) or a lock file names the execution that
holds it with an *owner string*::

    {host}:{pid}:{boot}:{pidns}:{start}:{token}

- ``host``: this machine's host name (``:`` and white space replaced by ``_``);
- ``pid``: the holding process;
- ``boot``: the first 8 hex digits of ``/proc/sys/kernel/random/boot_id``
  (``0`` where unknown), so a pid of an earlier boot is not mistaken for a
  live process;
- ``pidns``: the inode of the holder's PID namespace (``0`` where unknown), so
  a container sharing the host name and kernel is not judged by our pids;
- ``start``: the holder's start time in clock ticks since boot (field 22 of
  ``/proc/{pid}/stat``; ``0`` where unknown), so a reused pid is recognised;
- ``token``: random hex, unique to one execution (threads share a pid).

:func:`owner_is_dead` answers "is this owner certainly dead?" without waiting:
on this host, in this boot and this PID namespace, an owner whose pid is gone,
is a zombie or now belongs to another process (other start time) is dead.
Anything else (another host, another boot, another namespace, an owner
string of another format) is *not known* to be dead: callers then fall back to
the age of the file (:func:`holder_is_stale`).

Pure reads of ``/proc``; thread- and process-safe.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from dataclasses import dataclass

__all__ = [
    "EMPTY_GRACE_S",
    "Owner",
    "boot_id",
    "holder_is_stale",
    "new_owner",
    "owner_is_dead",
    "owner_label",
    "parse_owner",
    "read_owner_file",
    "this_host",
]

#: seconds an empty (or unreadable) claim or lock file is given before it counts
#: as debris: files are written whole before they appear, except on filesystems
#: without hard links, where a live creator may not have written its owner yet
EMPTY_GRACE_S = 2.0

_host: str | None = None
_boot: str | None = None
_pidns: str | None = None
_start: dict[int, str] = {}


def this_host() -> str:
    """This machine's host name, usable as one field of an owner string."""
    global _host
    if _host is None:
        _host = re.sub(r"[\s:]", "_", socket.gethostname() or "") or "host"
    return _host


def boot_id() -> str:
    """This boot's id (32 hex digits from ``/proc/sys/kernel/random/boot_id``), ``""`` if unknown."""
    global _boot
    if _boot is None:
        value = ""
        with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as fh:
            value = re.sub(r"[^0-9a-f]", "", fh.read().lower())
        _boot = value
    return _boot


def _short_boot() -> str:
    return boot_id()[:8] or "0"


def _pid_namespace() -> str:
    global _pidns
    if _pidns is None:
        value = "0"
        with contextlib.suppress(OSError):
            value = re.sub(r"[^0-9]", "", os.readlink("/proc/self/ns/pid")) or "0"
        _pidns = value
    return _pidns


#: positions, among the fields after the command name, of ``state`` (field 3 of
#: ``/proc/PID/stat``, see proc(5)) and ``starttime`` (field 22)
_STAT_STATE = 0
_STAT_STARTTIME = 19


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from ``/proc``; None if there is no such process.

    Raises:
        OSError: ``/proc`` cannot be read (not Linux, or hidden).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) <= _STAT_STARTTIME:
        raise OSError(f"unexpected /proc/{pid}/stat")
    return fields[_STAT_STATE], fields[_STAT_STARTTIME]


def _start_time(pid: int) -> str:
    start = _start.get(pid)
    if start is None:
        start = "0"
        with contextlib.suppress(OSError):
            stat = _proc_stat(pid)
            if stat is not None:
                start = stat[1]
        _start[pid] = start
    return start


def new_owner() -> str:
    """A fresh owner string for the calling process (see the module docstring)."""
    pid = os.getpid()
    return (
        f"{this_host()}:{pid}:{_short_boot()}:{_pid_namespace()}:{_start_time(pid)}:"
        f"{secrets.token_hex(5)}"
    )


@dataclass(frozen=True, slots=True)
class Owner:
    """The parts of an owner string."""

    host: str
    pid: int
    boot: str
    pidns: str
    start: str
    token: str

    @property
    def label(self) -> str:
        """``host:pid``, for messages."""
        return f"{self.host}:{self.pid}"


def parse_owner(text: str) -> Owner | None:
    """The parts of ``text``; None if it is not an owner string of this format."""
    parts = text.strip().split(":")
    if len(parts) != 6 or not parts[0]:
        return None
    host, pid, boot, pidns, start, token = parts
    if not pid.isdigit() or not pidns.isdigit() or not start.isdigit():
        return None
    return Owner(host, int(pid), boot, pidns, start, token)


#: longest owner text quoted as it is in messages (longer ones are cut, ending in "...")
_MAX_LABEL = 63


def owner_label(text: str) -> str:
    """``host:pid`` of an owner string, or the text itself (shortened) if it has another format."""
    owner = parse_owner(text)
    if owner is not None:
        return owner.label
    text = text.strip()
    if len(text) > _MAX_LABEL:
        return text[: _MAX_LABEL - 3] + "..."
    return text or "an unknown owner"


def owner_is_dead(text: str) -> bool:
    """True only if the owner ``text`` is certainly not running any more.

    See the module docstring: decided on this host, boot and PID namespace
    only (pid gone, zombie, or pid reused); False whenever unsure.
    """
    owner = parse_owner(text)
    if owner is None or owner.host != this_host():
        return False
    ours = _pid_namespace()
    if owner.pidns != "0" and ours != "0" and owner.pidns != ours:
        return False
    boot = _short_boot()
    same_boot = owner.boot != "0" and boot != "0" and owner.boot == boot
    if owner.boot != "0" and boot != "0" and not same_boot:
        return False  # another boot, or another machine with the same name: age decides
    try:
        stat = _proc_stat(owner.pid)
    except OSError:
        stat = None
        try:
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # exists, but not ours to signal
        return False
    if stat is None:
        return True  # no such process on this host (whatever the boot)
    state, start = stat
    if state in ("Z", "X"):
        return True  # exited, not yet reaped
    return same_boot and owner.start != "0" and start != owner.start


def holder_is_stale(holder: str, age: float, stale_after: float) -> bool:
    """Whether a claim or lock file held by ``holder`` may be taken over.

    ``holder`` is the owner line of the file (``""`` if the file is empty or
    unreadable), ``age`` the seconds since its mtime (its last heartbeat).
    An empty file is debris once older than :data:`EMPTY_GRACE_S`; a dead
    owner (:func:`owner_is_dead`) is stale at once; any other holder is stale
    once older than ``stale_after`` seconds.
    """
    if not holder.strip():
        return age > min(EMPTY_GRACE_S, stale_after)
    if age > stale_after:
        return True
    return owner_is_dead(holder)


#: bytes of a claim or lock file read for its owner line
_OWNER_READ_BYTES = 4096
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def read_owner_file(path: str) -> tuple[str, float | None] | None:
    """(owner line, mtime) of a claim or lock file; None when it is gone.

    The owner is ``""`` for an empty or unreadable file (a writer that died, or
    a full disk: :func:`holder_is_stale` gives it a short grace), the mtime
    None when even its status cannot be read.  ``os.open``/``os.read``: four
    system calls where ``open()`` makes eight (claims are read on every release).
    """
    try:
        fd = os.open(path, _O_READ)
        try:
            mtime = os.fstat(fd).st_mtime
            try:
                owner = os.read(fd, _OWNER_READ_BYTES).decode("utf-8", "replace").split("\n", 1)[0]
            except OSError:
                owner = ""
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError:
        try:
            return "", os.stat(path).st_mtime
        except FileNotFoundError:
            return None
        except OSError:
            return "", None
    return owner, mtime
