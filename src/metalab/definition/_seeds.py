"""Seed plans and per-run seed bundles.

A :class:`SeedPlan` (``seeds(base, replicates)``) lists ``replicates`` bundles
``SeedBundle(base, 0) .. SeedBundle(base, replicates - 1)``.  A bundle derives
independent named streams: ``bundle.derive("init")`` is the first 8 bytes of
``sha256(f"metalab.seed:{root_seed}:{replicate_index}:{name}")`` read big-endian
and shifted right by one bit (a 63-bit non-negative int).  It depends only on
these three values, so it is the same on every platform and Python version.

:meth:`SeedBundle.for_preprocessing` gives a bundle for work shared by every
run (data preparation, splits): its streams hash
``f"metalab.seed.preprocessing:{root_seed}:{name}"``, a text no replicate's
stream ever hashes, so they never coincide with a run's streams.

Everything here is immutable, picklable and thread-safe (each ``rng()`` call
returns a new generator).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

from metalab._errors import MissingDependencyError, ValidationError

__all__ = ["SeedBundle", "SeedPlan", "seeds"]

#: the stream namespace of :meth:`SeedBundle.for_preprocessing` bundles
PREPROCESSING = "preprocessing"
#: numpy's legacy seeding takes a 32-bit seed (``numpy_seed``)
_NUMPY_SEED_MODULUS = 2**32


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SeedBundle:
    """Seeds for one replicate: ``root_seed`` plus ``replicate_index``.

    Raises:
        ValidationError: ``root_seed`` not an int, or ``replicate_index`` not an
            int >= 0.
    """

    root_seed: int
    replicate_index: int = 0
    #: ``None`` for a run's bundle; ``"preprocessing"`` for :meth:`for_preprocessing`
    purpose: str | None = None

    def __post_init__(self) -> None:
        if self.purpose not in (None, PREPROCESSING):
            raise ValidationError(
                f"SeedBundle purpose must be None or {PREPROCESSING!r}, got {self.purpose!r}; "
                "use SeedBundle.for_preprocessing(base) for shared preprocessing"
            )
        if not _is_int(self.root_seed):
            raise ValidationError(f"root_seed must be an int, got {self.root_seed!r}")
        if not _is_int(self.replicate_index) or self.replicate_index < 0:
            raise ValidationError(
                f"replicate_index must be an int >= 0, got {self.replicate_index!r}"
            )

    def derive(self, name: str) -> int:
        """A 63-bit seed for the stream ``name`` (stable everywhere, see module doc)."""
        if not isinstance(name, str):
            raise ValidationError(f"seed stream name must be a string, got {name!r}")
        if self.purpose is None:
            text = f"metalab.seed:{self.root_seed}:{self.replicate_index}:{name}"
        else:
            text = f"metalab.seed.{self.purpose}:{self.root_seed}:{name}"
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    def rng(self, name: str = "default") -> random.Random:
        """A new ``random.Random`` seeded with ``derive(name)``."""
        return random.Random(self.derive(name))

    def numpy(self, name: str = "default") -> Any:
        """A new ``numpy.random.Generator`` seeded with ``derive(name)``.

        Raises:
            MissingDependencyError: numpy is not installed.
        """
        try:
            import numpy as np
        except ImportError as exc:
            raise MissingDependencyError("numpy", "numpy", "SeedBundle.numpy()") from exc
        return np.random.default_rng(self.derive(name))

    def numpy_seed(self, name: str = "default") -> int:
        """``derive(name)`` reduced to 32 bits, for APIs that take a 32-bit seed."""
        return self.derive(name) % _NUMPY_SEED_MODULUS

    @classmethod
    def for_preprocessing(cls, base: int) -> SeedBundle:
        """A bundle for preprocessing shared by all runs of an experiment with root seed ``base``.

        Its streams (``derive``, ``rng``, ``numpy``) are reproducible from
        ``base`` alone and differ from the streams of every replicate of
        ``seeds(base, n)``, so a split or a shuffle done before the runs never
        reuses a run's randomness.  Put ``base`` in the name of a cached
        preprocessed file so a new base recomputes it.

        Raises:
            ValidationError: ``base`` is not an int.
        """
        return cls(base, 0, PREPROCESSING)

    def to_dict(self) -> dict[str, Any]:
        """``{"root_seed": ..., "replicate_index": ...}`` (the bundle's identity).

        A preprocessing bundle adds ``"purpose": "preprocessing"``.
        """
        out: dict[str, Any] = {"root_seed": self.root_seed, "replicate_index": self.replicate_index}
        if self.purpose is not None:
            out["purpose"] = self.purpose
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeedBundle:
        """Inverse of :meth:`to_dict`.  Raises ValidationError on a malformed dict."""
        try:
            return cls(d["root_seed"], d.get("replicate_index", 0), d.get("purpose"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValidationError(
                f"a seed bundle dict needs 'root_seed' and 'replicate_index', got {d!r}"
            ) from exc


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """``replicates`` seed bundles sharing the root seed ``base``."""

    base: int
    replicates: int = 1

    def __post_init__(self) -> None:
        if not _is_int(self.base):
            raise ValidationError(f"seeds(base, ...): base must be an int, got {self.base!r}")
        if not _is_int(self.replicates) or self.replicates < 1:
            raise ValidationError(
                f"seeds(..., replicates): replicates must be an int >= 1, got {self.replicates!r}"
            )

    def __len__(self) -> int:
        return self.replicates

    def __getitem__(self, index: int) -> SeedBundle:
        """Bundle ``index`` (negative allowed).  Raises IndexError out of range."""
        if not _is_int(index):
            raise TypeError(f"seed plan index must be an int, got {type(index).__name__}")
        if index < 0:
            index += self.replicates
        if not 0 <= index < self.replicates:
            raise IndexError(f"seed index out of range (plan has {self.replicates} replicates)")
        return SeedBundle(self.base, index)

    def __iter__(self) -> Iterator[SeedBundle]:
        for i in range(self.replicates):
            yield SeedBundle(self.base, i)

    @property
    def base_seed(self) -> int:
        """The root seed of every bundle (the original metalab's name for :attr:`base`)."""
        return self.base

    def to_manifest(self) -> dict[str, Any]:
        return {"type": "seeds", "base": self.base, "replicates": self.replicates}

    def to_manifest_dict(self) -> dict[str, Any]:
        """The original metalab's name for :meth:`to_manifest` (same dict)."""
        return self.to_manifest()

    @classmethod
    def from_manifest_dict(cls, d: Mapping[str, Any]) -> SeedPlan:
        """The original metalab's name for :meth:`from_manifest`."""
        return cls.from_manifest(d)

    @classmethod
    def from_manifest(cls, d: Mapping[str, Any]) -> SeedPlan:
        """Inverse of :meth:`to_manifest`.  Raises ValidationError on a malformed dict."""
        try:
            return cls(d["base"], d.get("replicates", 1))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValidationError(
                f"a seed plan manifest needs 'base' and 'replicates', got {d!r}"
            ) from exc


def seeds(base: int, replicates: int = 1) -> SeedPlan:
    """Seed plan with ``replicates`` bundles (replicate indices ``0..replicates-1``).

    Raises:
        ValidationError: ``base`` not an int, or ``replicates`` not an int >= 1.
    """
    return SeedPlan(base, replicates)
