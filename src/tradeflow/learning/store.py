"""The learning store: one SQLite file in WAL mode holding the governed strategy parameters, the
experiments that may change them, the learning history and the mined trade patterns.

Rules the class keeps:
- `parameters` holds only adopted overrides, and only a concluded experiment writes one: the
  adoption, the experiment's new status and its "adopted" history row commit in one transaction
  (`conclude_experiment`), so the history never claims a change that did not happen, nor misses one.
- `learning_history` is append-only by construction: triggers abort any UPDATE or DELETE, whoever
  the writer is.
- An experiment's design (values, allocation, sample size, thresholds) is pre-registered: triggers
  refuse to change it after the insert, refuse to touch a concluded experiment and refuse deletes.
  A unique partial index allows at most one running experiment per strategy.
- Every SQLite failure surfaces as StoreError after a rollback.
- The store never reads the clock: `now` is always passed in, from the caller of the governance
  functions in `experiments.py` (the CLI, the flow's task) down.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.errors import InputError, StoreError
from tradeflow.infra.sqlite import SqliteDb
from tradeflow.learning.values import Experiment, ExperimentStatus, HistoryKind
from tradeflow.ledger.schema import to_json, ts_text, ts_value

_DESIGN_COLUMNS = "id, strategy, param, control, test, allocation, min_trades, alpha, min_effect, created_session"

# Each version's statements run once, in order, inside one transaction; IF NOT EXISTS keeps a
# half-created database safe to open again.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # session/experiment_id: which decision set the value, so an override is never anonymous.
        """CREATE TABLE IF NOT EXISTS parameters (
            strategy TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            updated_at TEXT NOT NULL,
            session TEXT NOT NULL,
            experiment_id TEXT,
            PRIMARY KEY (strategy, name)
        )""",
        # created_session/concluded_session are the trading sessions of the decisions (what pacing
        # reads); created_at/concluded_at are the UTC instants the rows were written.
        """CREATE TABLE IF NOT EXISTS experiments (
            id TEXT PRIMARY KEY,
            strategy TEXT NOT NULL,
            param TEXT NOT NULL,
            control REAL NOT NULL,
            test REAL NOT NULL,
            allocation REAL NOT NULL,
            min_trades INTEGER NOT NULL,
            alpha REAL NOT NULL,
            min_effect REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'adopted', 'rejected', 'abandoned')),
            created_session TEXT NOT NULL,
            created_at TEXT NOT NULL,
            concluded_session TEXT,
            concluded_at TEXT,
            result TEXT
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS experiments_one_running ON experiments(strategy) WHERE status = 'running'",
        f"""CREATE TRIGGER IF NOT EXISTS experiments_design_frozen BEFORE UPDATE OF {_DESIGN_COLUMNS} ON experiments
           BEGIN SELECT RAISE(ABORT, 'an experiment design is pre-registered: UPDATE refused'); END""",
        """CREATE TRIGGER IF NOT EXISTS experiments_concluded_frozen BEFORE UPDATE ON experiments
           WHEN OLD.status != 'running'
           BEGIN SELECT RAISE(ABORT, 'a concluded experiment is final: UPDATE refused'); END""",
        """CREATE TRIGGER IF NOT EXISTS experiments_no_delete BEFORE DELETE ON experiments
           BEGIN SELECT RAISE(ABORT, 'experiments are kept: DELETE refused'); END""",
        """CREATE TABLE IF NOT EXISTS learning_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            session TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN
                ('proposed', 'adopted', 'rejected', 'deferred', 'abandoned', 'pattern', 'note')),
            strategy TEXT,
            param TEXT,
            old_value REAL,
            new_value REAL,
            experiment_id TEXT,
            reasoning TEXT NOT NULL,
            evidence TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS learning_history_strategy ON learning_history(strategy, kind, session)",
        "CREATE INDEX IF NOT EXISTS learning_history_experiment ON learning_history(experiment_id, kind)",
        """CREATE TRIGGER IF NOT EXISTS learning_history_no_update BEFORE UPDATE ON learning_history
           BEGIN SELECT RAISE(ABORT, 'learning history is append-only: UPDATE refused'); END""",
        """CREATE TRIGGER IF NOT EXISTS learning_history_no_delete BEFORE DELETE ON learning_history
           BEGIN SELECT RAISE(ABORT, 'learning history is append-only: DELETE refused'); END""",
        """CREATE TABLE IF NOT EXISTS patterns (
            session TEXT NOT NULL,
            dimension TEXT NOT NULL,
            value TEXT NOT NULL,
            n INTEGER NOT NULL,
            win_rate REAL,
            mean_return REAL,
            effect REAL,
            p_mean REAL,
            p_win REAL,
            q_mean REAL,
            q_win REAL,
            significant INTEGER NOT NULL,
            PRIMARY KEY (session, dimension, value)
        )""",
    ),
}

# The version a migrated store is at: infra.sqlite numbers the migrations 1..n.
SCHEMA_VERSION = max(MIGRATIONS)

TABLES = ("schema_version", "parameters", "experiments", "learning_history", "patterns")

PATTERN_COLUMNS = (
    "dimension", "value", "n", "win_rate", "mean_return", "effect", "p_mean", "p_win", "q_mean", "q_win", "significant",
)  # fmt: skip
_PATTERN_FLOATS = ("win_rate", "mean_return", "effect", "p_mean", "p_win", "q_mean", "q_win")

_EXPERIMENT_COLUMNS = (
    "id, strategy, param, control, test, allocation, min_trades, alpha, min_effect, status, created_session, "
    "concluded_session"
)
_HISTORY_COLUMNS = "id, ts, session, kind, strategy, param, old_value, new_value, experiment_id, reasoning, evidence"

# The kinds that record a state change are written by the method that makes the change, in its
# transaction; `append_history` takes only the kinds that change nothing.
_FREE_KINDS = (HistoryKind.DEFERRED, HistoryKind.PATTERN, HistoryKind.NOTE)


@dataclass(frozen=True)
class HistoryRow:
    id: int
    ts: dt.datetime
    session: dt.date
    kind: HistoryKind
    strategy: str | None
    param: str | None
    old_value: float | None
    new_value: float | None
    experiment_id: str | None
    reasoning: str
    evidence: dict[str, Any]


def _experiment_from_row(row: tuple[Any, ...]) -> Experiment:
    (eid, strategy, param, control, test, allocation, min_trades, alpha, min_effect, status, created,
     concluded) = row  # fmt: skip
    return Experiment(
        id=eid,
        strategy=strategy,
        param=param,
        control=float(control),
        test=float(test),
        allocation=float(allocation),
        min_trades=int(min_trades),
        alpha=float(alpha),
        min_effect=float(min_effect),
        created=dt.date.fromisoformat(created),
        status=ExperimentStatus(status),
        concluded=None if concluded is None else dt.date.fromisoformat(concluded),
    )


def _finite_or_none(value: Any) -> float | None:
    # SQLite stores a NaN as NULL anyway; saying so here keeps a NaN from looking like a number.
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


class LearningStore:
    """The SQLite learning store. `now` is always passed in; the store never reads the clock."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        # synchronous=FULL (set by SqliteDb), as the ledger: an adoption is rare and must not be lost
        # to a power cut after the strategy has already traded on it.
        self._db = SqliteDb(
            self.path, label="learning store", error=StoreError, migrations=MIGRATIONS, busy_timeout_ms=busy_timeout_ms
        )

    # --- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LearningStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._db.read("schema_version") as c:
            return int(c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @staticmethod
    def _history(
        c: sqlite3.Connection,
        kind: HistoryKind,
        *,
        session: dt.date,
        now: dt.datetime,
        reasoning: str,
        strategy: str | None = None,
        param: str | None = None,
        old_value: float | None = None,
        new_value: float | None = None,
        experiment_id: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> int:
        if not reasoning.strip():
            # A history row without its reasoning is exactly what the issue forbids.
            raise InputError(f"learning history row {kind!s} needs its reasoning")
        cur = c.execute(
            f"INSERT INTO learning_history ({_HISTORY_COLUMNS.removeprefix('id, ')}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (ts_text(now), session.isoformat(), str(kind), strategy, param, _finite_or_none(old_value),
             _finite_or_none(new_value), experiment_id, reasoning, to_json(evidence or {})),
        )  # fmt: skip
        return int(cur.lastrowid or 0)

    # --- parameters -----------------------------------------------------------------------------

    def params(self, strategy: str) -> dict[str, float]:
        """The adopted overrides of `strategy` (not its defaults: the strategy owns those)."""
        with self._db.read("params") as c:
            rows = c.execute("SELECT name, value FROM parameters WHERE strategy = ? ORDER BY name", (strategy,))
            return {name: float(value) for name, value in rows.fetchall()}

    @staticmethod
    def _set_param(
        c: sqlite3.Connection,
        strategy: str,
        name: str,
        value: float,
        *,
        session: dt.date,
        experiment_id: str,
        now: dt.datetime,
    ) -> None:
        """Write one override. Internal: only `conclude_experiment` calls it, inside the transaction
        that also writes the adoption's history row, so no value changes without its reasoning."""
        if not math.isfinite(value):
            raise InputError(f"parameter {strategy}.{name} must be finite, got {value!r}")
        c.execute(
            "INSERT INTO parameters (strategy, name, value, updated_at, session, experiment_id) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (strategy, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
            "session = excluded.session, experiment_id = excluded.experiment_id",
            (strategy, name, float(value), ts_text(now), session.isoformat(), experiment_id),
        )

    # --- experiments ----------------------------------------------------------------------------

    def insert_experiment(
        self, experiment: Experiment, *, reasoning: str, now: dt.datetime, evidence: dict[str, Any] | None = None
    ) -> None:
        """Register a running experiment and its "proposed" history row, together. InputError when
        the strategy already runs one or the id is taken."""
        with self._db.write("insert_experiment") as c:
            self._insert_experiment(c, experiment, reasoning=reasoning, now=now, evidence=evidence)

    def _insert_experiment(
        self,
        c: sqlite3.Connection,
        e: Experiment,
        *,
        reasoning: str,
        now: dt.datetime,
        evidence: dict[str, Any] | None,
    ) -> None:
        if e.status != ExperimentStatus.RUNNING:
            raise InputError(f"experiment {e.id}: only a running experiment can be registered, not {e.status!s}")
        running = c.execute(
            "SELECT id FROM experiments WHERE strategy = ? AND status = 'running'", (e.strategy,)
        ).fetchone()
        if running is not None:
            raise InputError(f"strategy {e.strategy!r} already runs experiment {running[0]!r}: one at a time")
        if c.execute("SELECT 1 FROM experiments WHERE id = ?", (e.id,)).fetchone():
            raise InputError(f"experiment id {e.id!r} is already taken")
        c.execute(
            "INSERT INTO experiments (id, strategy, param, control, test, allocation, min_trades, alpha, min_effect, "
            "status, created_session, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.strategy, e.param, e.control, e.test, e.allocation, e.min_trades, e.alpha, e.min_effect,
             str(e.status), e.created.isoformat(), ts_text(now)),
        )  # fmt: skip
        design = {
            "control": e.control, "test": e.test, "allocation": e.allocation, "min_trades": e.min_trades,
            "alpha": e.alpha, "min_effect": e.min_effect,
        }  # fmt: skip
        self._history(
            c, HistoryKind.PROPOSED, session=e.created, now=now, reasoning=reasoning, strategy=e.strategy,
            param=e.param, old_value=e.control, new_value=e.test, experiment_id=e.id,
            evidence={"design": design, **(evidence or {})},
        )  # fmt: skip

    def conclude_experiment(
        self,
        experiment_id: str,
        status: ExperimentStatus,
        *,
        session: dt.date,
        reasoning: str,
        now: dt.datetime,
        result: dict[str, Any] | None = None,
        new_value: float | None = None,
        follow_up: Experiment | None = None,
        follow_up_reasoning: str = "",
    ) -> None:
        """End a running experiment in one transaction: its status and result, its history row
        (kind = the status), and for an adoption the parameter override (old value = the control).
        A `follow_up` experiment is registered in the same transaction, so a capped adoption is
        never left without the experiment that continues it."""
        status = ExperimentStatus(status)
        if status == ExperimentStatus.RUNNING:
            raise InputError("an experiment is concluded as adopted, rejected or abandoned, not running")
        if (status == ExperimentStatus.ADOPTED) != (new_value is not None):
            raise InputError("a new value goes with an adoption, and only with one")
        with self._db.write("conclude_experiment") as c:
            row = c.execute(f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
            if row is None:
                raise InputError(f"no experiment {experiment_id!r}")
            e = _experiment_from_row(row)
            if e.status != ExperimentStatus.RUNNING:
                raise InputError(f"experiment {experiment_id!r} is already {e.status!s}")
            c.execute(
                "UPDATE experiments SET status = ?, concluded_session = ?, concluded_at = ?, result = ? WHERE id = ?",
                (str(status), session.isoformat(), ts_text(now), to_json(result or {}), experiment_id),
            )
            if new_value is not None:
                self._set_param(c, e.strategy, e.param, new_value, session=session, experiment_id=e.id, now=now)
            self._history(
                c, HistoryKind(str(status)), session=session, now=now, reasoning=reasoning, strategy=e.strategy,
                param=e.param, old_value=e.control, new_value=new_value, experiment_id=e.id, evidence=result,
            )  # fmt: skip
            if follow_up is not None:
                self._insert_experiment(
                    c, follow_up, reasoning=follow_up_reasoning, now=now, evidence={"follow_up_of": e.id}
                )

    def experiments(self, status: ExperimentStatus | str | None = None) -> list[Experiment]:
        sql = f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments"
        args: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (str(ExperimentStatus(status)),)
        with self._db.read("experiments") as c:
            rows = c.execute(sql + " ORDER BY created_session, created_at, id", args).fetchall()
        return [_experiment_from_row(r) for r in rows]

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        with self._db.read("get_experiment") as c:
            row = c.execute(f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        return None if row is None else _experiment_from_row(row)

    def experiment_result(self, experiment_id: str) -> dict[str, Any] | None:
        """The analysis a concluded experiment was decided on (None while it runs)."""
        with self._db.read("experiment_result") as c:
            row = c.execute("SELECT result FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def running_experiment(self, strategy: str) -> Experiment | None:
        with self._db.read("running_experiment") as c:
            row = c.execute(
                f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE strategy = ? AND status = 'running'", (strategy,)
            ).fetchone()
        return None if row is None else _experiment_from_row(row)

    def count_experiments(self, strategy: str) -> int:
        with self._db.read("count_experiments") as c:
            return int(c.execute("SELECT COUNT(*) FROM experiments WHERE strategy = ?", (strategy,)).fetchone()[0])

    def last_change(self, strategy: str) -> dt.date | None:
        """The session of the strategy's last adopted parameter change (any parameter)."""
        with self._db.read("last_change") as c:
            row = c.execute(
                "SELECT MAX(session) FROM learning_history WHERE strategy = ? AND kind = 'adopted'", (strategy,)
            ).fetchone()
        return None if row[0] is None else dt.date.fromisoformat(row[0])

    # --- history --------------------------------------------------------------------------------

    def append_history(
        self,
        kind: HistoryKind | str,
        *,
        session: dt.date,
        reasoning: str,
        now: dt.datetime,
        strategy: str | None = None,
        param: str | None = None,
        old_value: float | None = None,
        new_value: float | None = None,
        experiment_id: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> int:
        """Append a row that changes nothing else (deferred, pattern, note) and return its id."""
        kind = HistoryKind(kind)
        if kind not in _FREE_KINDS:
            raise InputError(f"history kind {kind!s} is written only with the change it records")
        with self._db.write("append_history") as c:
            return self._history(
                c, kind, session=session, now=now, reasoning=reasoning, strategy=strategy, param=param,
                old_value=old_value, new_value=new_value, experiment_id=experiment_id, evidence=evidence,
            )  # fmt: skip

    def history(
        self,
        strategy: str | None = None,
        *,
        kind: HistoryKind | str | None = None,
        experiment_id: str | None = None,
    ) -> list[HistoryRow]:
        """History rows in the order they were written, optionally filtered."""
        clauses, args = [], []
        for column, value in (("strategy", strategy), ("kind", kind), ("experiment_id", experiment_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(str(HistoryKind(value)) if column == "kind" else str(value))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db.read("history") as c:
            rows = c.execute(f"SELECT {_HISTORY_COLUMNS} FROM learning_history{where} ORDER BY id", args).fetchall()
        out = []
        for rid, ts, session, k, strat, param, old, new, eid, reasoning, evidence in rows:
            when = ts_value(ts)
            assert when is not None  # NOT NULL column
            out.append(
                HistoryRow(
                    id=int(rid), ts=when, session=dt.date.fromisoformat(session), kind=HistoryKind(k),
                    strategy=strat, param=param, old_value=None if old is None else float(old),
                    new_value=None if new is None else float(new), experiment_id=eid, reasoning=reasoning,
                    evidence=dict(json.loads(evidence)),
                )
            )  # fmt: skip
        return out

    # --- patterns -------------------------------------------------------------------------------

    def record_patterns(self, session: dt.date, frame: pd.DataFrame) -> int:
        """Replace the patterns of `session` with the rows of `frame` (columns PATTERN_COLUMNS, taken
        by name; others are ignored). Returns the number of rows written."""
        missing = [col for col in PATTERN_COLUMNS if col not in frame.columns]
        if missing:
            raise InputError(f"patterns frame lacks columns {missing}")
        rows = []
        for rec in frame.loc[:, list(PATTERN_COLUMNS)].itertuples(index=False, name=None):
            values = dict(zip(PATTERN_COLUMNS, rec, strict=True))
            rows.append(
                (session.isoformat(), str(values["dimension"]), str(values["value"]), int(values["n"]),
                 *(_finite_or_none(values[col]) for col in _PATTERN_FLOATS), int(bool(values["significant"])))
            )  # fmt: skip
        with self._db.write("record_patterns") as c:
            c.execute("DELETE FROM patterns WHERE session = ?", (session.isoformat(),))
            c.executemany(f"INSERT INTO patterns (session, {', '.join(PATTERN_COLUMNS)}) VALUES ({'?,' * 11}?)", rows)
        return len(rows)

    def patterns(self, session: dt.date | None = None) -> pd.DataFrame:
        """Stored patterns, one row per (session, dimension, value); `session` is a date column."""
        sql = f"SELECT session, {', '.join(PATTERN_COLUMNS)} FROM patterns"
        args: tuple[str, ...] = ()
        if session is not None:
            sql += " WHERE session = ?"
            args = (session.isoformat(),)
        with self._db.read("patterns") as c:
            rows = c.execute(sql + " ORDER BY session, dimension, value", args).fetchall()
        frame = pd.DataFrame(rows, columns=["session", *PATTERN_COLUMNS])
        frame["session"] = [dt.date.fromisoformat(s) for s in frame["session"]]
        frame["n"] = frame["n"].astype("int64")
        for col in _PATTERN_FLOATS:
            frame[col] = frame[col].astype("float64")  # NULL (a NaN on the way in) reads back as NaN
        frame["significant"] = frame["significant"].astype(bool)
        return frame

    # --- debugging ------------------------------------------------------------------------------

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every table as a list of row dicts, for debugging and bug reports."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._db.read("dump") as c:
            for table in TABLES:
                cur = c.execute(f"SELECT * FROM {table}")
                names = [d[0] for d in cur.description]
                out[table] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return out
