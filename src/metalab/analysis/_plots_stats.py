"""Replicate statistics for charts and tables: grouped mean, std, sem and 95% CI.

Vectorised with numpy (imported by the callers and passed in, so importing
this module stays light).  The 95% interval uses Student's t quantile for
``n - 1`` degrees of freedom (exact table up to 30, a Cornish-Fisher
expansion beyond, accurate to about 1e-7 there), so small replicate counts
get the wide intervals they deserve.  Pure functions; thread-safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["BANDS", "GroupStats", "band_width", "group_stats", "t_quantile_975",
           "t_quantiles_975"]

#: the bands a chart or replicate table can show around a mean
BANDS = ("std", "sem", "ci95")

#: Student's t 0.975 quantile for 1..30 degrees of freedom
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851,
    2.364624252, 2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830,
    2.160368656, 2.144786688, 2.131449546, 2.119905299, 2.109815578, 2.100922040,
    2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
    2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)
#: the normal 0.975 quantile (the limit of t as the degrees of freedom grow)
_Z975 = 1.959963984540054


def t_quantile_975(df: float) -> float:
    """Student's t quantile at 0.975 for ``df`` degrees of freedom (``nan`` if ``df < 1``)."""
    if not df >= 1:
        return math.nan
    if df <= len(_T975) and float(df).is_integer():
        return _T975[int(df) - 1]
    return _cornish_fisher(float(df))


def _cornish_fisher(v: Any) -> Any:
    """The t quantile at 0.975 by its Cornish-Fisher expansion in powers of ``1 / v``
    (a float or a numpy array of degrees of freedom)."""
    z = _Z975
    return (z + (z**3 + z) / (4 * v)
            + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


@dataclass(frozen=True)
class GroupStats:
    """Per group: ``n`` (all rows), ``n_finite`` (the values the statistics use),
    ``mean``, ``std`` (sample, ``ddof=1``; ``nan`` below 2 values); numpy arrays."""

    n: Any
    n_finite: Any
    mean: Any
    std: Any


def group_stats(np: Any, codes: Any, values: Any, n_groups: int) -> GroupStats:
    """Statistics of ``values`` (float array) per group ``codes`` (ints in ``0..n_groups-1``).

    Non-finite values (inf, NaN) count in ``n`` but not in the statistics.
    Two passes (mean, then squared deviations), so large offsets keep their
    precision.
    """
    finite = np.isfinite(values)
    n = np.bincount(codes, minlength=n_groups)
    fc = codes[finite]
    fv = values[finite]
    n_finite = np.bincount(fc, minlength=n_groups)
    sums = np.bincount(fc, weights=fv, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_finite > 0, sums / np.maximum(n_finite, 1), np.nan)
        dev = np.bincount(fc, weights=(fv - mean[fc]) ** 2, minlength=n_groups)
        std = np.where(n_finite > 1, np.sqrt(dev / np.maximum(n_finite - 1, 1)), np.nan)
    return GroupStats(n=n, n_finite=n_finite, mean=mean, std=std)


def band_width(np: Any, stats: GroupStats, band: str | None) -> Any:
    """Half-width of ``band`` around each mean (``nan`` where it needs 2 values and has fewer).

    ``None`` gives all ``nan`` (no band).
    """
    k = stats.n_finite
    if band is None:
        return np.full(len(k), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if band == "std":
            return stats.std
        sem = stats.std / np.sqrt(k)
        if band == "sem":
            return sem
        return sem * t_quantiles_975(np, k - 1)


def t_quantiles_975(np: Any, df: Any) -> Any:
    """:func:`t_quantile_975` of an integer array of degrees of freedom (vectorised)."""
    df = np.asarray(df, dtype=np.int64)
    table = np.array((math.nan, *_T975))
    small = table[np.clip(df, 0, len(_T975))]
    with np.errstate(invalid="ignore", divide="ignore"):
        large = _cornish_fisher(df.astype(float))
    return np.where(df > len(_T975), large, np.where(df >= 1, small, np.nan))
