"""Metric series and image artifacts in the notebook views of Results and Run.

:func:`run_media_html` draws a run's metric series as small inline SVG
sparklines and shows its raster image artifacts as inline ``<img>`` tags
(base64, only images up to a size cap); :func:`results_media_html` does it
for the first runs of a collection.  Everything taken from the runs (names,
values, error messages) is HTML-escaped; image bytes are embedded only when
they start with the signature of their format.  A series or image that
cannot be read is shown as such (with the reason), never left out silently.
Pure Python (no numpy); thread-safe.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

from metalab._errors import MetalabError

#: a :class:`~metalab.analysis.Run` (not imported: ``_run`` imports this module)
Run = Any

__all__ = ["results_media_html", "run_media_html", "sparkline_svg"]

#: sparkline size in pixels, and the most points one draws
SPARK_WIDTH = 160
SPARK_HEIGHT = 32
SPARK_POINTS = 80
#: the largest image inlined in a Run view, and in a Results view (bytes)
RUN_IMAGE_BYTES = 512 * 1024
RESULTS_IMAGE_BYTES = 64 * 1024
#: how many series / images one run shows
MAX_SERIES = 6
MAX_IMAGES = 4
#: how many runs of a collection show their series and images
RESULTS_RUNS = 5
#: raster formats shown inline, with the signature their bytes start with (no SVG:
#: an SVG is a document that may hold scripts)
IMAGE_SIGNATURES = {
    "png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "jpg": (b"\xff\xd8\xff", "image/jpeg"),
    "jpeg": (b"\xff\xd8\xff", "image/jpeg"),
    "gif": (b"GIF8", "image/gif"),
    "webp": (b"RIFF", "image/webp"),
}


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _thin(points: Sequence[tuple[float, float]], most: int) -> list[tuple[float, float]]:
    """At most ``most`` points: per bucket of consecutive points its lowest and highest."""
    if len(points) <= most:
        return list(points)
    buckets = max(1, most // 2)
    size = len(points) / buckets
    out: list[tuple[float, float]] = []
    for b in range(buckets):
        chunk = points[int(b * size):max(int((b + 1) * size), int(b * size) + 1)]
        lo = min(chunk, key=lambda p: p[1])
        hi = max(chunk, key=lambda p: p[1])
        out += sorted({lo, hi}, key=lambda p: p[0])
    return out


def sparkline_svg(name: str, points: Sequence[tuple[int, float]]) -> str:
    """An inline SVG line of ``points`` (finite values only; the rest are counted in its title)."""
    finite = [(float(s), float(v)) for s, v in points if math.isfinite(v)]
    dropped = len(points) - len(finite)
    if not finite:
        return f"<span>{_esc(name)}: no finite values ({len(points)} points)</span>"
    shown = _thin(finite, SPARK_POINTS)
    xs = [p[0] for p in shown]
    ys = [p[1] for p in shown]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (SPARK_WIDTH - 2) / (x1 - x0) if x1 > x0 else 0.0
    sy = (SPARK_HEIGHT - 2) / (y1 - y0) if y1 > y0 else 0.0
    coords = " ".join(
        f"{1 + (x - x0) * sx:.1f},{SPARK_HEIGHT - 1 - (y - y0) * sy:.1f}" for x, y in shown)
    last = finite[-1][1]
    title = (f"{name}: {len(points)} points, last {last:.6g}, min {y0:.6g}, max {y1:.6g}"
             + (f", {dropped} inf/NaN not drawn" if dropped else ""))
    return (f"<span title='{_esc(title)}' style='display:inline-block;margin-right:8px'>"
            f"<small>{_esc(name)}</small><br>"
            f"<svg width='{SPARK_WIDTH}' height='{SPARK_HEIGHT}' "
            f"viewBox='0 0 {SPARK_WIDTH} {SPARK_HEIGHT}' role='img'>"
            f"<polyline fill='none' stroke='#636efa' stroke-width='1.2' points='{coords}'/>"
            f"</svg><br><small>last {last:.4g}</small></span>")


def _series_html(run: Run) -> list[str]:
    listed = run._full().get("series")
    names = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    out = []
    for name in names[:MAX_SERIES]:
        try:
            out.append(sparkline_svg(name, run.metric_series(name)))
        except (MetalabError, OSError, ValueError, TypeError) as exc:
            out.append(f"<span>series {_esc(name)} unreadable: {_esc(exc)}</span>")
    if len(names) > MAX_SERIES:
        out.append(f"<span>... {len(names) - MAX_SERIES} more series</span>")
    return out


def _images_html(run: Run, cap: int) -> list[str]:
    try:
        artifacts = run.artifacts()
    except (MetalabError, OSError) as exc:
        return [f"<span>artifacts unreadable: {_esc(exc)}</span>"]
    images = [a for a in artifacts if str(a.format).lower() in IMAGE_SIGNATURES]
    out = []
    for desc in images[:MAX_IMAGES]:
        name = _esc(desc.name)
        if desc.size_bytes > cap:
            out.append(f"<span>image {name}: {desc.size_bytes} bytes, larger than the "
                       f"{cap // 1024} KiB shown inline (read it with run.artifact_path)</span>")
            continue
        signature, mime = IMAGE_SIGNATURES[str(desc.format).lower()]
        try:
            data = run._store.get_artifact_bytes(run.run_id, desc.name)
        except (MetalabError, OSError) as exc:
            out.append(f"<span>image {name} unreadable: {_esc(exc)}</span>")
            continue
        if not data.startswith(signature) or len(data) > cap:
            out.append(f"<span>image {name}: not a {_esc(desc.format)} file</span>")
            continue
        encoded = base64.b64encode(data).decode("ascii")
        out.append(f"<figure style='display:inline-block;margin:4px'>"
                   f"<img alt='{name}' src='data:{mime};base64,{encoded}' "
                   f"style='max-width:240px;max-height:240px'>"
                   f"<figcaption><small>{name}</small></figcaption></figure>")
    if len(images) > MAX_IMAGES:
        out.append(f"<span>... {len(images) - MAX_IMAGES} more images</span>")
    return out


def run_media_html(run: Run, image_cap: int = RUN_IMAGE_BYTES) -> str:
    """The series sparklines and inline images of ``run`` (``""`` if it has neither)."""
    parts = _series_html(run) + _images_html(run, image_cap)
    if not parts:
        return ""
    return f"<div class='metalab-media'>{''.join(parts)}</div>"


def results_media_html(results: Any, shown: int) -> str:
    """:func:`run_media_html` of the first runs of a Results (of the ``shown`` rows;
    smaller images), each under its run id."""
    k = min(shown, RESULTS_RUNS)
    if results._cols is not None and results._docs_ is None:
        results._cols.full_documents(0, k)  # fetch just these records (one batch)
    blocks = []
    for i in range(k):
        run = results._run_at(i)
        media = run_media_html(run, RESULTS_IMAGE_BYTES)
        if media:
            blocks.append(f"<div><small>{_esc(run.run_id)}</small>{media}</div>")
    return "".join(blocks)
