"""Fuzzing of user input (fault scoreboard): names, locators and filter strings.

Every generated input goes through the public paths that turn it into files,
configs or queries.  Three things must never happen:

* an escape: a file or folder written outside the store's root (each input
  gets a fresh folder holding the store root and a sentinel folder; after
  the input, everything found there must be under the root or the sentinel);
* a raw error: any exception that is not a :class:`metalab.MetalabError`
  (``OSError: File name too long``, ``RecursionError``, ``UnicodeEncodeError``...);
* a secret in a message: generated passwords carry marker pieces (``ZQ7``,
  ``MX5``, ``JW4``) that no other generated text holds; none may show in an
  error message, a repr or str, or the captured log records.

Each test prints one scoreboard line (``fuzz <what>: tried N / escapes 0 /
raw errors 0 / secrets 0``).  ``METALAB_FUZZ_EXAMPLES`` scales the number of
inputs (default: a size that keeps this file under a minute on a shared CI core).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab import MetalabError
from metalab.model import RunRecord, Status

_SCALE = float(os.environ.get("METALAB_FUZZ_EXAMPLES", "1"))
_MARKERS = ("ZQ7", "MX5", "JW4")


def _settings(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * _SCALE)), deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


class Tally:
    """Counts of one fuzz target; a problem fails the example (Hypothesis shrinks it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tried = 0
        self.escapes = 0
        self.raw = 0
        self.secrets = 0

    def line(self) -> str:
        return (f"fuzz {self.name}: tried {self.tried} / escapes {self.escapes} / "
                f"raw errors {self.raw} / secrets {self.secrets}")

    def call(self, what: str, fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
        """Run ``fn``; a metalab error is an answer, anything else a raw error."""
        try:
            return fn(), None
        except MetalabError as exc:
            return None, exc
        except Exception as exc:  # (what the fuzzer looks for)
            self.raw += 1
            raise AssertionError(f"{what}: raw {type(exc).__name__}: {exc}") from exc

    def no_escape(self, base: Path, inside: Path, sentinel: Path) -> None:
        for folder, dirs, files in os.walk(base):
            for n in dirs + files:
                p = Path(folder, n)
                if p in (inside, sentinel) or inside in p.parents or sentinel in p.parents:
                    continue
                self.escapes += 1
                raise AssertionError(f"written outside the store root: {p}")
        if any(sentinel.iterdir()):
            self.escapes += 1
            raise AssertionError(f"written into the sentinel folder: {list(sentinel.iterdir())}")

    def no_secret(self, what: str, *texts: str) -> None:
        for text in texts:
            shown = [m for m in _MARKERS if m in text]
            if shown:
                self.secrets += 1
                raise AssertionError(f"{what} shows the password ({shown}): {text!r}")


def _fresh(work: Path) -> tuple[Path, Path, Path]:
    base = Path(tempfile.mkdtemp(dir=work))
    sentinel = base / "sentinel"
    sentinel.mkdir()
    return base, base / "store", sentinel


# ------------------------------------------------------------------------ names
_AWKWARD = ["/", "\\", "..", ".", "\x00", "\n", "\t", "~", "$HOME", "%2F", "%00", ":", "*",
            "?", "<", ">", "|", '"', "'", " ", "模", "😀", "é", "\u202e", "\ufeff", "CON",
            "_", "-", "\ud800", "\udcff", "../", "/..", "./", ".tmp-", "_manifest.json"]
NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.sampled_from(_AWKWARD), st.text(max_size=4)), max_size=12).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "模", "😀", "é", ".", "/", "_"]),
              st.integers(1, 260)),
)


def test_fuzz_names(tmp_path: Path, scoreboard: list[str]) -> None:
    """Artifact, log, data, parameter, metric names and experiment ids."""
    from metalab.execution._capture import Capture, RunLog
    from metalab.query import build_query
    from metalab.store import FileStore

    tally = Tally("names")

    @_settings(150)
    @given(name=NAMES, fmt=st.one_of(st.just("bin"), st.just(""), NAMES))
    def check(name: str, fmt: str) -> None:
        tally.tried += 1
        base, root, sentinel = _fresh(tmp_path)
        try:
            store = FileStore(str(root), experiment_id="e:1")
            call = tally.call
            call("experiment id", lambda: FileStore(str(root), experiment_id=name)
                 .put_data("r1", "d", {"data": 1}))
            call("manifest", lambda: FileStore(str(root)).put_experiment_manifest(name, {"x": 1}))
            call("artifact", lambda: store.put_artifact("r1", name, b"x", kind="blob",
                                                        format=fmt))
            call("log", lambda: store.append_log("r1", name, "line\n"))
            path, _ = call("log path", lambda: store.log_path("r1", name))
            if path is not None:
                assert Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)), path
                with open(path, "a") as fh:  # (what a run does with it)
                    fh.write("x")
            call("data", lambda: store.put_data("r1", name, {"data": [1]}))
            call("data read", lambda: store.get_data("r1", name))
            if _encodable(name):  # (see test_record_keys_with_a_lone_surrogate)
                call("record", lambda: store.put_run_record(RunRecord(
                    run_id="r2", experiment_id="e:1", status=Status.SUCCESS,
                    params={name: 1}, metrics={name: 1.5})))
            call("query by name", lambda: store.query_runs(
                None, build_query(keywords={f"params.{name}": 1, f"metrics.{name}": 1.5})))
            capture, _ = call("capture", lambda: Capture(store, "r3", RunLog(store, "r3")))
            if capture is not None:
                call("metric", lambda: capture.metric(name, 1.0))
                call("stepped metric", lambda: capture.metric(name, 2.0, step=1))
                call("capture data", lambda: capture.data(name + "_d", {"a": 1}))
                call("capture artifact", lambda: capture.artifact(name + "_a", b"x"))
                done, _ = call("finish", capture._finish)
                for warning in (done[4] if done else []):
                    if "Errno" in warning or "Error:" in warning:
                        tally.raw += 1
                        raise AssertionError(f"a series failed with a raw error: {warning}")
            tally.no_escape(base, root, sentinel)
        finally:
            shutil.rmtree(base, ignore_errors=True)

    try:
        check()
    finally:
        scoreboard.append(tally.line())
    assert (tally.escapes, tally.raw, tally.secrets) == (0, 0, 0)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_record_keys_with_a_lone_surrogate(tmp_path: Path) -> None:
    from metalab.store import FileStore

    store = FileStore(str(tmp_path / "store"), experiment_id="e:1")
    for params, metrics in (({"\ud800": 1}, {}), ({"a": "x\udfff"}, {}), ({}, {"m": "\ud800"})):
        with pytest.raises(MetalabError, match="lone surrogate"):
            store.put_run_record(RunRecord(run_id="r1", experiment_id="e:1", status=Status.SUCCESS,
                                           params=params, metrics=metrics))
    assert not list((tmp_path / "store").rglob("r1.json"))  # nothing half-written


# ---------------------------------------------------------------------- locators
_MID = st.text(alphabet="abc123@:/?#%&= +!$'\"\\;", max_size=5)
PASSWORDS = st.builds(lambda a, b: f"ZQ7{a}MX5{b}JW4", _MID, _MID)
_USERS = st.text(alphabet="abcdef_.-@: %", max_size=5)
_HOSTS = st.one_of(st.sampled_from(["db", "h.example", "[::1]", "", "127.0.0.1", "[::1"]),
                   st.text(alphabet="abc.-_ ", max_size=6))
_PORTS = st.sampled_from(["", ":5432", ":99999", ":abc", ":", ":0", ":12a"])
_PATHS = st.sampled_from(["", "/db", "/d b", "/a@b", "/x/y", "/%41"])
_QUERIES = st.sampled_from(["", "?file_root=ROOT", "?sslmode=require&file_root=ROOT",
                            "?file_root=ROOT&a=1&a=2", "?password=PW&file_root=ROOT",
                            "?file_root=ROOT&schema=s%25", "?file_root=ROOT&index_mode=bad",
                            "?file_root=ROOT&token=PW", "?file_root=ROOT&pool_max_size=x",
                            "?bad", "?file_root=ROOT#frag"])
_SCHEMES = st.sampled_from(["postgresql", "postgres", "POSTGRESQL", "file", "nosuch", "s3"])


@st.composite
def locators(draw: Any, root: str) -> tuple[str, str]:
    password = draw(PASSWORDS)
    form = draw(st.sampled_from(["uri", "uri", "uri", "kv", "text"]))
    if form == "kv":
        escaped = password.replace("\\", "\\\\").replace("'", "\\'")
        return f"host=h user=u password='{escaped}' dbname=db", password
    if form == "text":  # a key=value string where a locator was expected
        junk = draw(st.text(alphabet="abc =/:.", max_size=12))
        key = draw(st.sampled_from(["password", "PASSWORD", "sslpassword", "token"]))
        value = draw(st.sampled_from([f"'{password}'", quote(password, safe="")]))
        return f"{junk}{key}={value} {junk}", password
    pw = quote(password, safe="") if draw(st.booleans()) else password
    user = draw(_USERS)
    query = draw(_QUERIES)
    # the password in the user part, unless the query carries it (then maybe only there)
    auth = f"{user}:{pw}@" if "PW" not in query or draw(st.booleans()) else f"{user}@"
    query = query.replace("ROOT", root).replace("PW", quote(password, safe=""))
    loc = f"{draw(_SCHEMES)}://{auth}{draw(_HOSTS)}{draw(_PORTS)}{draw(_PATHS)}{query}"
    return loc, password


def test_fuzz_locators(tmp_path: Path, scoreboard: list[str],
                       caplog: pytest.LogCaptureFixture) -> None:
    """Locators and connection strings with generated passwords: parse, configs, stores."""
    from metalab._internal._redact import redact
    from metalab.store import (
        PostgresStoreConfig,
        StoreConfig,
        create_store,
        parse_locator,
        parse_to_config,
    )

    tally = Tally("locators")
    caplog.set_level("DEBUG")

    @_settings(400)
    @given(data=st.data())
    def check(data: Any) -> None:
        tally.tried += 1
        base, root, sentinel = _fresh(tmp_path)
        caplog.clear()
        try:
            loc, _password = data.draw(locators(str(root)))
            call = tally.call
            for what, fn in (("parse_locator", lambda: parse_locator(loc)),
                             ("parse_to_config", lambda: parse_to_config(loc)),
                             ("with keywords", lambda: parse_to_config(loc, bogus=1)),
                             ("config by hand", lambda: PostgresStoreConfig(
                                 connection_string=loc, file_root=str(root))),
                             ("config without root",
                              lambda: PostgresStoreConfig(connection_string=loc))):
                got, err = call(what, fn)
                if err is not None:
                    tally.no_secret(f"{what} error", str(err), repr(err))
                else:
                    tally.no_secret(what, repr(got), str(got))
                    if isinstance(got, PostgresStoreConfig):
                        tally.no_secret(what, got.display_target, repr(got.scoped("e:1")))
                        again, err2 = call("from_dict", lambda g=got: StoreConfig.from_dict(
                            g.to_dict()))
                        assert err2 is None and again == got
                    root_of = getattr(got, "file_root", None) or getattr(got, "root", None)
                    if isinstance(root_of, str) and Path(root_of).is_relative_to(root):
                        store, _ = call("create_store", lambda g=got: create_store(g))
                        if store is not None:
                            tally.no_secret("store", repr(store), str(store))
                            store.close()
            tally.no_secret("redact", redact(f"cannot reach {loc}: timeout"),
                            redact(f"store locator {loc!r} is bad"))
            tally.no_secret("log records", caplog.text)
            tally.no_escape(base, root, sentinel)
        finally:
            shutil.rmtree(base, ignore_errors=True)

    try:
        check()
    finally:
        scoreboard.append(tally.line())
    assert (tally.escapes, tally.raw, tally.secrets) == (0, 0, 0)


# ----------------------------------------------------------------------- filters
_LITERALS = ["1", "-2.5", "1e999", "-1e999", "99999999999999999999999", ".5", "'a'", '"x"',
             "'2026-01-01'", "'\\0'", "'\ud800'", "true", "false", "'模'", "nan"]
_TOKENS = ["params.lr", "metrics.score", "params.name", "status", "tags", "run_id",
           "started_at", "finished_at", "duration_ms", "derived.x", 'params."a b"', "params.",
           "param.lr", "=", "==", "!=", "<>", "<", "<=", ">", ">=", "in", "not", "and", "or",
           "(", ")", ",", "between", "startswith", "contains", "is", "null", "true", "false",
           "1", "-2.5", "1e999", "-1e999", "99999999999999999999999", ".5", "'a'", '"x"', "'",
           '"', "\\", "'2026-01-01'", "'\\0'", "'\ud800'", "nan", "模", "~", "%", "#"]
FILTERS = st.one_of(
    st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=3)), max_size=30)
    .map(" ".join),
    st.text(max_size=60),
    st.builds(lambda n, k, t: "(" * n + t + ")" * k, st.integers(0, 400), st.integers(0, 400),
              st.sampled_from(["params.lr = 1", "not params.lr < 2", ""])),
    st.builds(lambda n, op: "not " * n + f"params.lr {op} 1", st.integers(0, 1200),
              st.sampled_from(["=", "<", "!="])),
    st.builds(lambda n, j: f" {j} ".join(f"params.lr != {i}" for i in range(n)),
              st.integers(1, 3000), st.sampled_from(["and", "or"])),
    st.builds(lambda vals: f"params.name in ({', '.join(vals)})",
              st.lists(st.sampled_from(_LITERALS), min_size=1, max_size=400)),
)


def test_fuzz_filters(tmp_path: Path, scoreboard: list[str]) -> None:
    """Filter strings, column and order names through the parser, the catalog and the scan."""
    from metalab.query import parse
    from metalab.store import FileStore
    from metalab.store._base import Store

    tally = Tally("filters")
    base, root, sentinel = _fresh(tmp_path)
    store = FileStore(str(root), experiment_id="q:1")
    for i in range(12):
        store.put_run_record(RunRecord(
            run_id=f"r{i:02d}", experiment_id="q:1", status=Status.SUCCESS,
            params={"lr": 10.0 ** -(i % 4), "name": ["a", "x", "模"][i % 3], "a b": i},
            metrics={"score": i / 10}, tags=("even",) if i % 2 == 0 else ()))

    @_settings(300)
    @given(text=FILTERS, other=FILTERS)
    def check(text: str, other: str) -> None:
        tally.tried += 1
        call = tally.call
        call("parse", lambda: parse(text))
        call("catalog", lambda: store.query_runs(None, text))
        call("scan", lambda: Store.query_runs(store, None, text))
        call("columns", lambda: store.query_runs(None, None, columns=[other[:80]]))
        call("order", lambda: store.query_runs(None, None, order_by=other[:80]))
        tally.no_escape(base, root, sentinel)

    try:
        check()
    finally:
        scoreboard.append(tally.line())
    assert (tally.escapes, tally.raw, tally.secrets) == (0, 0, 0)
