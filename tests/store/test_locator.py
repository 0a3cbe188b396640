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


# ------------------------------------------------------------ secrets with awkward characters
# Each secret is made of distinctive pieces around the characters that break naive
# scrubbing; a message leaks if any piece shows (a partial leak such as "ss word" counts).
AWKWARD_SECRETS = ["Aq9@Zx7 Wv5", "Aq9:Zx7/Wv5", "Aq9?Zx7#Wv5", "Aq9%Zx7%41Wv5", "Aq9 Zx7",
                   "Aq9@Zx7:Wv5?Kp3#Lm4%Rt6 Yu8", "1234/Aq9@Zx7", "Aq9'Zx7\"Wv5"]


def _pieces(secret: str) -> list[str]:
    import re

    return [p for p in re.split(r"[^A-Za-z0-9]+", secret) if len(p) >= 3 and not p.isdigit()]


def _leaks(secret: str, *texts: str) -> list[str]:
    return [p for p in _pieces(secret) for t in texts if p in t]


def _locators(secret: str, root: str) -> list[tuple[str, bool]]:
    """(locator, well formed?) with the secret raw and percent-encoded."""
    from urllib.parse import quote

    out = []
    for pw in dict.fromkeys([secret, quote(secret, safe="")]):
        out += [
            (f"postgresql://u:{pw}@host:99999/db?file_root={root}", False),   # bad port
            (f"postgresql://u:{pw}@host:port/db?file_root={root}", False),    # not a port
            (f"postgresql://u:{pw}@host/db?file_root={root}&a=1&a=2", False),  # query twice
            (f"postgresql://u:{pw}@host/db", False),                          # no file_root
            (f"nosuch://u:{pw}@host/db", False),                              # unknown scheme
            (f"postgresql://u:{pw}@host:5432/db?file_root={root}", pw != secret),
        ]
    return out


@pytest.mark.parametrize("secret", AWKWARD_SECRETS)
def test_no_error_path_shows_a_password_with_awkward_characters(
    secret: str, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    from urllib.parse import quote

    from metalab.store import PostgresStoreConfig, create_store

    caplog.set_level("DEBUG")
    for locator, well_formed in _locators(secret, str(tmp_path)):
        for attempt in (parse_to_config, create_store,
                        lambda loc: parse_to_config(loc, bogus_option=1)):
            try:
                got = attempt(locator)
            except errors.MetalabError as exc:
                assert not _leaks(secret, str(exc), repr(exc)), (locator, str(exc))
                continue
            assert not _leaks(secret, repr(got), str(got)), (locator, repr(got))
        if well_formed:  # the parsed password is the secret; workers still get it
            cfg = parse_to_config(locator)
            assert isinstance(cfg, PostgresStoreConfig)
            assert parse_locator(cfg.to_dict()["connection_string"]).password == secret
            assert StoreConfig.from_dict(cfg.to_dict()) == cfg
            assert not _leaks(secret, repr(cfg.scoped("e:1")), repr(parse_locator(locator)))
    # a config built by hand from a raw connection string, URI or key=value form
    escaped = secret.replace("\\", "\\\\").replace("'", "\\'")
    for conn in (f"postgresql://u:{secret}@host:5432/db", f"postgresql://u:{quote(secret)}@h/db",
                 f"host=h user=u password='{escaped}' dbname=db"):
        cfg = PostgresStoreConfig(connection_string=conn, file_root=str(tmp_path))
        assert not _leaks(secret, repr(cfg), str(cfg), cfg.display_target), (conn, repr(cfg))
        assert cfg.to_dict()["connection_string"] == conn
        try:
            PostgresStoreConfig(connection_string=conn)
        except errors.ConfigError as exc:
            assert not _leaks(secret, str(exc)), str(exc)
    assert not _leaks(secret, caplog.text)


@pytest.mark.parametrize("secret", AWKWARD_SECRETS)
def test_redact_hides_awkward_passwords_in_free_text_and_keeps_the_rest(secret: str) -> None:
    from urllib.parse import quote

    from metalab._internal._redact import redact

    for pw in (secret, quote(secret, safe="")):
        for text in (
            f"cannot reach postgresql://alice:{pw}@db.example:5432/lab; is it running?",
            f"store locator 'postgresql://alice:{pw}@db.example:99999/lab' is bad",
            f'copy "postgresql://alice:{pw}@a/x" to "postgresql://bob:{pw}@b/y" failed',
            f"dsn host=a user=alice password='{secret.replace(chr(39), chr(92) + chr(39))}' x=1",
            f"postgresql://alice@db/lab?password={quote(secret, safe='')}&sslmode=require",
        ):
            shown = redact(text)
            assert not _leaks(secret, shown), (text, shown)
            assert "***" in shown
            assert "alice" in shown or "***@" in shown
    well = redact(f"cannot reach postgresql://alice:{quote(secret, safe='')}@db.example:5432/lab; ok")
    assert well == "cannot reach postgresql://alice:***@db.example:5432/lab; ok"


def test_a_raw_slash_in_a_password_is_an_error_not_a_path() -> None:
    # '/' ends the host part: '12/Aq9@h' cannot be told from port 12 and path '/Aq9@h'
    with pytest.raises(errors.ConfigError, match="%2F") as info:
        parse_locator("postgresql://u:12/Aq9Zx7@h/db")
    assert "Aq9Zx7" not in str(info.value)
    info2 = parse_locator("postgresql://u:Aq9?Zx7#Wv5@h:5432/db?sslmode=require#frag")
    assert (info2.user, info2.password, info2.host, info2.port, info2.path, info2.query) == (
        "u", "Aq9?Zx7#Wv5", "h", 5432, "/db", {"sslmode": "require"})


@pytest.mark.parametrize("secret", AWKWARD_SECRETS)
def test_configs_shipped_to_slurm_workers_carry_no_password(secret: str) -> None:
    import json
    from urllib.parse import quote

    from metalab.execution._slurm import sanitize_store_config

    clean = sanitize_store_config({
        "_type": "postgresql", "file_root": "/shared",
        "connection_string": f"postgresql://bob:{quote(secret, safe='')}@db:5432/lab?sslmode=require",
        "raw": f"postgresql://bob:{secret}@db:5432/lab",
        "dsn": f"host=db password='{secret.replace(chr(39), chr(92) + chr(39))}' x=1",
    })
    assert not _leaks(secret, json.dumps(clean)), clean
    assert clean["connection_string"] == "postgresql://bob@db:5432/lab?sslmode=require"


@pytest.mark.parametrize("locator", [
    "file://:Aq9Zx7@db",                          # a file URI takes no user or password
    "file://u:Aq9/Zx7@db",
    "file://:Aq9#Zx7@db",
    "host=h user=u password='Aq9 Zx7' dbname=db",  # a libpq string is no folder
    "postgresql://:Aq9@/Zx7?=Wv5@db",              # raw '/': the rest lands in the query
    "postgresql://:Aq9;Zx7://Wv5@db",              # a scheme-like text inside the password
])
def test_ambiguous_locators_are_refused_without_showing_the_password(locator: str) -> None:
    from metalab._internal._redact import redact

    with pytest.raises(errors.ConfigError) as info:
        parse_locator(locator)
    assert not _leaks("Aq9 Zx7 Wv5", str(info.value)), str(info.value)
    assert not _leaks("Aq9 Zx7 Wv5", redact(f"bad {locator!r}"), redact(f"bad {locator}"))


def test_redact_keeps_quoted_values_whole_and_other_pairs_visible() -> None:
    from metalab._internal._redact import redact

    assert redact("host=h password='a b' user='u'") == "host=h password=*** user='u'"
    assert redact("password='ab\\' cd' x=1") == "password=*** x=1"
    shown = redact(repr("host=h password='Aq9\"Zx7 Wv5' dbname=db"))
    assert not _leaks("Aq9 Zx7 Wv5", shown) and "dbname=db" in shown
    assert redact("a?sslpassword=Aq9Zx7&token=Wv5x&b=1") == "a?sslpassword=***&token=***&b=1"
