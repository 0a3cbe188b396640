"""StoreConfig.to_dict(include_password=False): a config dict that holds no secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

import pytest

from metalab.store import FileStoreConfig, PostgresStoreConfig, StoreConfig, parse_locator

# distinctive pieces around the characters that break naive scrubbing (see test_locator.py)
AWKWARD = ["Aq9@Zx7 Wv5", "Aq9:Zx7?Wv5", "Aq9#Zx7%41Wv5", "Aq9@Zx7:Wv5?Kp3#Lm4%Rt6 Yu8"]


def _pieces(secret: str) -> list[str]:
    import re

    return [p for p in re.split(r"[^A-Za-z0-9]+", secret) if len(p) >= 3]


@pytest.mark.parametrize("secret", AWKWARD)
def test_a_postgres_config_without_its_password(secret, tmp_path):
    escaped = secret.replace("\\", "\\\\").replace("'", "\\'")
    for conn in (f"postgresql://alice:{quote(secret, safe='')}@db.example:5432/runs?sslmode=require",
                 f"postgresql://alice:{secret}@db.example:5432/runs",
                 f"host=db.example user=alice password='{escaped}' dbname=runs"):
        cfg = PostgresStoreConfig(connection_string=conn, file_root=str(tmp_path),
                                  experiment_id="e:1", schema="s1")
        full, safe = cfg.to_dict(), cfg.to_dict(include_password=False)
        assert StoreConfig.from_dict(full) == cfg  # workers in other processes need it
        text = json.dumps(safe)
        assert not [p for p in _pieces(secret) if p in text], text
        # what is left still names the same database and store
        back = StoreConfig.from_dict(safe)
        assert isinstance(back, PostgresStoreConfig)
        assert (back.file_root, back.experiment_id, back.schema, back.display_target) == (
            cfg.file_root, cfg.experiment_id, cfg.schema, cfg.display_target)
        if conn.startswith("postgresql://"):
            info = parse_locator(back.connection_string)
            assert (info.user, info.password, info.host, info.path) == (
                "alice", None, "db.example", "/runs")


def test_secret_fields_of_any_config_are_left_out(restore_registry):
    @dataclass(frozen=True, kw_only=True)
    class TokenStoreConfig(StoreConfig):
        scheme: ClassVar[str] = "tokenstore-test"
        endpoint: str
        api_token: str
        client_secret: str = ""
        experiment_id: str | None = None

        @classmethod
        def from_locator(cls, info, **kwargs):  # pragma: no cover - not parsed here
            raise NotImplementedError

        def connect(self):  # pragma: no cover - never connected here
            raise NotImplementedError

    for token in ("tok9XYZabc", "000000", "Zz" * 10):
        cfg = TokenStoreConfig(endpoint="https://svc.example/v1", api_token=token,
                               client_secret=token[::-1])
        safe = cfg.to_dict(include_password=False)
        assert safe == {"endpoint": "https://svc.example/v1", "experiment_id": None,
                        "_type": "tokenstore-test"}
        assert cfg.to_dict()["api_token"] == token


def test_a_file_config_is_the_same_either_way(tmp_path):
    cfg = FileStoreConfig(root=str(tmp_path), experiment_id="e:1")
    assert cfg.to_dict(include_password=False) == cfg.to_dict() == {
        "root": str(tmp_path), "experiment_id": "e:1", "_type": "file"}


def test_display_target_never_shows_the_user_part_of_a_garbled_uri(tmp_path):
    # a keyword-style password pasted into a URI lands in its user part; libpq would take
    # the user as the default database name, so a display of host:port/db must not
    cfg = PostgresStoreConfig(connection_string="a://password='Zq7Mx5@Jw4' a://",
                              file_root=str(tmp_path))
    for piece in ("Zq7", "Mx5", "zq7", "mx5"):
        assert piece not in cfg.display_target and piece not in repr(cfg)
    plain = PostgresStoreConfig(connection_string="postgresql://alice@db.example/runs",
                                file_root=str(tmp_path))
    assert plain.display_target == "db.example:5432/runs"
    no_db = PostgresStoreConfig(connection_string="postgresql://alice@db.example",
                                file_root=str(tmp_path))
    assert no_db.display_target == "db.example:5432/(default)"
