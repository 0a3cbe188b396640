"""``PostgresStoreConfig``: where a PostgresStore keeps its files and its index.

Importing this module needs no PostgreSQL driver; ``connect()`` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from metalab._errors import ConfigError
from metalab._internal._names import safe_experiment_id
from metalab._internal._redact import redact, redact_locator, split_uri
from metalab.store._config import StoreConfig, load_object, parse_bool

if TYPE_CHECKING:
    from metalab.store._base import Store
    from metalab.store.locator import LocatorInfo

__all__ = ["INDEX_MODES", "STORE_CLASS", "PostgresStoreConfig"]

INDEX_MODES = ("sync", "deferred")
#: the store a config connects to, imported on first connect (the store module
#: imports this one, so this one names it instead of importing it)
STORE_CLASS = "metalab.store._postgres._store:PostgresStore"
#: locator query parameters read by metalab (all others go to the driver)
_OWN_KEYS = ("file_root", "schema", "experiment_id", "index_mode", "pool_max_size", "read_only")
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer identifiers


def _as_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from exc
    if not out > 0:
        raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
    return out


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class PostgresStoreConfig(StoreConfig):
    """A PostgresStore: a FileStore under ``file_root`` plus a PostgreSQL index.

    Attributes:
        connection_string: libpq URI or ``key=value`` string of the index
            database.  It may hold a password: it is kept in :meth:`to_dict`
            (workers need it) but never shown by ``repr``/``str`` and never
            written into files under the store.
        file_root: folder of the FileStore that holds the data (the source of
            truth); logs, artifacts and every record live there.
        experiment_id: the experiment this config is scoped to (``None``: the
            collection).
        schema: PostgreSQL schema holding the index tables (any name; it is
            always quoted).
        connect_timeout: seconds to wait for the server before the index is
            considered down.
        index_mode: ``"sync"`` (index every write right away) or
            ``"deferred"`` (workers only note what changed; the index catches
            up on :meth:`PostgresStore.reconcile`).  Deferred mode keeps
            hundreds of workers from opening database connections.
        pool_max_size: connections per process (the pool opens lazily).
        read_only: the store refuses every write
            (:class:`~metalab.store.ReadOnlyStoreError`), its files included,
            and its reads never start a catch-up of the index (when the index
            is behind they are answered from the files).  Locator:
            ``?read_only=true``.

    Raises:
        ConfigError: a field is missing or invalid (e.g. no ``file_root``).
    """

    scheme: ClassVar[str] = "postgresql"
    aliases: ClassVar[tuple[str, ...]] = ("postgres",)

    connection_string: str = ""
    file_root: str | None = None
    experiment_id: str | None = None
    schema: str = "public"
    connect_timeout: float = 5.0
    index_mode: str = "sync"
    pool_max_size: int = 2
    read_only: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.connection_string, str) or not self.connection_string.strip():
            raise ConfigError(
                "PostgresStoreConfig needs connection_string, e.g. "
                "'postgresql://user@host:5432/dbname'"
            )
        root = self.file_root
        if isinstance(root, os.PathLike):
            root = os.fspath(root)
        if not isinstance(root, str) or not root.strip():
            raise ConfigError(
                "a PostgreSQL store needs file_root, the folder where its files (the source of "
                "truth: records, logs, artifacts) live. Pass it as "
                "PostgresStoreConfig(..., file_root='/shared/experiments'), as "
                "create_store(uri, file_root=...), or in the URI as "
                f"'{redact(self.connection_string).split('?')[0]}?file_root=/shared/experiments'"
            )
        object.__setattr__(self, "file_root", os.path.abspath(os.path.expanduser(root)))
        if not isinstance(self.schema, str) or not self.schema:
            raise ConfigError(f"schema must be a non-empty name, got {self.schema!r}")
        if len(self.schema.encode()) > _MAX_IDENTIFIER_BYTES or "\x00" in self.schema:
            raise ConfigError(
                f"schema name {self.schema[:40]!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes "
                "or holds a NUL character; choose a shorter name"
            )
        if "%" in self.schema:
            # the driver reads '%' in a statement with parameters as a placeholder,
            # even inside a quoted identifier
            raise ConfigError(
                f"schema name {self.schema[:40]!r} contains '%', which PostgreSQL drivers read "
                "as a parameter placeholder; choose a name without '%'"
            )
        object.__setattr__(
            self, "connect_timeout", _as_float("connect_timeout", self.connect_timeout)
        )
        if self.index_mode not in INDEX_MODES:
            raise ConfigError(
                f"index_mode must be one of {INDEX_MODES}, got {self.index_mode!r}"
            )
        try:
            size = int(self.pool_max_size)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pool_max_size must be an integer, got {self.pool_max_size!r}") from exc
        if size < 1:
            raise ConfigError(f"pool_max_size must be >= 1, got {size}")
        object.__setattr__(self, "pool_max_size", size)
        if not isinstance(self.read_only, bool):
            raise ConfigError(
                f"PostgresStoreConfig.read_only must be True or False, got {self.read_only!r}"
            )
        if self.experiment_id is not None:
            safe_experiment_id(self.experiment_id)

    # ------------------------------------------------------------ display
    @property
    def display_target(self) -> str:
        """``host:port/dbname`` of the index, for messages (no user, no password).

        Without a dbname the database is shown as ``(default)``, never as the user
        name libpq would default it to: a mistyped string can hold password
        characters in its user part."""
        params = conninfo_params(self.connection_string)
        host = params.get("host") or "localhost"
        port = params.get("port") or "5432"
        db = params.get("dbname") or "(default)"
        return f"{host}:{port}/{db}"

    @property
    def index_key(self) -> str:
        """A short stable id of the index target (host, port, db, schema)."""
        params = conninfo_params(self.connection_string)
        ident = "|".join(
            str(params.get(k) or "") for k in ("host", "port", "dbname")
        ) + "|" + self.schema
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        parts = [f"connection_string={redact(self.connection_string)!r}"]
        for f in dataclasses.fields(self):
            if f.name != "connection_string":
                parts.append(f"{f.name}={getattr(self, f.name)!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__

    # ------------------------------------------------------------ connect
    def connect(self) -> Store:
        """Open the :class:`~metalab.store.PostgresStore`.  Never contacts the database
        (the index connects lazily)."""
        store_class: Callable[[PostgresStoreConfig], Store] = load_object(STORE_CLASS)
        return store_class(self)

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> PostgresStoreConfig:
        """Build from ``postgresql://user@host:port/db?file_root=/x&schema=s``.

        ``file_root``, ``schema``, ``experiment_id``, ``index_mode``,
        ``pool_max_size``, ``read_only`` and ``connect_timeout`` are read by metalab (keywords
        win over the query); every other query parameter (``sslmode``,
        ``application_name``...) stays in the connection string for the driver.

        Raises:
            ConfigError: missing ``file_root``, unknown keywords, bad values.
        """
        query = dict(info.query)
        own: dict[str, Any] = {k: query.pop(k) for k in _OWN_KEYS if k in query}
        if "connect_timeout" in query:
            own["connect_timeout"] = query["connect_timeout"]
        names = {f.name for f in dataclasses.fields(cls)} - {"connection_string"}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ConfigError(
                f"PostgresStoreConfig has no option(s) {unknown}; valid: {sorted(names)}"
            )
        for key, value in kwargs.items():
            if value is not None:
                own[key] = value
        clean = type(info)(
            info.scheme, info.host, info.port, info.user, info.password, info.path, query
        )
        conn = clean.to_uri(hide_password=False)
        if "pool_max_size" in own:
            own["pool_max_size"] = _as_int("pool_max_size", own["pool_max_size"])
        if isinstance(own.get("read_only"), str):
            own["read_only"] = parse_bool("read_only", own["read_only"])
        return cls(connection_string=conn, **own)


def _as_int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc


def conninfo_params(conninfo: str) -> dict[str, str]:
    """Parse a libpq URI or ``key=value`` string without the driver (for messages/keys).

    Only the keys ``host``, ``port``, ``dbname``, ``user`` are guaranteed; a
    string that cannot be parsed gives ``{}``.  A URI is split as
    :func:`~metalab._internal._redact.split_uri` does and the password of its
    user part is not read, so one with ``@ ? #`` or a raw ``/`` cannot put
    pieces of it in the host or dbname; ``key=value`` values may be quoted
    (``'...'`` with ``\\'`` and ``\\\\`` escapes, as libpq reads them).
    """
    text = conninfo.strip()
    out: dict[str, str] = {}
    if split_uri(text) is not None:
        text = redact_locator(text, remove=True)
        try:
            parts = urlsplit(text)
            out.update(dict(parse_qsl(parts.query)))
            if parts.hostname:
                out.setdefault("host", parts.hostname)
            if parts.port:
                out.setdefault("port", str(parts.port))
            if parts.username:
                out.setdefault("user", parts.username)
            db = parts.path.lstrip("/")
            if db:
                out.setdefault("dbname", db)
        except ValueError:
            return {}
        return out
    for m in _KV_PAIR.finditer(text):
        value = m.group("value")
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith("'") else value[1:])
        out[m.group("key")] = value
    return out


_KV_PAIR = re.compile(r"(?P<key>[A-Za-z_]\w*)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|\S*)")
