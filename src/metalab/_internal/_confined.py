"""Reading a stored file only when it is a regular file inside its folder.

A store reads files by *name* (an artifact, a log, a data item); a user
name never escapes the folder (see :mod:`metalab._internal._names`), but
the file system itself could: a symbolic link put in place of
``artifacts/<run>/readme.txt``, or a linked folder on the way, would make
the store serve a file from anywhere on the machine.  The helpers here
refuse that: the last component is opened with ``O_NOFOLLOW``, the opened
file must be a regular file (``fstat``), and its real path must lie inside
the real path of the given root.  Pure functions over the file system;
thread-safe.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from metalab._errors import NotFoundError

__all__ = ["open_regular_inside", "read_regular_inside", "regular_file_names"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
#: a FIFO put in place of a file must not block the open (no effect on regular files)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _is_inside(path: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def open_regular_inside(path: str, root: str) -> BinaryIO:
    """``path`` opened for binary reading; it must be a regular file inside ``root``.

    Raises:
        FileNotFoundError: ``path`` does not exist (as ``open``).
        NotFoundError: ``path`` is a symbolic link, a folder, a device or
            another non-regular file, or lies (through a linked folder)
            outside ``root``; the message names ``path`` and what to do.
        OSError: any other failure of the open (permissions, ...).
    """
    if not _is_inside(path, root):
        what = f"leads outside {root}"
    else:
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY)
        except FileNotFoundError:
            raise
        except OSError:
            # ELOOP (a link, refused by O_NOFOLLOW) or EISDIR (a folder) on most systems
            if not (os.path.islink(path) or os.path.isdir(path)):
                raise
            what = "is a symbolic link or a folder"
        else:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return os.fdopen(fd, "rb")
            os.close(fd)
            what = "is not a regular file"
    raise NotFoundError(
        f"{path} {what}; metalab reads only regular files inside the store "
        "(replace it with the file itself)")


def read_regular_inside(path: str, root: str) -> bytes:
    """The bytes of ``path``, checked as by :func:`open_regular_inside` (same errors)."""
    with open_regular_inside(path, root) as fh:
        return fh.read()


def regular_file_names(folder: str) -> list[str]:
    """Names of the regular files (not links, folders, devices) directly in ``folder``.

    Raises:
        FileNotFoundError, NotADirectoryError: as ``os.scandir``.
    """
    with os.scandir(folder) as entries:
        return [e.name for e in entries if e.is_file(follow_symlinks=False)]
