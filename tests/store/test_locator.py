"""Locators: parsing, rendering, config round trips, no password leaks."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab import _errors as errors
from metalab.store import (
    FileStoreConfig,
    LocatorInfo,
    StoreConfig,
    parse_locator,
    parse_to_config,
)

_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.~ @:/?#&=%+é", min_size=1,
                max_size=12)
_secret = st.text(alphabet=string.ascii_letters + string.digits + "@:/?#&=%+!$ ", min_size=4,
                  max_size=16).filter(lambda s: "***" not in s)


@pytest.mark.parametrize(
    ("locator", "expected"),
    [
        ("/abs/dir", "/abs/dir"),
        ("./rel", os.path.abspath("rel")),
        ("../x", os.path.abspath("../x")),
        ("rel/x", os.path.abspath("rel/x")),
        ("~/x", os.path.expanduser("~/x")),
        ("file:///abs/dir", "/abs/dir"),
        ("file://localhost/abs/dir", "/abs/dir"),
        ("file://./rel", os.path.abspath("rel")),
        ("file:///with%20space", "/with space"),
    ],
)
def test_local_paths_are_file_scheme(locator: str, expected: str) -> None:
    info = parse_locator(locator)
    assert info.scheme == "file"
    assert info.path == expected
    assert os.path.isabs(info.path)


def test_windows_drive_is_a_path_not_a_scheme() -> None:
    info = parse_locator("C:\\x\\y")
    assert info.scheme == "file"
    assert info.path.endswith("C:\\x\\y")


def test_file_uri_with_experiment_id() -> None:
    info = parse_locator("file:///data/exps?experiment_id=my_exp:1.0")
    assert (info.path, info.query) == ("/data/exps", {"experiment_id": "my_exp:1.0"})
    cfg = parse_to_config("file:///data/exps?experiment_id=my_exp:1.0")
    assert cfg == FileStoreConfig(root="/data/exps", experiment_id="my_exp:1.0")


def test_postgres_locator_keeps_everything() -> None:
    info = parse_locator(
        "postgresql://al%40ice:p%40ss%3Aw@db.example:5432/metalab?file_root=/x&schema=s&sslmode=require"
    )
    assert info == LocatorInfo(
        scheme="postgresql", host="db.example", port=5432, user="al@ice", password="p@ss:w",
        path="/metalab", query={"file_root": "/x", "schema": "s", "sslmode": "require"},
    )
    assert parse_locator("postgres://localhost/db").scheme == "postgres"
    assert parse_locator("POSTGRESQL://h/db").scheme == "postgresql"


def test_ipv6_host_and_unencoded_at_in_password() -> None:
    info = parse_locator("postgresql://u:pa@ss@[::1]:6543/db")
    assert (info.user, info.password, info.host, info.port) == ("u", "pa@ss", "::1", 6543)


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "postgresql://u:hunter22@h:notaport/db", "postgresql://u:hunter22@h:70000/db",
     "postgresql://u:hunter22@h/db?a=1&a=2"],
)
def test_errors_never_echo_password(bad: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        parse_locator(bad)
    assert "hunter22" not in str(info.value)


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(errors.UnknownSchemeError) as info:
        parse_to_config("nosuch://u:hunter22@host/x")
    assert "file" in str(info.value)
    assert "hunter22" not in str(info.value)


def test_file_locator_refuses_unknown_options() -> None:
    with pytest.raises(errors.ConfigError, match="bogus"):
        parse_to_config("file:///tmp/x?bogus=1")
    with pytest.raises(errors.ConfigError, match="only one"):
        parse_to_config("file:///tmp/x?experiment_id=a", experiment_id="b")


@given(
    scheme=st.sampled_from(["postgresql", "postgres", "myscheme", "s3"]),
    host=st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z]{2,4})?", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    user=st.none() | _text,
    password=st.none() | _secret,
    path=st.none() | st.lists(_text.filter(lambda s: "/" not in s), max_size=3),
    query=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _text, max_size=4),
)
def test_uri_round_trip(scheme, host, port, user, password, path, query) -> None:
    if password is not None:
        password = "PW!" + password  # "!" is never generated elsewhere
        user = user or "u"
    info = LocatorInfo(
        scheme=scheme, host=host, port=port, user=user, password=password,
        path="" if path is None else "/" + "/".join(path), query=query,
    )
    assert parse_locator(info.to_uri(hide_password=False)) == info
    if password is not None:
        assert password not in repr(info)
        assert password not in str(info)
        assert "***" in repr(info)


@given(secret=_secret)
def test_password_in_query_hidden(secret: str) -> None:
    secret = "PW!" + secret
    info = LocatorInfo(scheme="postgresql", host="h", query={"password": secret})
    assert secret not in repr(info)
    assert secret not in str(info)


@given(
    root=st.lists(st.from_regex(r"[A-Za-z0-9_.\- ]{1,10}", fullmatch=True)
                  .filter(lambda s: s not in (".", "..")), min_size=1, max_size=3),
    experiment_id=st.none() | st.from_regex(r"[A-Za-z0-9_:.\-]{1,20}", fullmatch=True),
)
def test_file_config_round_trips(root: list[str], experiment_id: str | None) -> None:
    path = "/" + "/".join(root)
    cfg = FileStoreConfig(root=path, experiment_id=experiment_id)
    d = cfg.to_dict()
    assert d == {"root": os.path.abspath(path), "experiment_id": experiment_id, "_type": "file"}
    assert StoreConfig.from_dict(d) == cfg
    info = parse_locator(path)
    assert parse_to_config(info.to_uri(), experiment_id=experiment_id) == cfg
    assert parse_to_config(path, experiment_id=experiment_id) == cfg


def test_config_passes_through_and_scopes() -> None:
    cfg = FileStoreConfig(root="/tmp/coll")
    assert parse_to_config(cfg) is cfg
    assert parse_to_config(cfg, experiment_id="e:1") == cfg.scoped("e:1")
    assert parse_to_config(cfg, root="/tmp/other").root == "/tmp/other"
    with pytest.raises(errors.ConfigError, match="no field"):
        parse_to_config(cfg, nonsense=1)


def test_pathlike_locator(tmp_path) -> None:
    assert parse_to_config(tmp_path) == FileStoreConfig(root=str(tmp_path))


def test_from_dict_errors() -> None:
    with pytest.raises(errors.ConfigError, match="_type"):
        StoreConfig.from_dict({"root": "/x"})
    with pytest.raises(errors.ConfigError, match="unknown field"):
        StoreConfig.from_dict({"root": "/x", "_type": "file", "bogus": 1})
