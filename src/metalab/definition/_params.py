"""Parameter sources: which parameter dicts an experiment runs.

Every source is an indexable, finite sequence of :class:`ParamCase`:
``len(source)``, ``source[i]`` in O(1) (negative indices allowed, ``IndexError``
out of range) and iteration in index order.  ``source[i]`` always builds a fresh
case (deep-copied params), so an operation that mutates its params cannot
change later cases.  Sources are immutable after construction and safe to share
between threads and to pickle.

* :func:`grid` - cartesian product of value lists (keys sorted; the last key
  varies fastest).
* :func:`random` - ``n_trials`` samples from a space of distributions; trial
  ``i`` is drawn from its own RNG seeded from ``(seed, i)``, so any trial can be
  rebuilt alone, on any machine.
* :func:`manual` - an explicit list of dicts.

``source.to_manifest()`` returns a JSON-friendly dict and
:func:`source_from_manifest` rebuilds an equal source from it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import random as _random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from metalab._errors import ValidationError
from metalab.definition._canonical import fingerprint

__all__ = [
    "Distribution",
    "GridSource",
    "ManualSource",
    "ParamCase",
    "ParamSource",
    "RandomSource",
    "choice",
    "grid",
    "loguniform",
    "loguniform_int",
    "manual",
    "randint",
    "random",
    "source_from_manifest",
    "uniform",
]


@dataclasses.dataclass(frozen=True)
class ParamCase:
    """One parameter dict with its id and tags.

    ``case_id`` defaults to ``fingerprint(params)``; building a case with
    params that have no canonical encoding (NaN, unsupported type) raises
    :class:`~metalab.CanonicalizationError` naming the key (``params.lr``).
    """

    params: dict[str, Any]
    case_id: str = ""
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.params, dict):
            raise ValidationError(
                f"ParamCase params must be a dict, got {type(self.params).__name__}"
            )
        if not self.case_id:
            object.__setattr__(self, "case_id", fingerprint(self.params, path="params"))
        object.__setattr__(self, "tags", tuple(self.tags))


class ParamSource(ABC):
    """Finite, indexable sequence of :class:`ParamCase` (see the module docstring).

    Subclasses implement ``__len__``, ``_case(i)`` (``0 <= i < len``) and
    ``to_manifest()``.
    """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _case(self, index: int) -> ParamCase: ...

    @abstractmethod
    def to_manifest(self) -> dict[str, Any]:
        """JSON-friendly description that :func:`source_from_manifest` reverses."""

    def to_manifest_dict(self) -> dict[str, Any]:
        """The original metalab's name for :meth:`to_manifest` (same dict)."""
        return self.to_manifest()

    def __getitem__(self, index: int) -> ParamCase:
        """Return case ``index`` in O(1).

        Raises:
            IndexError: ``index`` outside ``[-len, len)``.
            TypeError: ``index`` is not an int.
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"param source index must be an int, got {type(index).__name__}")
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"param case index out of range (source has {n} cases)")
        return self._case(index)

    def __iter__(self) -> Iterator[ParamCase]:
        for i in range(len(self)):
            yield self._case(i)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamSource):
            return NotImplemented
        return type(self) is type(other) and self.to_manifest() == other.to_manifest()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} cases)"


# --------------------------------------------------------------------------- grid


def _check_param_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError(f"{what}: parameter names must be non-empty strings, got {key!r}")
    return key


class GridSource(ParamSource):
    """Cartesian product of value lists; built by :func:`grid`."""

    def __init__(self, axes: Mapping[str, Sequence[Any]]) -> None:
        checked: dict[str, list[Any]] = {}
        for key in sorted(axes):
            _check_param_key(key, "grid()")
            values = axes[key]
            if isinstance(values, str | bytes):
                raise ValidationError(
                    f"grid({key}={values!r}): values must be a list or tuple; "
                    f"to use a single value wrap it in a list: grid({key}=[{values!r}])"
                )
            if not isinstance(values, list | tuple | range):
                raise ValidationError(
                    f"grid({key}=...): values must be a list or tuple, got "
                    f"{type(values).__name__}; wrap a single value in a list: {key}=[value]"
                )
            if len(values) == 0:
                raise ValidationError(
                    f"grid({key}=[]): the value list is empty, which would give zero runs; "
                    "give at least one value or drop the key"
                )
            checked[key] = list(values)
        self._keys = tuple(checked)
        self._values = tuple(checked[k] for k in self._keys)
        self._len = math.prod(len(v) for v in self._values)

    def __len__(self) -> int:
        return self._len

    def _case(self, index: int) -> ParamCase:
        params: dict[str, Any] = {}
        for key, values in zip(reversed(self._keys), reversed(self._values), strict=True):
            index, digit = divmod(index, len(values))
            params[key] = copy.deepcopy(values[digit])
        return ParamCase(dict(sorted(params.items())))

    def to_manifest(self) -> dict[str, Any]:
        return {
            "type": "grid",
            "axes": {k: copy.deepcopy(v) for k, v in zip(self._keys, self._values, strict=True)},
            "total_cases": self._len,
        }


def grid(**lists: Sequence[Any]) -> GridSource:
    """Every combination of the given value lists, keys in sorted order.

    ``grid(lr=[0.1, 0.01], depth=(2, 4))`` has 4 cases; the last key (sorted)
    varies fastest.  ``grid()`` has exactly one case with empty params.

    Raises:
        ValidationError: a value is not a list/tuple (a bare string included:
            wrap it in a list) or is an empty list.
    """
    return GridSource(lists)


# ---------------------------------------------------------------- distributions


def _finite_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValidationError(f"{what} must be finite, got {value!r}")
    return value


class Distribution(ABC):
    """A sampling rule for :func:`random`."""

    kind: str = ""

    @abstractmethod
    def sample(self, rng: _random.Random) -> Any:
        """Draw one value using ``rng`` (deterministic for a given rng state)."""

    @abstractmethod
    def to_manifest(self) -> dict[str, Any]: ...

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Distribution):
            return NotImplemented
        return self.to_manifest() == other.to_manifest()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_manifest().items() if k != "dist")
        return f"{self.kind}({args})"


class _Uniform(Distribution):
    kind = "uniform"

    def __init__(self, lo: float, hi: float) -> None:
        self.lo = _finite_number(lo, "uniform(lo, hi): lo")
        self.hi = _finite_number(hi, "uniform(lo, hi): hi")
        if self.lo >= self.hi:
            raise ValidationError(f"uniform(lo={lo!r}, hi={hi!r}): lo must be smaller than hi")

    def sample(self, rng: _random.Random) -> float:
        return rng.uniform(self.lo, self.hi)

    def to_manifest(self) -> dict[str, Any]:
        return {"dist": self.kind, "lo": self.lo, "hi": self.hi}


class _LogUniform(Distribution):
    kind = "loguniform"

    def __init__(self, lo: float, hi: float) -> None:
        self.lo = _finite_number(lo, "loguniform(lo, hi): lo")
        self.hi = _finite_number(hi, "loguniform(lo, hi): hi")
        if self.lo <= 0 or self.hi <= 0:
            raise ValidationError(
                f"loguniform(lo={lo!r}, hi={hi!r}): both bounds must be positive; "
                "use uniform() for ranges that include zero or negative numbers"
            )
        if self.lo >= self.hi:
            raise ValidationError(f"loguniform(lo={lo!r}, hi={hi!r}): lo must be smaller than hi")

    def sample(self, rng: _random.Random) -> float:
        value = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        return min(max(value, self.lo), self.hi)

    def to_manifest(self) -> dict[str, Any]:
        return {"dist": self.kind, "lo": self.lo, "hi": self.hi}


def _check_int_bounds(what: str, lo: object, hi: object) -> None:
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValidationError(f"{what}(lo, hi): {name} must be an int, got {v!r}")


class _LogUniformInt(_LogUniform):
    kind = "loguniform_int"

    def __init__(self, lo: int, hi: int) -> None:
        _check_int_bounds("loguniform_int", lo, hi)
        super().__init__(lo, hi)

    def sample(self, rng: _random.Random) -> int:
        value = round(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return int(min(max(value, self.lo), self.hi))


class _RandInt(Distribution):
    kind = "randint"

    def __init__(self, lo: int, hi: int) -> None:
        _check_int_bounds("randint", lo, hi)
        if lo >= hi:
            raise ValidationError(
                f"randint(lo={lo!r}, hi={hi!r}): lo must be smaller than hi "
                "(both bounds are inclusive); for a constant, put the value itself in the space"
            )
        self.lo, self.hi = int(lo), int(hi)

    def sample(self, rng: _random.Random) -> int:
        return rng.randint(self.lo, self.hi)

    def to_manifest(self) -> dict[str, Any]:
        return {"dist": self.kind, "lo": self.lo, "hi": self.hi}


class _Choice(Distribution):
    kind = "choice"

    def __init__(self, options: Sequence[Any]) -> None:
        if isinstance(options, str | bytes) or not isinstance(options, list | tuple | range):
            raise ValidationError(
                f"choice(options): options must be a list or tuple, got {type(options).__name__}"
            )
        if len(options) == 0:
            raise ValidationError("choice(options): options must not be empty")
        self.options = copy.deepcopy(list(options))

    def sample(self, rng: _random.Random) -> Any:
        return copy.deepcopy(self.options[rng.randrange(len(self.options))])

    def to_manifest(self) -> dict[str, Any]:
        return {"dist": self.kind, "options": copy.deepcopy(self.options)}


def uniform(lo: float, hi: float) -> Distribution:
    """Float drawn uniformly from ``[lo, hi]``.  Raises ValidationError if ``lo >= hi``."""
    return _Uniform(lo, hi)


def loguniform(lo: float, hi: float) -> Distribution:
    """Float whose log is uniform in ``[log lo, log hi]``; needs ``0 < lo < hi``."""
    return _LogUniform(lo, hi)


def loguniform_int(lo: int, hi: int) -> Distribution:
    """Integer drawn log-uniformly from ``[lo, hi]`` and rounded (both bounds inclusive).

    Needs ints with ``0 < lo < hi``; ``loguniform_int(16, 1024)`` suits batch
    sizes or layer widths.  Raises ValidationError otherwise.
    """
    return _LogUniformInt(lo, hi)


def randint(lo: int, hi: int) -> Distribution:
    """Integer drawn uniformly from ``lo..hi``, **both inclusive**; needs ``lo < hi``."""
    return _RandInt(lo, hi)


def choice(options: Sequence[Any]) -> Distribution:
    """One of ``options`` (a non-empty list or tuple), each equally likely."""
    return _Choice(options)


def _distribution_from_manifest(d: Mapping[str, Any]) -> Distribution:
    kind = d.get("dist")
    if kind == "uniform":
        return _Uniform(d["lo"], d["hi"])
    if kind == "loguniform":
        return _LogUniform(d["lo"], d["hi"])
    if kind == "loguniform_int":
        return _LogUniformInt(d["lo"], d["hi"])
    if kind == "randint":
        return _RandInt(d["lo"], d["hi"])
    if kind == "choice":
        return _Choice(d["options"])
    raise ValidationError(f"unknown distribution {kind!r} in a random() manifest")


# ------------------------------------------------------------------------- random


def _trial_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"metalab.random:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class RandomSource(ParamSource):
    """``n_trials`` reproducible samples from a space; built by :func:`random`.

    Trial ``i`` uses ``random.Random(s)`` with ``s`` the first 8 bytes (big
    endian) of ``sha256(f"metalab.random:{seed}:{i}")``, sampling keys in sorted
    order.  Constants (non-distribution values) are copied as they are.
    """

    def __init__(self, space: Mapping[str, Any], n_trials: int, seed: int = 0) -> None:
        if not isinstance(space, Mapping):
            raise ValidationError(
                f"random(space, ...): space must be a dict, got {type(space).__name__}"
            )
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ValidationError(f"random(): n_trials must be an int >= 1, got {n_trials!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValidationError(f"random(): seed must be an int, got {seed!r}")
        for key in space:
            _check_param_key(key, "random()")
        self._space: dict[str, Any] = {
            k: (space[k] if isinstance(space[k], Distribution) else copy.deepcopy(space[k]))
            for k in sorted(space)
        }
        self._n = n_trials
        self._seed = seed

    @property
    def seed(self) -> int:
        return self._seed

    def __len__(self) -> int:
        return self._n

    def _case(self, index: int) -> ParamCase:
        rng = _random.Random(_trial_seed(self._seed, index))
        params: dict[str, Any] = {}
        for key, spec in self._space.items():
            params[key] = (
                spec.sample(rng) if isinstance(spec, Distribution) else copy.deepcopy(spec)
            )
        return ParamCase(params, tags=(f"trial_{index}",))

    def to_manifest(self) -> dict[str, Any]:
        space = {
            k: (v.to_manifest() if isinstance(v, Distribution) else {"const": copy.deepcopy(v)})
            for k, v in self._space.items()
        }
        return {"type": "random", "space": space, "n_trials": self._n, "seed": self._seed}


def random(space: Mapping[str, Any], n_trials: int, seed: int = 0) -> RandomSource:
    """``n_trials`` samples from ``space`` (values: distributions or constants).

    Example: ``random({"lr": loguniform(1e-4, 1e-1), "opt": choice(["adam", "sgd"]),
    "epochs": 10}, n_trials=20, seed=1)``.  Case ``i`` is tagged ``trial_{i}``.

    Raises:
        ValidationError: ``space`` not a dict, ``n_trials < 1``, non-int seed.
    """
    return RandomSource(space, n_trials, seed)


# ------------------------------------------------------------------------- manual


class ManualSource(ParamSource):
    """An explicit list of param dicts; built by :func:`manual`."""

    def __init__(
        self, cases: Sequence[Mapping[str, Any]], tags: Sequence[str] | None = None
    ) -> None:
        self._tags = _check_tags(tags)
        if isinstance(cases, str | bytes | Mapping) or not isinstance(cases, list | tuple):
            raise ValidationError(
                f"manual(cases): cases must be a list of dicts, got {type(cases).__name__}"
            )
        checked: list[dict[str, Any]] = []
        for i, case in enumerate(cases):
            if not isinstance(case, Mapping):
                raise ValidationError(
                    f"manual(cases): case {i} must be a dict, got {type(case).__name__}"
                )
            for key in case:
                _check_param_key(key, f"manual(cases): case {i}")
            checked.append(copy.deepcopy(dict(case)))
        self._cases = checked

    def __len__(self) -> int:
        return len(self._cases)

    def _case(self, index: int) -> ParamCase:
        return ParamCase(
            copy.deepcopy(self._cases[index]), tags=(*self._tags, f"manual_{index}")
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "manual", "cases": copy.deepcopy(self._cases)}
        if self._tags:
            out["tags"] = list(self._tags)
        return out


def _check_tags(tags: Sequence[str] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise ValidationError(
            f"manual(cases, tags=...): tags must be a list of strings, got {tags!r}"
        )
    if not all(isinstance(t, str) and t for t in tags):
        raise ValidationError(f"manual(cases, tags=...): every tag must be a non-empty string, got {tags!r}")
    return tuple(tags)


def manual(cases: Sequence[Mapping[str, Any]], tags: Sequence[str] | None = None) -> ManualSource:
    """Run exactly the given param dicts, in order.

    Case ``i`` is tagged with ``tags`` (given to every case) followed by
    ``manual_{i}``: ``manual([{"lr": 0.1}], tags=["baseline"])[0].tags ==
    ("baseline", "manual_0")``.

    Raises:
        ValidationError: ``cases`` is not a list of dicts with string keys, or
            ``tags`` is not a list of non-empty strings.
    """
    return ManualSource(cases, tags)


# ----------------------------------------------------------------------- manifest


def source_from_manifest(d: Mapping[str, Any]) -> ParamSource:
    """Rebuild a source from ``source.to_manifest()`` (also after a JSON round trip).

    Raises:
        ValidationError: unknown ``type`` or malformed manifest.
    """
    if not isinstance(d, Mapping):
        raise ValidationError(f"a param source manifest must be a dict, got {type(d).__name__}")
    kind = d.get("type")
    try:
        if kind == "grid":
            return GridSource(d["axes"])
        if kind == "random":
            space = {
                k: (v["const"] if "const" in v else _distribution_from_manifest(v))
                for k, v in d["space"].items()
            }
            return RandomSource(space, d["n_trials"], d.get("seed", 0))
        if kind == "manual":
            return ManualSource(d["cases"], d.get("tags"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(
            f"malformed {kind} param source manifest ({type(exc).__name__}: {exc}); "
            "it must be a dict produced by source.to_manifest()"
        ) from exc
    raise ValidationError(
        f"unknown param source type {kind!r} in manifest; expected 'grid', 'random' or 'manual'"
    )
