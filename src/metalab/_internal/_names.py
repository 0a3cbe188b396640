"""Validation of user-given names that become file names.

Artifact, log and data names are *refused* when they could escape their folder
or confuse readers; experiment ids are *mapped* to a safe folder name (the
real id is kept in ``_meta.json`` so two ids that map to one folder are
detected, never mixed).
"""

from __future__ import annotations

import re

from metalab._errors import InvalidNameError

__all__ = ["MAX_NAME_LENGTH", "check_name", "safe_experiment_id"]

MAX_NAME_LENGTH = 200
_BAD_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")
_UNSAFE_FOLDER_CHARS = re.compile(r"[^\w.+\-]")


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is safe as one path component, else raise.

    A safe name is a non-empty string of at most 200 characters with no path
    separator (``/`` or ``\\``), no control character (including NUL), that is
    not ``.`` or ``..`` and does not start with ``.`` (hidden and temp files).

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
    if problem:
        raise InvalidNameError(
            f"{what} {name!r} {problem}; use letters, digits and '_', '-', '.' "
            f"(for example 'model_weights' or 'loss-curve.v2')"
        )
    return name


def safe_experiment_id(experiment_id: str) -> str:
    """Map an experiment id to a folder name: ``"my_exp:1.0"`` -> ``"my_exp_1.0"``.

    Every character that is not a letter or digit (Unicode included) or one of
    ``_ . + -`` becomes ``_``; a leading ``.``
    becomes ``_`` so the folder is never hidden, ``.`` or ``..``.  Distinct ids
    can map to the same folder; the FileStore detects that through
    ``_meta.json``.

    Raises:
        InvalidNameError: the id is empty, not a string or too long.
    """
    if not isinstance(experiment_id, str) or not experiment_id:
        raise InvalidNameError(
            f"experiment id must be a non-empty string such as 'my_exp:1.0', got {experiment_id!r}"
        )
    if len(experiment_id) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"experiment id {experiment_id[:40]!r}... is longer than {MAX_NAME_LENGTH} characters"
        )
    safe = _UNSAFE_FOLDER_CHARS.sub("_", experiment_id)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return safe
