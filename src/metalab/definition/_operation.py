"""Operations: the user function an experiment runs once per (params, seed).

An operation declares the inputs it wants by argument name, chosen from
``context``, ``params``, ``seeds``, ``runtime`` and ``capture``; the runner
passes exactly those.  Operations are referenced by ``"module:qualname"`` so a
worker process (or another machine) can import them; they pickle by that
reference.  ``code_hash`` (sha256 of the source) is recorded for provenance
only: it is not part of run ids.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any, overload

from metalab._errors import OperationImportError, ValidationError
from metalab.definition._canonical import FINGERPRINT_LENGTH

__all__ = ["ALLOWED_ARGS", "Operation", "load_operation", "operation"]

ALLOWED_ARGS = frozenset({"context", "params", "seeds", "runtime", "capture"})
_ALLOWED_TEXT = ", ".join(sorted(ALLOWED_ARGS))
_WORKER_HINT = (
    "The module must be importable on the worker: define the operation at the top "
    "level of a module file (not in __main__, a notebook cell or inside a function) "
    "when using process or cluster executors"
)


def _accepted_args(func: Callable[..., Any], label: str) -> frozenset[str]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"operation {label}: cannot read its signature ({exc})") from exc
    accepted: set[str] = set()
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL or p.kind is p.VAR_KEYWORD:
            raise ValidationError(
                f"operation {label}: *args / **kwargs are not allowed; declare the inputs "
                f"you need by name, from: {_ALLOWED_TEXT}"
            )
        if p.name not in ALLOWED_ARGS:
            raise ValidationError(
                f"operation {label}: argument {p.name!r} is not allowed; operations may "
                f"only take these arguments: {_ALLOWED_TEXT}"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise ValidationError(
                f"operation {label}: argument {p.name!r} is positional-only; inputs are "
                f"passed by keyword (allowed names: {_ALLOWED_TEXT}); remove the '/' from the signature"
            )
        accepted.add(p.name)
    return frozenset(accepted)


class Operation:
    """A validated operation function.

    Attributes:
        func: the wrapped function.
        name: display name (defaults to the function's ``__name__``).
        ref: ``"module:qualname"``, used by workers to import the function.
        accepted: the argument names the function declares.
        code_hash: sha256[:16] of the dedented source, ``""`` when unavailable
            (computed on first access).

    Calling it is thread-safe as far as the wrapped function is.

    Raises:
        ValidationError: (at construction) an argument outside the allowed
            names, ``*args``/``**kwargs``, or a non-callable.
    """

    func: Callable[..., Any]
    name: str
    ref: str
    accepted: frozenset[str]

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        if isinstance(func, Operation):
            func = func.func
        if not callable(func):
            raise ValidationError(f"operation must wrap a function, got {type(func).__name__}")
        module = getattr(func, "__module__", None) or "__main__"
        qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        self.func = func
        self.ref = f"{module}:{qualname}"
        if name is not None and (not isinstance(name, str) or not name):
            raise ValidationError(f"operation name must be a non-empty string, got {name!r}")
        self.name = name or str(getattr(func, "__name__", qualname))
        self.accepted = _accepted_args(func, self.ref)
        self._code_hash: str | None = None
        functools.update_wrapper(self, func, assigned=("__doc__",), updated=())

    @property
    def code_hash(self) -> str:
        if self._code_hash is None:
            try:
                source = textwrap.dedent(inspect.getsource(self.func))
                self._code_hash = hashlib.sha256(source.encode("utf-8")).hexdigest()[:FINGERPRINT_LENGTH]
            except (OSError, TypeError):
                self._code_hash = ""
        return self._code_hash

    def __call__(self, **available: Any) -> Any:
        """Call the function with the declared arguments taken from ``available``.

        Undeclared names in ``available`` are ignored; a declared argument that
        is missing from ``available`` uses its default (or raises TypeError).
        """
        return self.func(**{k: v for k, v in available.items() if k in self.accepted})

    def __reduce__(self) -> tuple[Any, ...]:
        if "<locals>" in self.ref or "<lambda>" in self.ref:
            raise OperationImportError(
                f"operation {self.ref!r} cannot be sent to another process: it is a lambda "
                f"or defined inside a function. {_WORKER_HINT}"
            )
        return (_restore_operation, (self.ref, self.name))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Operation):
            return NotImplemented
        return self.func is other.func and self.name == other.name

    def __hash__(self) -> int:
        return hash((self.ref, self.name))

    def __repr__(self) -> str:
        return f"Operation({self.ref!r}, name={self.name!r})"


def _restore_operation(ref: str, name: str) -> Operation:
    op = load_operation(ref)
    return op if op.name == name else Operation(op.func, name=name)


@overload
def operation(fn: Callable[..., Any], *, name: str | None = None) -> Operation: ...
@overload
def operation(
    fn: None = None, *, name: str | None = None
) -> Callable[[Callable[..., Any]], Operation]: ...


def operation(
    fn: Callable[..., Any] | None = None, *, name: str | None = None
) -> Operation | Callable[[Callable[..., Any]], Operation]:
    """Decorator turning a function into an :class:`Operation`.

    Use ``@operation``, ``@operation()`` or ``@operation(name="train")``.  The
    function may only declare ``context``, ``params``, ``seeds``, ``runtime``
    and ``capture`` (any subset, any order).

    Raises:
        ValidationError: at decoration time, for any other argument name or
            ``*args`` / ``**kwargs``.
    """
    if fn is not None:
        return Operation(fn, name=name)

    def decorate(func: Callable[..., Any]) -> Operation:
        return Operation(func, name=name)

    return decorate


def load_operation(ref: str) -> Operation:
    """Import ``"module:qualname"`` and return it as an :class:`Operation`.

    A plain function found there is wrapped.

    Raises:
        OperationImportError: malformed ref, the module cannot be imported, the
            attribute is missing, or it is not callable.  The message says which
            part failed.
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise OperationImportError(
            f"operation reference {ref!r} must look like 'package.module:function'"
        )
    module_name, qualname = ref.split(":")
    if not module_name or not qualname:
        raise OperationImportError(
            f"operation reference {ref!r} must look like 'package.module:function'"
        )
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise OperationImportError(
            f"operation {ref!r} is a lambda or defined inside a function and cannot be "
            f"imported. {_WORKER_HINT}"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise OperationImportError(
            f"cannot import module {module_name!r} for operation {ref!r} "
            f"({type(exc).__name__}: {exc}). {_WORKER_HINT}"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise OperationImportError(
                f"module {module_name!r} has no attribute {qualname!r} (missing {part!r}) "
                f"for operation {ref!r}. {_WORKER_HINT}"
            ) from exc
    if isinstance(obj, Operation):
        return obj
    if not callable(obj):
        raise OperationImportError(
            f"{ref!r} is a {type(obj).__name__}, not a function; point it at the operation"
        )
    try:
        return Operation(obj)
    except ValidationError as exc:
        raise OperationImportError(f"{ref!r} is not a valid operation: {exc}") from exc
