"""Objects named by ``"package.module:qualified.name"`` references."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_ref"]


def import_ref(ref: str) -> Any:
    """The object ``ref`` names, importing its module on demand.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such (nested) name.
    """
    module_name, _, qualname = ref.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found
