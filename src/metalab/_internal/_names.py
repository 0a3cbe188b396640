"""Validation of user-given names that become file names.

Artifact, log and data names are *refused* when they could escape their folder
or confuse readers; experiment ids are *mapped* to a safe folder name (the
real id is kept in ``_meta.json`` so two ids that map to one folder are
detected, never mixed).

Lengths: a name has at most 200 characters, and a file name made from it (the
name with its run id, format or suffix, see ``check_name(file_name=...)``) at
most :data:`MAX_FILE_NAME_BYTES` bytes in UTF-8: file systems count bytes
(255 per name), and an atomic write adds a temp prefix and suffix.  A
non-ASCII character takes 2 to 4 bytes.
"""

from __future__ import annotations

import re

from metalab._errors import InvalidNameError

__all__ = ["MAX_FILE_NAME_BYTES", "MAX_NAME_LENGTH", "check_name", "safe_experiment_id"]

MAX_NAME_LENGTH = 200
#: bytes of a file name metalab writes: 255 (NAME_MAX) less the 14 bytes its
#: temp file adds (".tmp-" + name + "." + 8 hex digits, see _atomic)
MAX_FILE_NAME_BYTES = 255 - 14
#: what a manifest file adds to a safe experiment id: "_" + compact_ts + ".json"
_MANIFEST_SUFFIX_BYTES = len("_20260101T000000000000Z.json")
_BAD_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")
_UNSAFE_FOLDER_CHARS = re.compile(r"[^\w.+\-]")


def check_name(name: object, what: str = "name", *, file_name: str | None = None) -> str:
    """Return ``name`` if it is safe as one path component, else raise.

    A safe name is a non-empty string of at most 200 characters with no path
    separator (``/`` or ``\\``), no control character (including NUL), no
    character that has no UTF-8 form (a lone surrogate), that is not ``.`` or
    ``..`` and does not start with ``.`` (hidden and temp files).
    ``file_name``: the name of the file written for it (e.g.
    ``f"{run_id}_{name}.log"``), checked to be at most
    :data:`MAX_FILE_NAME_BYTES` bytes; without it (a JSON key such as a
    metric name) only the 200 characters count.

    Raises:
        InvalidNameError: with the reason and an example of a valid name.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}")
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters"
    elif _BAD_CHARS.search(name):
        problem = "contains a path separator or control character"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif not _encodable(name):
        problem = "contains a character with no UTF-8 form (a lone surrogate)"
    if problem:
        raise InvalidNameError(
            f"{what} {_short(name)} {problem}; use letters, digits and '_', '-', '.' "
            f"(for example 'model_weights' or 'loss-curve.v2')"
        )
    if file_name is not None:
        size = len(file_name.encode("utf-8", "surrogatepass"))
        if size > MAX_FILE_NAME_BYTES:
            raise InvalidNameError(
                f"{what} {_short(name)} makes the file name {_short(file_name)} {size} bytes "
                f"long in UTF-8; at most {MAX_FILE_NAME_BYTES} bytes fit (a non-ASCII "
                "character takes 2 to 4 bytes): use a shorter name"
            )
    return name


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: names up to this long are quoted whole in messages; longer ones by their first _QUOTED_HEAD characters
_QUOTED_WHOLE = 60
_QUOTED_HEAD = 40


def _short(text: str) -> str:
    if len(text) <= _QUOTED_WHOLE:
        return repr(text)
    return f"{text[:_QUOTED_HEAD]!r}... ({len(text)} characters)"


def safe_experiment_id(experiment_id: str) -> str:
    """Map an experiment id to a folder name: ``"my_exp:1.0"`` -> ``"my_exp_1.0"``.

    Every character that is not a letter or digit (Unicode included) or one of
    ``_ . + -`` becomes ``_``; a leading ``.``
    becomes ``_`` so the folder is never hidden, ``.`` or ``..``.  Distinct ids
    can map to the same folder; the FileStore detects that through
    ``_meta.json``.

    Raises:
        InvalidNameError: the id is empty, not a string, longer than 200
            characters, holds a lone surrogate, or its folder name is so long in UTF-8 bytes that its
            manifest file names (``{folder}_{timestamp}.json``) would not fit.
    """
    if not isinstance(experiment_id, str) or not experiment_id:
        raise InvalidNameError(
            f"experiment id must be a non-empty string such as 'my_exp:1.0', got {experiment_id!r}"
        )
    if len(experiment_id) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"experiment id {experiment_id[:_QUOTED_HEAD]!r}... is longer than {MAX_NAME_LENGTH} characters"
        )
    if not _encodable(experiment_id):
        raise InvalidNameError(
            f"experiment id {_short(experiment_id)} contains a character with no UTF-8 form "
            "(a lone surrogate); it cannot be stored"
        )
    safe = _UNSAFE_FOLDER_CHARS.sub("_", experiment_id)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    size = len(safe.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_NAME_BYTES - _MANIFEST_SUFFIX_BYTES:
        raise InvalidNameError(
            f"experiment id {_short(experiment_id)} makes the folder name {size} bytes long in "
            f"UTF-8; at most {MAX_FILE_NAME_BYTES - _MANIFEST_SUFFIX_BYTES} bytes fit (a "
            "non-ASCII character takes 2 to 4 bytes): use a shorter experiment name"
        )
    return safe
