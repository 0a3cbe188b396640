"""Turn locators (paths, URIs) into store configs and stores."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from metalab._errors import ConfigError
from metalab.store._base import Store
from metalab.store._config import ConfigRegistry, StoreConfig
from metalab.store.locator import parse_locator

__all__ = ["DEFAULT_STORE_ROOT", "create_store", "parse_to_config"]

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

