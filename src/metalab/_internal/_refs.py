"""Importing an object named by a ``"package.module:name"`` reference."""

from __future__ import annotations

import importlib
from typing import Any

from metalab._errors import ValidationError

__all__ = ["import_reference"]


def import_reference(ref: str, what: str, name: str = "name") -> Any:
    """The object ``ref`` (``"package.module:name"``; ``name`` may be dotted) refers to.

    ``what`` names the reference in messages (``"derived metric"``, ``"context"``),
    ``name`` what follows the colon (``"function"``).
    Thread-safe as far as importing the module is.

    Raises:
        ValidationError: a malformed reference, a module that cannot be
            imported, or a missing attribute (the message says which).
    """
    module_name, sep, attr_path = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not module_name or not attr_path:
        raise ValidationError(f"{what} reference {ref!r} must look like 'package.module:{name}'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(
            f"cannot import module {module_name!r} for {what} {ref!r}: {exc}. "
            "Check that the module is installed or on sys.path"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValidationError(
                f"module {module_name!r} has no attribute {attr_path!r} ({what} reference {ref!r})"
            ) from None
    return obj
