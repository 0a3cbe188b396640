"""Operations: argument injection, validation, refs, loading and pickling."""

from __future__ import annotations

import hashlib
import importlib
import pickle
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from metalab._errors import OperationImportError, ValidationError
from metalab.definition import Operation, load_operation, operation

MODULE_SRC = """
from metalab.definition import operation

@operation(name="train")
def train(params, seeds):
    return ("train", params, seeds)

@operation
def evaluate(context, capture=None):
    return ("eval", context, capture)

def plain(params):
    return params * 2

class Holder:
    @staticmethod
    def nested(context):
        return context

NOT_CALLABLE = 3
"""


@pytest.fixture
def opmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"ml_ops_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODULE_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(name)
    yield mod  # type: ignore[misc]
    sys.modules.pop(name, None)


def test_injects_only_declared_arguments(opmod: ModuleType) -> None:
    everything: dict[str, Any] = dict(context="C", params="P", seeds="S", runtime="R", capture="K")
    assert opmod.train(**everything) == ("train", "P", "S")
    assert opmod.evaluate(**everything) == ("eval", "C", "K")
    assert opmod.evaluate(context=1) == ("eval", 1, None)  # default used when not available
    assert opmod.train.accepted == frozenset({"params", "seeds"})


def test_names_refs_and_code_hash(opmod: ModuleType) -> None:
    assert opmod.train.name == "train"
    assert opmod.evaluate.name == "evaluate"
    assert opmod.train.ref == f"{opmod.__name__}:train"
    h = opmod.train.code_hash
    assert len(h) == 16 and int(h, 16) >= 0
    assert h != opmod.evaluate.code_hash
    dynamic: dict[str, Any] = {}
    exec("def f(params):\n    return 1\n", dynamic)
    assert Operation(dynamic["f"]).code_hash == ""


INDENTED_SRC = """
from metalab.definition import operation

def outer():
    @operation
    def op(params):
        return params

    return op

class Holder:
    @operation
    def op(params):
        return params
"""

DEDENTED_SRC = """
from metalab.definition import operation

@operation
def op(params):
    return params
"""


def test_code_hash_ignores_indentation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operation defined inside a function or class hashes like its dedented twin
    at the top level of a module (and unlike a twin with another body)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = {"ml_indented": INDENTED_SRC, "ml_dedented": DEDENTED_SRC,
               "ml_changed": DEDENTED_SRC.replace("return params", "return params  # edited")}
    loaded = {}
    for name, src in modules.items():
        (tmp_path / f"{name}.py").write_text(src)
        loaded[name] = importlib.import_module(name)
        monkeypatch.delitem(sys.modules, name)
    twin = loaded["ml_dedented"].op.code_hash
    assert len(twin) == 16
    assert loaded["ml_indented"].outer().code_hash == twin
    assert loaded["ml_indented"].Holder.op.code_hash == twin
    assert loaded["ml_changed"].op.code_hash != twin
    dedented = '@operation\ndef op(params):\n    return params\n'
    assert twin == hashlib.sha256(dedented.encode("utf-8")).hexdigest()[:16]


@pytest.mark.parametrize(
    "src",
    [
        "def f(x): pass",
        "def f(params, *args): pass",
        "def f(params, **kwargs): pass",
        "def f(params, /): pass",
        "def f(ctx): pass",
    ],
)
def test_bad_signatures_rejected_at_decoration(src: str) -> None:
    ns: dict[str, Any] = {}
    exec(src, ns)
    with pytest.raises(ValidationError) as exc:
        operation(ns["f"])
    msg = str(exc.value)
    assert "params" in msg and "capture" in msg  # lists the allowed names
    with pytest.raises(ValidationError):
        operation(name="x")(ns["f"])


def test_operation_without_arguments_is_fine() -> None:
    op = operation(lambda: 42)
    assert op(params=1, context=2) == 42


def test_load_operation(opmod: ModuleType) -> None:
    m = opmod.__name__
    assert load_operation(f"{m}:train") is opmod.train
    plain = load_operation(f"{m}:plain")
    assert isinstance(plain, Operation) and plain(params=2) == 4
    nested = load_operation(f"{m}:Holder.nested")
    assert nested(context="c") == "c"


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("no_such_module_xyz:f", "no_such_module_xyz"),
        ("{m}:missing", "missing"),
        ("{m}:Holder.gone", "gone"),
        ("{m}:NOT_CALLABLE", "not a function"),
        ("no-colon", "module:function"),
        ("a:b:c", "module:function"),
        ("mod:<locals>.f", "inside a function"),
    ],
)
def test_load_operation_errors_are_clear(opmod: ModuleType, ref: str, needle: str) -> None:
    with pytest.raises(OperationImportError) as exc:
        load_operation(ref.format(m=opmod.__name__))
    assert needle in str(exc.value)
    assert isinstance(exc.value, ImportError)


def test_import_error_mentions_worker() -> None:
    with pytest.raises(OperationImportError, match="importable on the worker"):
        load_operation("no_such_module_xyz:f")


def test_pickle_by_reference(opmod: ModuleType) -> None:
    data = pickle.dumps(opmod.train)
    assert len(data) < 300  # a reference, not the code
    assert pickle.loads(data) is opmod.train
    wrapped = Operation(opmod.plain, name="custom")
    back = pickle.loads(pickle.dumps(wrapped))
    assert back.name == "custom" and back.func is opmod.plain and back(params=3) == 6


def test_local_operation_cannot_be_pickled() -> None:
    @operation
    def local(params: Any) -> Any:
        return params

    assert local(params=1) == 1  # usable in-process
    with pytest.raises(OperationImportError, match="inside a function"):
        pickle.dumps(local)


def test_wrapping_an_operation_keeps_function() -> None:
    def f(params: Any) -> Any:
        return params

    op = Operation(Operation(f), name="n")
    assert op.func is f and op.name == "n"
    with pytest.raises(ValidationError):
        Operation(3)  # type: ignore[arg-type]
