"""Fewer points for a chart, chosen deterministically.

* :func:`minmax_indices`: a long series cut into buckets of consecutive
  points, each keeping its lowest and highest point (and the first and last
  point overall), so spikes and the global extremes survive.
* :func:`lttb_indices`: Largest-Triangle-Three-Buckets, which keeps the
  visual shape of a smooth line with one point per bucket.
* :func:`spread_indices`: evenly spaced positions (first and last kept), for
  a line of aggregated points.
* :func:`sample_indices`: a fixed-seed random sample in the original order,
  for scatters of many runs.

All return sorted numpy index arrays of at most ``max_points`` entries (numpy
is passed in by the caller).  Pure functions; thread-safe.
"""

from __future__ import annotations

from typing import Any

from metalab._errors import ValidationError

__all__ = ["lttb_indices", "minmax_indices", "sample_indices", "spread_indices"]

#: the seed of :func:`sample_indices`: the same runs give the same sample
SAMPLE_SEED = 20260
#: the fewest points a downsampled series may ask for (first, last, one bucket's min and max)
MIN_POINTS = 4


def _check(max_points: int) -> None:
    if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < MIN_POINTS:
        raise ValidationError(
            f"max_points must be an integer >= {MIN_POINTS}, got {max_points!r}")


def minmax_indices(np: Any, y: Any, max_points: int) -> Any:
    """Indices of at most ``max_points`` points of ``y``: first, last, and per bucket its min and max.

    ``y`` must be finite.  Every point is in exactly one bucket (or is the
    first or last), so the global minimum and maximum are always kept.
    """
    _check(max_points)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    edges = np.linspace(1, n - 1, buckets + 1).astype(np.int64)
    keep = [np.array([0, n - 1])]
    inner = y[1:n - 1]
    starts = edges[:-1] - 1
    sizes = np.diff(edges)
    nonempty = sizes > 0
    starts, sizes = starts[nonempty], sizes[nonempty]
    lows = np.minimum.reduceat(inner, starts)
    highs = np.maximum.reduceat(inner, starts)
    bucket_of = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(len(inner))
    # the first position of each bucket's min (max): the smallest position where it equals it
    big = np.iinfo(np.int64).max
    first_low = np.full(len(starts), big)
    np.minimum.at(first_low, bucket_of, np.where(inner == lows[bucket_of], pos, big))
    first_high = np.full(len(starts), big)
    np.minimum.at(first_high, bucket_of, np.where(inner == highs[bucket_of], pos, big))
    keep += [first_low + 1, first_high + 1]
    return np.unique(np.concatenate(keep))


def lttb_indices(np: Any, x: Any, y: Any, max_points: int) -> Any:
    """Indices chosen by Largest-Triangle-Three-Buckets (first and last point kept).

    ``x`` ascending, ``x`` and ``y`` finite.
    """
    _check(max_points)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max_points - 2
    edges = np.linspace(1, n - 1, buckets + 1).astype(np.int64)
    chosen = np.empty(max_points, dtype=np.int64)
    chosen[0], chosen[-1] = 0, n - 1
    prev = 0
    for b in range(buckets):
        lo, hi = edges[b], max(edges[b + 1], edges[b] + 1)
        nlo, nhi = (edges[b + 1], max(edges[b + 2], edges[b + 1] + 1)) if b + 2 <= buckets \
            else (n - 1, n)
        ax, ay = x[prev], y[prev]
        cx, cy = x[nlo:nhi].mean(), y[nlo:nhi].mean()
        area = np.abs((ax - cx) * (y[lo:hi] - ay) - (ax - x[lo:hi]) * (cy - ay))
        prev = lo + int(np.argmax(area))
        chosen[b + 1] = prev
    return np.unique(chosen)


def spread_indices(np: Any, n: int, max_points: int) -> Any:
    """At most ``max_points`` evenly spaced positions of ``0..n-1``, first and last included."""
    if n <= max_points:
        return np.arange(n)
    if max_points <= 1:
        return np.arange(max(max_points, 0))
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def sample_indices(np: Any, n: int, max_points: int) -> Any:
    """A fixed-seed sample of ``max_points`` positions of ``0..n-1`` (sorted); all if fewer."""
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(n, size=max_points, replace=False))
