"""Keep secrets out of reprs, logs and errors: the one place that hides passwords.

:func:`split_uri` finds the parts of a locator the way
:func:`metalab.store.parse_locator` reads them (it uses this function), so the
password :func:`redact` hides is exactly the one the store would use.  Text
that does not split cleanly (a malformed locator, or one whose password holds
a raw ``/``) loses its whole user part instead: everything between ``://``
and the last ``@`` of the locator.  Pure functions, thread-safe.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["UriParts", "is_secret_key", "redact", "redact_locator", "split_uri", "without_secrets"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_NAME = r"[A-Za-z0-9_]*(?:password|passwd|pwd|secret|token)"
# A secret key=value pair of a query string or a libpq "key=value ..." string.
# A quoted value ends at the first quote (or quote escaped by a repr) that is
# followed by another "key=" or the end of the line, so a quote escaped inside
# the password does not end it; with no such end, the rest of the line is hidden.
_VALUE_END = r"(?=\s+[A-Za-z_][\w.]*\s*=|[ \t]*(?:$|\n))"
_SECRET_KV = re.compile(
    r"(?P<pre>(?<![A-Za-z0-9_])" + _SECRET_NAME + r"\s*=\s*)(?P<value>"
    r"\\?'.*?\\?'" + _VALUE_END + r"|\\?\".*?\\?\"" + _VALUE_END
    + r"|\\?['\"][^\n]*|[^\s&;]*)",
    re.IGNORECASE | re.MULTILINE,
)
_GLUE = frozenset(string.ascii_letters + string.digits + "+.-:@/%_")
_HOST_PORT = re.compile(r"^(?:\[[^\]/?#@]*\]|[^/?#:@\[\]]*)(?::(?P<port>[^/?#@]*))?$")


@dataclass(frozen=True)
class UriParts:
    """Where the parts of ``scheme://[userinfo@]host[:port][/path][?query][#fragment]`` are.

    The user part ends at the last ``@`` before the first ``/`` after
    ``://`` (so a password may hold raw ``@ : ? #`` and spaces, not ``/``).
    Texts are raw (still percent-encoded).  ``start``: index just after
    ``://``; ``at``: index of the ``@`` ending the user part, -1 without one.
    """

    scheme: str
    start: int
    at: int
    userinfo: str | None
    authority: str
    path: str
    query: str
    fragment: str

    @property
    def clean(self) -> bool:
        """The split is certain: a well-formed ``host[:port]`` (numeric port in
        range) and no ``@`` after the user part (one in the path or query
        suggests a password with a raw ``/``)."""
        m = _HOST_PORT.match(self.authority)
        if m is None or "@" in self.path + self.query + self.fragment:
            return False
        port = m.group("port")
        return not port or (port.isdigit() and 0 < int(port) < 65536)


def is_secret_key(name: str) -> bool:
    """Is a query / ``key=value`` name one whose value is a secret (``password``,
    ``sslpassword``, ``token``, ``client_secret``...)?"""
    return re.fullmatch(_SECRET_NAME, name, re.IGNORECASE) is not None


def split_uri(text: str) -> UriParts | None:
    """The parts of a ``scheme://...`` text (None for anything else)."""
    m = _SCHEME.match(text)
    if m is None:
        return None
    start = m.end()
    rest = text[start:]
    slash = rest.find("/")
    at = rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    tail = rest[at + 1:]
    tail, _, fragment = tail.partition("#")
    tail, _, query = tail.partition("?")
    slash = tail.find("/")
    authority, path = (tail, "") if slash < 0 else (tail[:slash], tail[slash:])
    return UriParts(
        scheme=text[: start - 3], start=start, at=start + at if at >= 0 else -1,
        userinfo=rest[:at] if at >= 0 else None, authority=authority, path=path,
        query=query, fragment=fragment,
    )


def redact_locator(text: str, *, remove: bool = False) -> str:
    """One locator ``text`` (``scheme://...``) with the password of its user part
    hidden as ``***`` (``remove``: taken out with its ``:``); a user part whose
    end is unclear is hidden (removed) whole.  Other text is returned as it is;
    query parameters are left alone (see :func:`redact`)."""
    parts = split_uri(text)
    if parts is None:
        return text
    start = parts.start
    if parts.clean:
        if parts.userinfo is None or ":" not in parts.userinfo:
            return text
        colon = start + parts.userinfo.index(":")
        return text[:colon] + ("" if remove else ":***") + text[parts.at:]
    # not certain where the password ends: hide the whole user part (when there
    # can be a password: a ':' before the last '@')
    last_at = text.rfind("@", start)
    if last_at >= 0:
        if ":" not in text[start:last_at]:
            return text
        return text[:start] + ("" if remove else "***@") + text[last_at + 1:]
    # no '@' at all: a "port" that is no number may be a password without a host
    colon = parts.authority.rfind(":")
    if colon >= 0 and not parts.authority[colon + 1:].isdigit():
        end = start + len(parts.authority)
        return text[:start + colon] + ("" if remove else ":***") + text[end:]
    return text


def _candidates(text: str) -> list[tuple[int, int]]:
    """Spans of the locators in free text: from ``scheme://`` to the last matching
    quote on the line when a quote opens it, else to the end of the line.  A
    ``scheme://`` inside an earlier span (a password may hold one) or glued to
    other characters starts nothing."""
    spans: list[tuple[int, int]] = []
    for m in _SCHEME.finditer(text):
        begin = m.start()
        if (spans and begin < spans[-1][1]) or (begin and text[begin - 1] in _GLUE):
            continue
        line_end = text.find("\n", begin)
        end = len(text) if line_end < 0 else line_end
        quote = text[begin - 1] if begin and text[begin - 1] in "'\"" else ""
        if quote:
            close = text.rfind(quote, begin, end)
            if close >= 0:
                end = close
        spans.append((begin, end))
    return spans


def redact(text: str, *, remove: bool = False) -> str:
    """``text`` with every password hidden as ``***`` (``remove``: taken out).

    Covers locators anywhere in the text (``scheme://user:password@host...``,
    the password raw or percent-encoded, with ``@ : ? # %`` or spaces in it)
    and secret ``key=value`` pairs (``password=``, ``token=``..., in query
    strings and libpq ``key=value`` strings, quoted or not).  ``remove`` (for
    configs sent to workers, which read the password from their environment)
    drops the password and its ``:``, or a whole unclear user part, and the
    secret pairs.
    """
    out: list[str] = []
    pos = 0
    for begin, end in _candidates(text):
        out.append(text[pos:begin])
        out.append(redact_locator(text[begin:end], remove=remove))
        pos = end
    out.append(text[pos:])
    text = "".join(out)
    if remove:
        text = _SECRET_KV.sub("", text)
        text = re.sub(r"([?&;])[&;]+", r"\1", text)
        return text.rstrip("?&; ")
    return _SECRET_KV.sub(lambda m: f"{m.group('pre')}***", text)


def without_secrets(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` (a config's fields) with every secret left out.

    Keys named like a secret (:func:`is_secret_key`) are dropped, and every
    text value loses its passwords (:func:`redact` with ``remove=True``).
    For config dicts written to files or sent to workers that read their
    passwords from the environment.  Pure.
    """
    return {
        key: redact(value, remove=True) if isinstance(value, str) else value
        for key, value in fields.items()
        if not is_secret_key(key)
    }
