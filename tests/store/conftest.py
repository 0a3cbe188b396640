"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metalab.store import ConfigRegistry


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """Undo scheme registrations a test makes."""
    ConfigRegistry.known()  # make sure the built-in schemes are in before the snapshot
    saved = dict(ConfigRegistry._by_scheme)
    try:
        yield
    finally:
        with ConfigRegistry._lock:
            ConfigRegistry._by_scheme.clear()
            ConfigRegistry._by_scheme.update(saved)
