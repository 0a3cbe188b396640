"""Turn locators (paths, URIs) into store configs and stores."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from typing import Any

from metalab._errors import ConfigError, NotFoundError
from metalab.store._base import Store
from metalab.store._config import ConfigRegistry, StoreConfig
from metalab.store.locator import parse_locator

__all__ = ["DEFAULT_STORE_ROOT", "create_store", "parse_to_config", "require_existing",
           "require_experiment"]

#: where stores go when the user names none
DEFAULT_STORE_ROOT = "./experiments"


def parse_to_config(locator: str | os.PathLike[str] | StoreConfig, **kwargs: Any) -> StoreConfig:
    """The :class:`StoreConfig` a locator describes (no I/O).

    * a ``StoreConfig`` is returned as is; ``experiment_id=`` scopes it and
      other keywords replace fields of the same name;
    * a path or URI is parsed (:func:`~metalab.store.locator.parse_locator`)
      and handed, with ``kwargs`` (e.g. ``experiment_id``, ``file_root``), to
      the ``from_locator`` of the config class registered for its scheme.

    Raises:
        UnknownSchemeError: no store is registered for the scheme.
        ConfigError: the locator or a keyword is invalid.
    """
    if isinstance(locator, StoreConfig):
        config = locator
        experiment_id = kwargs.pop("experiment_id", None)
        if kwargs:
            names = {f.name for f in dataclasses.fields(config)}
            unknown = sorted(set(kwargs) - names)
            if unknown:
                raise ConfigError(
                    f"{type(config).__name__} has no field(s) {unknown}; valid: {sorted(names)}"
                )
            config = dataclasses.replace(config, **kwargs)
        if experiment_id is not None:
            config = config.scoped(experiment_id)
        return config
    info = parse_locator(locator)
    cls = ConfigRegistry.get(info.scheme)
    return cls.from_locator(info, **kwargs)


def create_store(locator: str | os.PathLike[str] | StoreConfig, **kwargs: Any) -> Store:
    """Connect to the store a locator or config describes (see :func:`parse_to_config`)."""
    store: Store = parse_to_config(locator, **kwargs).connect()
    return store



def require_existing(config: StoreConfig, shown: str | os.PathLike[str] | None = None) -> StoreConfig:
    """``config`` if the folder it reads from exists; reading a store that names nothing is an error.

    Only stores kept in a folder (a ``root`` field, as :class:`FileStoreConfig`)
    are checked: a missing folder holds no store, and reading it would report
    "nothing found" for what is most likely a mistyped path.  Writers do not
    call this (their first write creates the folder).  ``shown`` is how the
    user named the store (their path or locator), used in the message.

    Raises:
        NotFoundError: the folder does not exist (the message names it and says
            what to pass instead).
    """
    root = getattr(config, "root", None)
    if isinstance(root, str) and not os.path.isdir(root):
        named = os.fspath(shown) if shown is not None else root
        where = named if named == root else f"{named} ({root})"
        raise NotFoundError(
            f"no store at {where}: the folder does not exist. Check the path, or pass the "
            "folder given to metalab.run(store=...) (the collection root) or an experiment folder"
        )
    return config


def require_experiment(
    store: Store, experiment_id: str, experiments: Sequence[str] | None = None
) -> None:
    """Check that ``store`` holds ``experiment_id`` (a typo is an error, not "no runs").

    ``experiments``: what ``store.list_experiments()`` returned, if known.

    Raises:
        NotFoundError: the store does not hold it; the message lists the
            experiments it holds and the close matches.
    """
    if experiments is None:
        experiments = store.list_experiments()
    if experiment_id in experiments:
        return
    close = difflib.get_close_matches(experiment_id, experiments, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(map(repr, experiments)) or "none"
    raise NotFoundError(
        f"experiment {experiment_id!r} is not in this store; it holds: {listed}.{hint}"
    )
