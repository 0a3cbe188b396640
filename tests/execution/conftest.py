"""Fixtures shared by the execution tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A client of a real Dask LocalCluster (two worker processes, one thread each)."""
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def interactive_sigint():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal.

    A test run started in the background (nohup, CI runners) inherits SIGINT as
    ignored, and Python then never installs its handler.
    """
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
