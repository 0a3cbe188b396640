"""Objects named by ``"package.module:qualified.name"`` references."""

from __future__ import annotations

import importlib
from typing import Any

from metalab._errors import ValidationError

__all__ = ["import_ref", "import_reference"]


def import_ref(ref: str) -> Any:
    """The object ``ref`` names, importing its module on demand.

    Thread-safe as far as importing the module is.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such (nested) name.
    """
    module_name, _, qualname = ref.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def import_reference(ref: str, what: str, name: str = "name") -> Any:
    """:func:`import_ref` for a reference a user gave, with messages that say what to fix.

    ``what`` names the reference in messages (``"derived metric"``, ``"context"``),
    ``name`` what follows the colon (``"function"``).

    Raises:
        ValidationError: a malformed reference, a module that cannot be
            imported, or a missing attribute (the message says which).
    """
    module_name, sep, attr_path = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not module_name or not attr_path:
        raise ValidationError(f"{what} reference {ref!r} must look like 'package.module:{name}'")
    try:
        importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(
            f"cannot import module {module_name!r} for {what} {ref!r}: {exc}. "
            "Check that the module is installed or on sys.path"
        ) from exc
    try:
        return import_ref(ref)
    except AttributeError:
        raise ValidationError(
            f"module {module_name!r} has no attribute {attr_path!r} ({what} reference {ref!r})"
        ) from None
