"""Turn locators (paths, URIs) into store configs and stores."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from typing import Any

from metalab._errors import ConfigError, NotFoundError, ValidationError
from metalab.store._base import Store
from metalab.store._config import ConfigRegistry, StoreConfig
from metalab.store.locator import parse_locator

__all__ = ["DEFAULT_STORE_ROOT", "StoreLike", "create_store", "make_config", "make_store",
           "parse_to_config", "require_existing", "require_experiment"]

#: where stores go when the user names none (the only default folder of metalab)
DEFAULT_STORE_ROOT = "./experiments"

#: what :func:`make_store` accepts
StoreLike = Store | StoreConfig | str | os.PathLike[str] | None


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
    """Connect to the store a locator or config describes (see :func:`parse_to_config`).

    ``kwargs`` (``experiment_id`` included) go to :func:`parse_to_config`
    unchanged; the connection is made by :func:`make_store`.
    """
    return make_store(parse_to_config(locator, **kwargs))


def make_config(
    store_like: StoreLike,
    *,
    experiment_id: str | None = None,
    must_exist: bool = False,
    **options: Any,
) -> StoreConfig:
    """The :class:`StoreConfig` :func:`make_store` connects, without connecting.

    Same inputs, options and errors as :func:`make_store`; a ``Store`` gives
    its config.  No I/O except the folder check of ``must_exist``.
    """
    shown: str | os.PathLike[str] | None = None
    base: StoreConfig | str | os.PathLike[str]
    if isinstance(store_like, Store):
        base = store_like.config
    elif isinstance(store_like, StoreConfig):
        base = store_like
    elif store_like is None:
        base = shown = DEFAULT_STORE_ROOT
    elif isinstance(store_like, str | os.PathLike):
        base = shown = store_like
    else:
        raise ValidationError(
            "a store is named by None (the default folder "
            f"{DEFAULT_STORE_ROOT!r}), a folder path, a locator string ('file://...', "
            "'postgresql://...'), a StoreConfig or a Store; got "
            f"{type(store_like).__name__}"
        )
    config = parse_to_config(base, **options)
    if must_exist:
        require_existing(config, shown)
    if experiment_id is not None:
        config = config.scoped(experiment_id)
    return config


def make_store(
    store_like: StoreLike,
    *,
    experiment_id: str | None = None,
    must_exist: bool = False,
    **options: Any,
) -> Store:
    """The store ``store_like`` names: the one rule every entry point uses.

    ``run(store=...)``, ``load_results``, ``export_store``, ``reconnect`` and
    the command line all turn what the user gave into a store here.

    ==========================  ================================================
    ``store_like``              gives
    ==========================  ================================================
    ``None``                    the folder :data:`DEFAULT_STORE_ROOT`
                                (``"./experiments"``, relative to the current
                                directory at the time of the call)
    a :class:`Store`            the same object; with ``experiment_id`` or
                                ``options`` that change its config, a new
                                connection to the changed config
    a :class:`StoreConfig`      a new connection to it
    a path (``str`` or          :func:`parse_to_config` of it (a folder, a
    ``os.PathLike``) or a       ``file://`` URI or a registered scheme such as
    locator string              ``postgresql://``), then as a config
    ==========================  ================================================

    ``experiment_id`` scopes the result (:meth:`StoreConfig.scoped`: a store
    already scoped to that experiment is kept; one scoped to another is an
    error).  ``options`` replace fields of a config, or go to the scheme's
    ``from_locator`` for a locator (as :func:`parse_to_config` does).
    ``must_exist=True`` is for readers: a store kept in a folder that does not
    exist is an error (:func:`require_existing`), so a mistyped path reads as
    "no store at ./typo" rather than as an empty store.  Writers leave it
    ``False`` (their first write creates the folder).

    Thread safety: holds no state of its own; safe to call from any number of
    threads at once.  Each call returns a new connection (except the
    pass-through of a ``Store``), whose own rules apply to sharing it.

    Raises:
        ValidationError: ``store_like`` is of none of the types above.
        ConfigError: the locator or an option is invalid
            (``UnknownSchemeError``: no store is registered for the scheme).
        ScopeError: the store or config is scoped to another experiment.
        NotFoundError: ``must_exist`` and the store's folder does not exist
            (the message names the path as the user gave it).
    """
    config = make_config(
        store_like, experiment_id=experiment_id, must_exist=must_exist, **options
    )
    if isinstance(store_like, Store) and config == store_like.config:
        return store_like
    store: Store = config.connect()
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


def narrow_to_experiment(store: Store, experiment_id: str) -> Store:
    """``store`` scoped to ``experiment_id``, which it must hold.

    A scoped store is returned as it is.  An unscoped one gives a new scoped
    store (the caller closes both), except when ``store`` was opened on the
    experiment's own folder (a path to ``root/<experiment>``): then scoping
    would look for a folder inside it, so ``store`` itself is returned (it
    reads that folder's runs).

    Raises:
        NotFoundError: the store does not hold the experiment (close names listed).
    """
    if store.is_scoped:
        require_experiment(store, experiment_id)
        return store
    require_experiment(store, experiment_id)
    scoped = make_store(store, experiment_id=experiment_id)
    if scoped is store:
        return store
    try:
        inside = experiment_id in scoped.list_experiments()
    except BaseException:
        scoped.close()
        raise
    if not inside:
        scoped.close()
        return store  # the root is the experiment folder itself
    return scoped

