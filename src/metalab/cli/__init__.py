"""The ``metalab`` command line, a thin layer over library calls.

The entry point ``metalab`` (declared in ``pyproject.toml``) calls :func:`main`.
Command groups live in their own private modules and are attached to the root
group :data:`cli` in :mod:`metalab.cli._main`.
"""

from metalab.cli._main import cli, main

__all__ = ["cli", "main"]
