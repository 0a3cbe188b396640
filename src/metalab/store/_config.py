"""Store configs: serializable descriptions of a store, and their scheme registry.

A :class:`StoreConfig` is a frozen dataclass that says where a store is.  It
does no I/O until :meth:`StoreConfig.connect`.  Configs travel to workers as
``to_dict()`` and come back with :meth:`StoreConfig.from_dict`.

Every concrete subclass with a ``scheme`` ClassVar registers itself when its
class is created (``__init_subclass__``); installed packages can also register
configs through the ``metalab.stores`` entry-point group, loaded lazily the
first time an unknown scheme is looked up.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import inspect
import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from metalab._errors import ConfigError, ScopeError, UnknownSchemeError
from metalab._internal._redact import without_secrets
from metalab._internal._refs import import_ref

if TYPE_CHECKING:
    from metalab.store.locator import LocatorInfo

__all__ = ["BUILTIN_CONFIG_MODULES", "ConfigRegistry", "StoreConfig", "load_object", "parse_bool"]

log = logging.getLogger("metalab.store")

#: the modules defining the built-in configs (``file``, ``postgresql``); each
#: registers its config when imported and needs no optional dependency to import
BUILTIN_CONFIG_MODULES = ("metalab.store._file", "metalab.store._postgres._config")


def load_object(path: str) -> Any:
    """The object named by ``"package.module:qualified.name"`` (the module imported on demand).

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such name.
    """
    return import_ref(path)


def parse_bool(name: str, text: str) -> bool:
    """A locator option's boolean value (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``).

    Raises:
        ConfigError: any other text.
    """
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"locator option {name}={text!r} must be true or false")


class ConfigRegistry:
    """Scheme -> StoreConfig subclass.  Process-wide, thread-safe.

    A scheme can be registered once; registering a class with the same module
    and qualified name again replaces it (re-imports, dataclass slots), any
    other class needs ``overwrite=True``.
    """

    _lock = threading.RLock()
    _by_scheme: ClassVar[dict[str, type[StoreConfig]]] = {}
    _entry_points_loaded: ClassVar[bool] = False

    @classmethod
    def register(cls, config_cls: type[StoreConfig], *, overwrite: bool = False) -> None:
        schemes = config_cls.schemes()
        with cls._lock:
            for scheme in schemes:
                old = cls._by_scheme.get(scheme)
                same = old is not None and (
                    (old.__module__, old.__qualname__)
                    == (config_cls.__module__, config_cls.__qualname__)
                )
                if old is not None and not same and not overwrite:
                    raise ConfigError(
                        f"store scheme {scheme!r} is already registered by "
                        f"{old.__module__}.{old.__qualname__}; pick another scheme or "
                        "call ConfigRegistry.register(cls, overwrite=True)"
                    )
                cls._by_scheme[scheme] = config_cls

    @classmethod
    def unregister(cls, scheme: str) -> None:
        """Forget ``scheme`` (nothing happens if it is not registered)."""
        with cls._lock:
            cls._by_scheme.pop(scheme, None)

    @classmethod
    def _load_entry_points(cls) -> None:
        with cls._lock:
            if cls._entry_points_loaded:
                return
            cls._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="metalab.stores"):
            if ep.name in cls._by_scheme:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not break metalab
                log.warning("could not load store plugin %r (%s): %s", ep.name, ep.value, exc)
                continue
            if isinstance(loaded, type) and issubclass(loaded, StoreConfig):
                with cls._lock:
                    cls._by_scheme.setdefault(ep.name, loaded)

    @classmethod
    def get(cls, scheme: str) -> type[StoreConfig]:
        """The config class for ``scheme``.

        Raises:
            UnknownSchemeError: naming the schemes that are known.
        """
        key = scheme.lower()
        found = cls._by_scheme.get(key)
        if found is None:
            cls._ensure_builtin()
            cls._load_entry_points()
            found = cls._by_scheme.get(key)
        if found is None:
            known = ", ".join(sorted(cls.known()))
            raise UnknownSchemeError(
                f"no store is registered for scheme {scheme!r}; known schemes: {known}. "
                "Register one by subclassing metalab.store.StoreConfig with a 'scheme' ClassVar"
            )
        return found

    @classmethod
    def schemes(cls) -> list[str]:
        """The registered schemes, sorted (built-in ones and ``metalab.stores`` plugins)."""
        cls._ensure_builtin()
        cls._load_entry_points()
        with cls._lock:
            return sorted(cls._by_scheme)

    @classmethod
    def known(cls) -> Mapping[str, type[StoreConfig]]:
        """A read-only view of the registered schemes."""
        cls._ensure_builtin()
        return MappingProxyType(cls._by_scheme)

    @staticmethod
    def _ensure_builtin() -> None:
        """Import the modules of the built-in configs (importing one registers it).

        By dotted name, so that this module imports no store: the stores
        import it (for :class:`StoreConfig`), never the other way round.
        """
        for module in BUILTIN_CONFIG_MODULES:
            importlib.import_module(module)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreConfig(abc.ABC):
    """Base of all store configs: a frozen, serializable description of a store.

    Subclasses are frozen ``kw_only`` dataclasses that set ``scheme`` (a
    ClassVar; a tuple of aliases is allowed through ``aliases``), implement
    :meth:`connect` and :meth:`from_locator`, and are registered automatically.

    Configs are immutable values: safe to share between threads, picklable,
    and comparable (``from_dict(to_dict(c)) == c``).
    """

    scheme: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()

    experiment_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        scheme = cls.__dict__.get("scheme")
        if scheme and not inspect.isabstract(cls):
            ConfigRegistry.register(cls)

    @classmethod
    def schemes(cls) -> tuple[str, ...]:
        return tuple(s.lower() for s in (cls.scheme, *cls.aliases) if s)

    # ------------------------------------------------------------ connecting
    @abc.abstractmethod
    def connect(self) -> Any:
        """Open the store this config describes."""

    @classmethod
    @abc.abstractmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> StoreConfig:
        """Build a config from a parsed locator (URI) plus keyword overrides."""

    # --------------------------------------------------------------- scoping
    @property
    def is_scoped(self) -> bool:
        return self.experiment_id is not None

    def scoped(self, experiment_id: str) -> StoreConfig:
        """This config scoped to ``experiment_id`` (idempotent for the same id).

        Raises:
            ScopeError: the config is already scoped to another experiment.
        """
        if self.experiment_id == experiment_id:
            return self
        if self.experiment_id is not None:
            raise ScopeError(
                f"config is already scoped to {self.experiment_id!r}; cannot rescope it to "
                f"{experiment_id!r}. Start from the collection (unscoped) config instead"
            )
        return dataclasses.replace(self, experiment_id=experiment_id)

    def unscoped(self) -> StoreConfig:
        """This config without an experiment scope (the collection)."""
        return dataclasses.replace(self, experiment_id=None)

    def for_experiment(self, experiment_id: str) -> StoreConfig:
        """Config of one experiment of this collection (same as :meth:`scoped`)."""
        return self.scoped(experiment_id)

    def list_experiments(self) -> list[str]:
        """Experiment ids in this collection.

        Raises:
            ScopeError: the config is scoped (call it on the collection config).
        """
        if self.is_scoped:
            raise ScopeError(
                f"list_experiments() needs an unscoped (collection) config, but this one is "
                f"scoped to {self.experiment_id!r}; use config.unscoped().list_experiments()"
            )
        store = self.connect()
        try:
            return list(store.list_experiments())
        finally:
            store.close()

    # --------------------------------------------------------- serialisation
    def to_dict(self, *, include_password: bool = True) -> dict[str, Any]:
        """A JSON-safe dict with a ``_type`` key naming the scheme.

        ``StoreConfig.from_dict(config.to_dict()) == config``, passwords
        included (a worker in another process needs them).  With
        ``include_password=False`` every secret is left out, for anything
        written to a file or shown: fields named like a secret (``password``,
        ``token``, ``..._secret``) are dropped, and the password of every
        locator or connection string in a text field (``user:password@``, a
        ``password=`` pair) is removed by the same rule that redacts messages
        (:func:`~metalab._internal._redact.redact`).  A worker given such a
        dict reads the password from its environment (``PGPASSWORD``,
        ``~/.pgpass`` for PostgreSQL).  Pure; thread-safe.
        """
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not include_password:
            d = without_secrets(d)
        d["_type"] = self.scheme
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> StoreConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Raises:
            ConfigError: ``_type`` is missing or unknown, or fields are invalid.
        """
        data = dict(d)
        scheme = data.pop("_type", None)
        if not scheme:
            raise ConfigError(
                "store config dict has no '_type' key; it must come from StoreConfig.to_dict()"
            )
        cls = ConfigRegistry.get(str(scheme))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown field(s) {unknown} for {cls.__name__}; valid fields: {sorted(names)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid {cls.__name__} fields: {exc}") from exc
