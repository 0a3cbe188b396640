"""Store locators: the strings (paths and URIs) that say where a store lives.

:func:`parse_locator` turns a locator into a :class:`LocatorInfo`, an immutable
value that store configs read in ``from_locator``.  Two families exist:

* local paths (``/abs``, ``./rel``, ``rel/x``, ``~/x``, ``C:\\x``) and
  ``file://`` URIs: scheme ``"file"``, the path expanded (``~``) and made
  absolute;
* ``scheme://[user[:password]@]host[:port]/path?key=value&...`` for every other
  scheme.  User, password, path and query values are percent-decoded; every
  query parameter is kept.  The user part ends at the last ``@`` before the
  first ``/`` (see :func:`metalab._internal._redact.split_uri`): a password
  may hold raw ``@ : ? #`` and spaces, but a ``/`` must be written ``%2F``.

A password never shows up in ``repr``/``str`` of a :class:`LocatorInfo` nor in
the error messages raised here (they show the locator through
:func:`~metalab._internal._redact.redact`, which splits it the same way).
Parsing is pure (no I/O) and thread-safe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from metalab._errors import ConfigError
from metalab._internal._redact import is_secret_key, redact, split_uri

__all__ = ["LocatorInfo", "parse_locator"]

#: the highest TCP port number
_MAX_PORT = 65535
_SCHEME_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_WINDOWS_DRIVE_RE = re.compile(r"^[A-Za-z]:([\\/]|$)")
# host[:port] (the user part is split off first, see split_uri)
_HOST_PORT_RE = re.compile(r"^(?P<host>\[[^\]/?#]*\]|[^/?#:@]*)(?::(?P<port>[^/?#@]*))?$")


@dataclass(frozen=True)
class LocatorInfo:
    """A parsed store locator (immutable).

    Every field is read-only, ``query`` included (a read-only mapping over
    the locator's own copy), so a LocatorInfo can be hashed, shared between
    threads and used as a dict key.  Use :meth:`with_query` (or build a new
    one) to change it.

    Attributes:
        scheme: lower-case scheme (``"file"`` for local paths).
        host: host name, or ``None``.
        port: port number, or ``None``.
        user: percent-decoded user name, or ``None``.
        password: percent-decoded password, or ``None`` (never shown in
            ``repr``/``str``).
        path: for ``file``: the absolute local path; otherwise the decoded URI
            path (``"/db"``), possibly empty.
        query: every query parameter, decoded (values are strings).
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a read-only view of an own copy: neither the caller's dict nor a reader
        # of this value can change it afterwards
        object.__setattr__(self, "query", MappingProxyType(dict(self.query)))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # (a read-only mapping does not pickle; rebuild from a plain copy)
        return (type(self), (self.scheme, self.host, self.port, self.user, self.password,
                             self.path, dict(self.query)))

    def __hash__(self) -> int:
        return hash(
            (self.scheme, self.host, self.port, self.user, self.password, self.path,
             tuple(sorted(self.query.items())))
        )

    @property
    def params(self) -> Mapping[str, str]:
        """The query parameters (the original metalab's name for :attr:`query`)."""
        return self.query

    def __repr__(self) -> str:
        pw = ", password='***'" if self.password is not None else ""
        return (
            f"LocatorInfo(scheme={self.scheme!r}, host={self.host!r}, port={self.port!r}, "
            f"user={self.user!r}{pw}, path={self.path!r}, query={_masked_query(self.query)!r})"
        )

    def __str__(self) -> str:
        return self.to_uri()

    def to_uri(self, *, hide_password: bool = True) -> str:
        """Render as a URI; ``parse_locator(info.to_uri(hide_password=False)) == info``.

        With ``hide_password`` (the default) the password is shown as ``***``
        and secret-looking query values too.
        """
        query = _masked_query(self.query) if hide_password else self.query
        qs = f"?{urlencode(query, quote_via=quote)}" if query else ""
        if self.scheme == "file" and not self.host:
            return f"file://{quote(self.path, safe='/:~')}{qs}"
        auth = ""
        if self.user is not None or self.password is not None:
            auth = quote(self.user or "", safe="")
            if self.password is not None:
                auth += ":" + ("***" if hide_password else quote(self.password, safe=""))
            auth += "@"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{auth}{host}{port}{quote(self.path, safe='/:~')}{qs}"

    def with_query(self, **changes: str | None) -> LocatorInfo:
        """A copy with query parameters set (``None`` removes one)."""
        query = dict(self.query)
        for key, value in changes.items():
            if value is None:
                query.pop(key, None)
            else:
                query[key] = value
        return LocatorInfo(self.scheme, self.host, self.port, self.user, self.password,
                           self.path, query)


def _masked_query(query: Mapping[str, str]) -> dict[str, str]:
    return {k: ("***" if is_secret_key(k) else v) for k, v in query.items()}


def _local_path(path: str) -> str:
    if _WINDOWS_DRIVE_RE.match(path) and os.name != "nt":
        return path  # a Windows path named on a POSIX host: keep it as given
    return os.path.abspath(os.path.expanduser(path))


def _parse_query(text: str, shown: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise ConfigError(
            f"store locator {shown!r} has a malformed query string; write it as "
            "'?key=value&key2=value2'"
        ) from exc
    for key, value in pairs:
        if key in out and out[key] != value:
            raise ConfigError(
                f"store locator {shown!r} gives query parameter {key!r} twice with different "
                "values; give it once"
            )
        out[key] = value
    return out


def parse_locator(locator: str | os.PathLike[str]) -> LocatorInfo:
    """Parse a store locator (a local path or a URI) into a :class:`LocatorInfo`.

    Raises:
        ConfigError: the locator is empty or malformed (bad port, bad query,
            a raw ``/`` in a password, a path holding ``password=...``).
            The message never contains the password.
    """
    if isinstance(locator, os.PathLike):
        locator = os.fspath(locator)
    if not isinstance(locator, str):
        raise ConfigError(
            f"a store locator must be a path or a URI string, got {type(locator).__name__}"
        )
    text = locator.strip()
    if not text:
        raise ConfigError(
            "store locator is empty; give a folder such as './experiments' or a URI such as "
            "'postgresql://user@host/db?file_root=/data'"
        )
    m = _SCHEME_RE.match(text)
    if m is None or _WINDOWS_DRIVE_RE.match(text):
        if redact(text) != text:  # a "password=..." pair: a libpq string, not a folder
            raise ConfigError(
                f"store locator {redact(text)!r} looks like a connection string with a "
                "password, not a folder; write it as 'postgresql://user@host/db?file_root="
                "/folder' and keep the password in PGPASSWORD or ~/.pgpass"
            )
        # a plain path is taken as given (a folder name may end with a space)
        return LocatorInfo(scheme="file", path=_local_path(locator))

    scheme = m.group("scheme").lower()
    shown = redact(text)
    if scheme == "file":
        return _parse_file_uri(text, m.end(), shown)
    return _parse_network_uri(text, scheme, shown)


def _parse_file_uri(text: str, scheme_end: int, shown: str) -> LocatorInfo:
    """The :class:`LocatorInfo` of a ``file://`` locator (``text[scheme_end:]`` follows
    ``file://``; ``shown``: the locator without its password, for messages)."""
    # file:///abs, file://localhost/abs; file://~/x and file://./rel are relative forms
    rest = text[scheme_end:]
    rest, _, _fragment = rest.partition("#")
    rest, _, query_text = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    query = _parse_query(query_text, shown)
    uri = split_uri(text)
    if ("@" in authority or (uri is not None and uri.userinfo is not None)
            or (":" in authority and not re.fullmatch(r"[A-Za-z]:", authority))):
        raise ConfigError(
            f"store locator {shown!r} names a user, password or port; a file:// locator "
            "takes none: write 'file:///abs/path' or the path itself"
        )
    if authority.lower() == "localhost":
        authority = ""
    local = unquote(authority + path)
    if not local:
        raise ConfigError(f"store locator {shown!r} names no path; use 'file:///abs/path'")
    return LocatorInfo(scheme="file", path=_local_path(local), query=query)


def _parse_network_uri(text: str, scheme: str, shown: str) -> LocatorInfo:
    """The :class:`LocatorInfo` of a ``scheme://user:password@host:port/path?query``
    locator (``shown``: without its password, for messages)."""
    parts = split_uri(text)
    assert parts is not None  # (text starts with scheme://)
    query = _parse_query(parts.query, shown)
    am = _HOST_PORT_RE.match(parts.authority)
    if am is None:
        raise ConfigError(
            f"store locator {shown!r} has a malformed host part; percent-encode '/' inside "
            "user names and passwords as %2F"
        )
    has_password = parts.userinfo is not None and ":" in parts.userinfo
    if "@" in parts.path or (has_password and "@" in parts.query + parts.fragment):
        # (a raw '/' in the password would put the rest of it there)
        raise ConfigError(
            f"store locator {shown!r} has an '@' after the host: percent-encode '/' inside a "
            "password as %2F (and '@' in a database name as %40)"
        )
    port = _port(am.group("port"), shown)
    host = am.group("host") or None
    if host and host.startswith("["):
        host = host[1:-1]
    user: str | None = None
    password: str | None = None
    if parts.userinfo is not None:
        user, colon, pw = parts.userinfo.partition(":")
        password = pw if colon else None
    path = parts.path
    return LocatorInfo(
        scheme=scheme,
        host=unquote(host) if host else None,
        port=port,
        user=unquote(user) if user is not None and (user or password is not None) else None,
        password=unquote(password) if password is not None else None,
        path=unquote(path),
        query=query,
    )


def _port(port_text: str | None, shown: str) -> int | None:
    """The port number of a locator (None if it names none).

    Raises:
        ConfigError: not a number between 1 and :data:`_MAX_PORT`.
    """
    if not port_text:
        return None
    if not port_text.isdigit() or not 0 < int(port_text) <= _MAX_PORT:
        # (a port that is no number is not echoed: it may be part of a password)
        number = f" {port_text}" if port_text.isdigit() else ""
        raise ConfigError(
            f"store locator {shown!r} has an invalid port{number}; "
            f"use a number between 1 and {_MAX_PORT} (and write '/' in a password as %2F)"
        )
    return int(port_text)
