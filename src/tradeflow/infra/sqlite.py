"""One SQLite helper for every store: the connection set-up, schema migrations and transactions.

- WAL, so readers never wait for the writer, with synchronous=FULL: in WAL mode NORMAL survives a
  process kill but a power or OS failure may drop the last commits. A store's writes are few and
  small (a tick writes a few dozen every five minutes), so one fsync per commit costs nothing that
  matters, and a lost ledger intent or learning adoption is worth far more.
- isolation_level=None: `write` issues BEGIN IMMEDIATE itself, so the write lock is taken up front
  (busy_timeout applies) instead of failing mid-transaction on a lock upgrade.
- Every sqlite3 failure (locked, disk full, I/O error, a closed database) surfaces as the caller's
  error type, after a rollback: the caller sees one error type and the file holds the old state or
  the new one.
- A current database opens without taking the write lock, so a reader (`tradeflow status`) can open
  it while a writer (the tick) holds it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

# Builds the caller's error from a one-line message (e.g. LedgerError): infra knows no tradeflow type.
ErrorFactory = Callable[[str], Exception]


class SqliteDb:
    """A SQLite file in WAL mode, migrated to the newest version of `migrations` on open.

    `migrations` maps each schema version (1, 2, ...) to the statements that take the schema from the
    version before to it; each version runs once, in one transaction, and is recorded in a
    `schema_version` table. `label` names the store in messages ("ledger", "learning store").
    """

    def __init__(
        self,
        path: Path,
        *,
        label: str,
        error: ErrorFactory,
        migrations: Mapping[int, Sequence[str]],
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = Path(path)
        self.label = label
        self._error = error
        self._migrations = migrations
        if sorted(migrations) != list(range(1, len(migrations) + 1)):
            # A gap would skip a step for some databases and not others: a programming error.
            raise ValueError(f"{label} migrations must be numbered 1..n, got {sorted(migrations)}")
        self.latest_version = len(migrations)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise error(f"cannot open {label} {self.path}: {exc}") from exc
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise error(f"{label} {self.path} refused WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise error(f"cannot open {label} {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all its statements commit together or none do. `what` names
        the operation in the error message."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(f"{self.label} write failed ({what}): {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite already rolls back by itself on some errors (SQLITE_FULL): only roll back
                # what is still open.
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(f"{self.label} write failed ({what}): {exc}") from exc
                raise

    @contextmanager
    def read(self, what: str) -> Iterator[sqlite3.Connection]:
        """A read snapshot (WAL readers never wait for the writer)."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(f"{self.label} read failed ({what}): {exc}") from exc

    def _migrate(self) -> None:
        # Checked without the write lock first: a current database must open while a writer holds it.
        latest = self.latest_version
        known = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if known and self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == latest:
            return
        with self.write("migrate") as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            current = c.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > latest:
                raise self._error(f"{self.label} {self.path} has schema v{current}, newer than this code (v{latest})")
            for version in range(current + 1, latest + 1):
                for statement in self._migrations[version]:
                    c.execute(statement)
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
