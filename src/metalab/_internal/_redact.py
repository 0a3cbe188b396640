"""Keep secrets out of reprs, logs and errors."""

from __future__ import annotations

import re

__all__ = ["redact"]

_PW_IN_URI = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)")
_PW_KV = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^\s&;]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace passwords in URIs (``user:pw@host``) and ``password=...`` pairs by ``***``."""
    text = _PW_IN_URI.sub(lambda m: f"{m.group('pre')}***{m.group('post')}", text)
    return _PW_KV.sub(lambda m: f"{m.group('pre')}***", text)
