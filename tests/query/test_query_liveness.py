"""One lost rule: Python, the SQLite catalog and PostgreSQL agree at its boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from query_support import make_doc, write_doc

from metalab.query import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_LOST_AFTER_S,
    build_query,
    effective_status,
    heartbeat_interval,
    lost_after_seconds,
    lost_cutoff,
    lost_status_sql,
    run_query,
    status_at_cutoff,
)
from metalab.query._liveness import parse_time
from metalab.store import FileStore
from metalab.store._index import Catalog
from metalab.store._index._pgquery import query_index

#: the cutoff of every engine in these tests: 2026-03-01T12:00:00Z
CUT_AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CUT = lost_cutoff(CUT_AT, 0)
OLD = "2020-01-01T00:00:00Z"


def _at(micros: int = 0) -> str:
    return (CUT_AT + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")


# run -> (document fields, the status every engine must show at CUT)
TABLE: dict[str, tuple[dict[str, Any], str]] = {
    "at_cutoff": ({"status": "running", "heartbeat_at": _at()}, "running"),
    "one_us_before": ({"status": "running", "heartbeat_at": _at(-1)}, "lost"),
    "one_us_after": ({"status": "running", "heartbeat_at": _at(1)}, "running"),
    "naive_at_cutoff": ({"status": "running", "heartbeat_at": "2026-03-01T12:00:00"}, "running"),
    "naive_before": ({"status": "running", "heartbeat_at": "2026-03-01T11:59:59"}, "lost"),
    "zone_at_cutoff": ({"status": "running", "heartbeat_at": "2026-03-01T14:00:00+02:00"},
                       "running"),
    "no_heartbeat_old_start": ({"status": "running", "started_at": OLD}, "lost"),
    "empty_heartbeat_old_start": ({"status": "running", "heartbeat_at": "",
                                   "started_at": OLD}, "lost"),
    "null_heartbeat_start_at_cutoff": ({"status": "running", "heartbeat_at": None,
                                        "started_at": _at()}, "running"),
    "no_time_at_all": ({"status": "running", "started_at": None}, "running"),
    "heartbeat_not_a_time": ({"status": "running", "heartbeat_at": "later",
                              "started_at": OLD}, "running"),
    "heartbeat_zero_old_start": ({"status": "running", "heartbeat_at": 0,
                                  "started_at": OLD}, "running"),  # set, not a time
    "heartbeat_false_old_start": ({"status": "running", "heartbeat_at": False,
                                   "started_at": OLD}, "running"),
    "success_old_heartbeat": ({"status": "success", "heartbeat_at": OLD}, "success"),
    "failed_old_heartbeat": ({"status": "failed", "heartbeat_at": OLD}, "failed"),
    "cancelled_old_heartbeat": ({"status": "cancelled", "heartbeat_at": OLD}, "cancelled"),
}


def _docs() -> list[dict[str, Any]]:
    docs = []
    for i, (name, (fields, _)) in enumerate(sorted(TABLE.items())):
        doc = make_doc(i, **fields)
        doc["params"] = {"case": name}
        docs.append(doc)
    return docs


def _statuses(answer: list[dict[str, Any]]) -> dict[str, str]:
    return {d["params"]["case"]: d["status"] for d in answer}


EXPECTED = {name: status for name, (_, status) in TABLE.items()}
QUERY = build_query(None, columns=["params.case", "status"])


def test_python_rule_at_the_boundaries() -> None:
    assert {d["params"]["case"]: status_at_cutoff(d, CUT) for d in _docs()} == EXPECTED
    assert _statuses(run_query(_docs(), QUERY, cutoff=CUT)) == EXPECTED


def test_a_missing_or_non_text_status_is_none() -> None:
    assert status_at_cutoff({"heartbeat_at": OLD}, CUT) is None
    assert status_at_cutoff({"status": None}, CUT) is None
    assert status_at_cutoff({"status": 3}, CUT) is None
    assert effective_status({"status": "running", "heartbeat_at": OLD}, CUT_AT, 0) == "lost"
    assert effective_status({}, CUT_AT, 0) is None


def test_effective_status_is_the_rule_at_now_minus_the_limit() -> None:
    doc = {"status": "running", "heartbeat_at": _at(-60_000_000)}
    assert effective_status(doc, CUT_AT, 60) == "running"  # exactly 60 s old
    assert effective_status(doc, CUT_AT + timedelta(microseconds=1), 60) == "lost"


def test_parse_time_reads_the_forms_of_the_table() -> None:
    assert parse_time(_at()) == CUT == parse_time("2026-03-01T12:00:00")
    assert parse_time("later") is None and parse_time("") is None and parse_time(None) is None


def test_one_sql_template_for_both_engines() -> None:
    sqlite = lost_status_sql("r.status", "r.hb", "?1")
    assert sqlite == ("(CASE WHEN r.status = 'running' AND r.hb < ?1 THEN 'lost' "
                      "ELSE r.status END)")


def _filestore(tmp_path: Any) -> FileStore:
    fs = FileStore(str(tmp_path / "store"), experiment_id="q:1")
    for doc in _docs():
        write_doc(fs, doc)
    return fs


def test_sqlite_catalog_agrees_with_python(tmp_path: Any) -> None:
    fs = _filestore(tmp_path)
    got = Catalog(fs.get_working_directory()).query(QUERY, CUT)
    assert _statuses(got) == EXPECTED
    lost = Catalog(fs.get_working_directory()).query(
        build_query("status = 'lost'", columns=["params.case"]), CUT)
    assert sorted(_statuses_of(lost)) == sorted(k for k, v in EXPECTED.items() if v == "lost")


def _statuses_of(answer: list[dict[str, Any]]) -> list[str]:
    return [d["params"]["case"] for d in answer]


def test_postgres_agrees_with_python(tmp_path: Any, pg_factory: Any) -> None:
    pg = pg_factory(_filestore(tmp_path))
    assert _statuses(query_index(pg._index, "q:1", QUERY, CUT)) == EXPECTED
    lost = query_index(pg._index, "q:1", build_query("status = 'lost'", columns=["params.case"]),
                       CUT)
    assert sorted(_statuses_of(lost)) == sorted(k for k, v in EXPECTED.items() if v == "lost")


@pytest.mark.parametrize(("read", "env", "default"), [
    (lost_after_seconds, "METALAB_LOST_AFTER", DEFAULT_LOST_AFTER_S),
    (heartbeat_interval, "METALAB_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL_S),
])
def test_the_heartbeat_settings_read_the_environment_at_each_call(
    monkeypatch: pytest.MonkeyPatch, read: Any, env: str, default: float
) -> None:
    monkeypatch.delenv(env, raising=False)
    assert read() == default
    monkeypatch.setenv(env, "2.5")
    assert read() == 2.5
    for bad in ("soon", "0", "-3"):  # not a positive number: the default
        monkeypatch.setenv(env, bad)
        assert read() == default
