"""infra.sqlite: the one SQLite helper behind the ledger and the learning store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tradeflow.infra.sqlite import SqliteDb


class StoreBroke(Exception):
    """The caller's own error type: infra must raise this, never a bare sqlite3 error."""


V1 = {1: ("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",)}
# A data migration that is not idempotent: running it twice would leave two rows.
V2 = V1 | {2: ("INSERT INTO notes (text) VALUES ('seeded by v2')",)}


def open_db(path: Path, migrations: dict[int, tuple[str, ...]] = V1, **kw: int) -> SqliteDb:
    return SqliteDb(path, label="test store", error=StoreBroke, migrations=migrations, **kw)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def write(db: SqliteDb, *statements: str, then: Exception | None = None) -> None:
    """One write transaction running `statements`, then raising `then` when given."""
    with db.write("add") as c:
        for statement in statements:
            c.execute(statement)
        if then is not None:
            raise then


def count(db: SqliteDb) -> int:
    with db.read("count") as c:
        return int(c.execute("SELECT COUNT(*) FROM notes").fetchone()[0])


def test_a_failed_write_rolls_back_every_statement_and_raises_the_callers_error(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.sqlite")
    first, null = "INSERT INTO notes (text) VALUES ('first')", "INSERT INTO notes (text) VALUES (NULL)"
    with pytest.raises(StoreBroke, match=r"test store write failed \(add\): NOT NULL"):
        write(db, first, null)
    # Other errors pass through as they are, and roll back too.
    with pytest.raises(ValueError, match="not sqlite"):
        write(db, "INSERT INTO notes (text) VALUES ('second')", then=ValueError("not sqlite"))
    assert count(db) == 0
    write(db, "INSERT INTO notes (text) VALUES ('third')")  # the connection is usable again
    db.close()
    assert rows(tmp_path / "s.sqlite", "SELECT text FROM notes") == [("third",)]


def test_each_migration_is_applied_once_across_reopens_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    open_db(path).close()
    open_db(path).close()
    assert rows(path, "SELECT version FROM schema_version") == [(1,)]
    for _ in range(3):
        db = open_db(path, V2)
        assert db.latest_version == 2
        db.close()
    assert rows(path, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,)]
    assert rows(path, "SELECT text FROM notes") == [("seeded by v2",)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_database_newer_than_the_code_is_refused_with_the_callers_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    open_db(path, V2).close()
    with pytest.raises(StoreBroke, match=r"test store .*s\.sqlite has schema v2, newer than this code \(v1\)"):
        open_db(path)


def test_sqlite_failures_on_open_and_read_map_to_the_callers_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(StoreBroke, match=r"cannot open test store .*garbage\.sqlite: file is not a database"):
        open_db(garbage)
    db = open_db(tmp_path / "s.sqlite")
    db.close()
    with pytest.raises(StoreBroke, match=r"test store read failed \(count\)"):
        count(db)
    with pytest.raises(StoreBroke, match=r"test store write failed \(add\)"):
        write(db)


def test_a_current_database_opens_and_reads_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    open_db(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        db = open_db(path, busy_timeout_ms=100)
        assert count(db) == 0
        with pytest.raises(StoreBroke, match="locked"):
            write(db)
        db.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
