"""The learning store: WAL, idempotent schema, append-only history, pre-registered experiment
designs, atomic conclusions, patterns round-trip."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tradeflow.errors import InputError, StoreError
from tradeflow.learning import Experiment, ExperimentStatus, HistoryKind, LearningStore
from tradeflow.learning.store import PATTERN_COLUMNS, SCHEMA_VERSION

NOW = dt.datetime(2025, 3, 3, 21, 0, tzinfo=dt.UTC)
D0 = dt.date(2025, 3, 3)


def experiment(
    eid: str = "e1", strategy: str = "rsi", param: str = "lower", control: float = 45.0, test: float = 50.0
) -> Experiment:
    return Experiment(id=eid, strategy=strategy, param=param, control=control, test=test, created=D0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LearningStore]:
    with LearningStore(tmp_path / "learning.sqlite") as s:
        yield s


def raw(store: LearningStore) -> sqlite3.Connection:
    """A second writer, as a person with the sqlite3 shell would be."""
    return sqlite3.connect(store.path, isolation_level=None)


def test_the_store_is_in_wal_mode_and_reopens_without_migrating_twice(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "learning.sqlite"
    with LearningStore(path) as s:
        s.insert_experiment(experiment(), reasoning="r", now=NOW)
    with LearningStore(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert [e.id for e in s.experiments()] == ["e1"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "learning.sqlite"
    LearningStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer than this code"):
        LearningStore(path)


@pytest.mark.parametrize("statement", ["UPDATE learning_history SET reasoning = 'x'", "DELETE FROM learning_history"])
def test_history_rows_refuse_update_and_delete(store: LearningStore, statement: str) -> None:
    store.append_history(HistoryKind.NOTE, session=D0, reasoning="a note", now=NOW)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw(store).execute(statement)
    assert [h.reasoning for h in store.history()] == ["a note"]


def test_an_experiment_design_cannot_change_after_registration(store: LearningStore) -> None:
    store.insert_experiment(experiment(), reasoning="r", now=NOW)
    with pytest.raises(sqlite3.DatabaseError, match="pre-registered"):
        raw(store).execute("UPDATE experiments SET min_trades = 10 WHERE id = 'e1'")
    e = store.get_experiment("e1")
    assert e is not None
    assert e.min_trades == 30


def test_a_concluded_experiment_is_final_and_no_experiment_is_deleted(store: LearningStore) -> None:
    store.insert_experiment(experiment(), reasoning="r", now=NOW)
    store.conclude_experiment("e1", ExperimentStatus.REJECTED, session=D0, reasoning="no effect", now=NOW)
    conn = raw(store)
    with pytest.raises(sqlite3.DatabaseError, match="final"):
        conn.execute("UPDATE experiments SET status = 'adopted' WHERE id = 'e1'")
    with pytest.raises(sqlite3.DatabaseError, match="DELETE refused"):
        conn.execute("DELETE FROM experiments")
    with pytest.raises(InputError, match="already rejected"):
        store.conclude_experiment("e1", ExperimentStatus.ADOPTED, session=D0, reasoning="x", now=NOW, new_value=50.0)


def test_a_strategy_runs_one_experiment_at_a_time(store: LearningStore) -> None:
    store.insert_experiment(experiment("e1"), reasoning="r", now=NOW)
    with pytest.raises(InputError, match="already runs experiment 'e1'"):
        store.insert_experiment(experiment("e2", param="upper", control=60.0, test=65.0), reasoning="r", now=NOW)
    # The database itself refuses, not only the method.
    with pytest.raises(sqlite3.IntegrityError):
        raw(store).execute(
            "INSERT INTO experiments (id, strategy, param, control, test, allocation, min_trades, alpha, min_effect, "
            "status, created_session, created_at) VALUES ('e3','rsi','upper',1,2,0.2,30,0.05,0.005,'running','x','x')"
        )
    store.insert_experiment(experiment("e4", strategy="sma"), reasoning="r", now=NOW)  # another strategy may
    assert {e.id for e in store.experiments(ExperimentStatus.RUNNING)} == {"e1", "e4"}


def test_registration_writes_the_experiment_and_its_proposed_row(store: LearningStore) -> None:
    store.insert_experiment(experiment(), reasoning="why we test", now=NOW, evidence={"hypothesis": "h"})
    running = store.running_experiment("rsi")
    assert running is not None
    assert running.id == "e1"
    assert running.status == ExperimentStatus.RUNNING
    [row] = store.history()
    assert (row.kind, row.old_value, row.new_value, row.experiment_id) == (HistoryKind.PROPOSED, 45.0, 50.0, "e1")
    assert row.reasoning == "why we test"
    assert row.evidence["design"]["min_trades"] == 30
    assert row.evidence["hypothesis"] == "h"
    assert row.ts == NOW
    assert row.session == D0


def test_an_adoption_writes_value_status_and_history_together(store: LearningStore) -> None:
    store.insert_experiment(experiment(), reasoning="r", now=NOW)
    day = D0 + dt.timedelta(days=90)
    store.conclude_experiment(
        "e1", ExperimentStatus.ADOPTED, session=day, reasoning="test better", now=NOW, result={"p": 0.01},
        new_value=50.0,
    )  # fmt: skip
    assert store.params("rsi") == {"lower": 50.0}
    assert store.params("sma") == {}
    e = store.get_experiment("e1")
    assert e is not None
    assert (e.status, e.concluded) == (ExperimentStatus.ADOPTED, day)
    assert store.experiment_result("e1") == {"p": 0.01}
    adopted = store.history(kind=HistoryKind.ADOPTED)
    assert [(h.old_value, h.new_value, h.session, h.reasoning) for h in adopted] == [(45.0, 50.0, day, "test better")]
    assert store.last_change("rsi") == day
    assert store.last_change("sma") is None


def test_a_conclusion_that_fails_midway_leaves_nothing_behind(store: LearningStore) -> None:
    store.insert_experiment(experiment("e1"), reasoning="r", now=NOW)
    store.insert_experiment(experiment("taken", strategy="sma"), reasoning="r", now=NOW)
    follow_up = experiment("taken", control=50.0, test=60.0)  # its id is taken: the insert fails last
    with pytest.raises(InputError, match="already taken"):
        store.conclude_experiment(
            "e1", ExperimentStatus.ADOPTED, session=D0, reasoning="x", now=NOW, new_value=50.0, follow_up=follow_up,
            follow_up_reasoning="follow-up",
        )  # fmt: skip
    assert store.params("rsi") == {}
    e = store.get_experiment("e1")
    assert e is not None
    assert e.status == ExperimentStatus.RUNNING
    assert [h.kind for h in store.history(strategy="rsi")] == [HistoryKind.PROPOSED]


def test_a_new_value_goes_with_an_adoption_only(store: LearningStore) -> None:
    store.insert_experiment(experiment(), reasoning="r", now=NOW)
    with pytest.raises(InputError):
        store.conclude_experiment("e1", ExperimentStatus.ADOPTED, session=D0, reasoning="x", now=NOW)
    with pytest.raises(InputError):
        store.conclude_experiment("e1", ExperimentStatus.REJECTED, session=D0, reasoning="x", now=NOW, new_value=50.0)
    with pytest.raises(InputError, match="no experiment"):
        store.conclude_experiment("nope", ExperimentStatus.REJECTED, session=D0, reasoning="x", now=NOW)


def test_append_history_takes_only_kinds_that_change_nothing(store: LearningStore) -> None:
    for kind in (HistoryKind.ADOPTED, HistoryKind.PROPOSED, HistoryKind.REJECTED, HistoryKind.ABANDONED):
        with pytest.raises(InputError, match="written only with the change"):
            store.append_history(kind, session=D0, reasoning="x", now=NOW)
    assert store.history() == []


def test_a_history_row_without_reasoning_is_refused(store: LearningStore) -> None:
    with pytest.raises(InputError, match="reasoning"):
        store.append_history(HistoryKind.NOTE, session=D0, reasoning="  ", now=NOW)


def test_history_filters_by_strategy_kind_and_experiment(store: LearningStore) -> None:
    store.insert_experiment(experiment("e1"), reasoning="r", now=NOW)
    store.append_history(
        HistoryKind.DEFERRED, session=D0, reasoning="wait", now=NOW, strategy="rsi", experiment_id="e1"
    )
    store.append_history(HistoryKind.NOTE, session=D0, reasoning="n", now=NOW, strategy="sma")
    assert [h.kind for h in store.history("rsi")] == [HistoryKind.PROPOSED, HistoryKind.DEFERRED]
    assert [h.reasoning for h in store.history(kind="deferred", experiment_id="e1")] == ["wait"]
    assert store.history(kind=HistoryKind.DEFERRED, experiment_id="e2") == []
    assert [h.id for h in store.history()] == sorted(h.id for h in store.history())


def pattern_frame(values: list[str], p: float) -> pd.DataFrame:
    rows = [
        {"value": v, "dimension": "weekday", "n": 40, "win_rate": 0.55, "mean_return": 0.002, "effect": 0.001,
         "p_mean": p, "p_win": math.nan, "q_mean": p, "q_win": math.nan, "significant": p < 0.05, "extra": "x"}
        for v in values
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_patterns_of_a_session_are_replaced_and_read_back_by_name(store: LearningStore) -> None:
    d1 = D0 + dt.timedelta(days=1)
    assert store.record_patterns(D0, pattern_frame(["Mon", "Tue"], 0.01)) == 2
    store.record_patterns(d1, pattern_frame(["Fri"], 0.2))
    store.record_patterns(D0, pattern_frame(["Wed"], 0.03))  # replaces D0's rows only
    frame = store.patterns()
    assert list(frame.columns) == ["session", *PATTERN_COLUMNS]
    assert list(zip(frame["session"], frame["value"], strict=True)) == [(D0, "Wed"), (d1, "Fri")]
    wed = store.patterns(D0).iloc[0]
    assert wed["p_mean"] == pytest.approx(0.03)
    assert math.isnan(wed["p_win"])  # NaN in, NaN out (NULL in the table)
    assert bool(wed["significant"]) is True
    assert int(wed["n"]) == 40
    assert store.patterns(D0 + dt.timedelta(days=9)).empty


def test_patterns_without_a_required_column_are_refused(store: LearningStore) -> None:
    with pytest.raises(InputError, match="q_win"):
        store.record_patterns(D0, pattern_frame(["Mon"], 0.1).drop(columns="q_win"))


def test_dump_lists_every_table(store: LearningStore) -> None:
    store.insert_experiment(experiment(), reasoning="r", now=NOW)
    dump = store.dump()
    assert set(dump) == {"schema_version", "parameters", "experiments", "learning_history", "patterns"}
    assert dump["experiments"][0]["id"] == "e1"
    assert dump["learning_history"][0]["kind"] == "proposed"


def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = LearningStore(tmp_path / "learning.sqlite")
    s.close()
    with pytest.raises(StoreError):
        s.params("rsi")
    with pytest.raises(StoreError):
        s.append_history(HistoryKind.NOTE, session=D0, reasoning="n", now=NOW)


def test_get_experiment_of_an_unknown_id_is_none(store: LearningStore) -> None:
    assert store.get_experiment("nope") is None
    assert store.experiment_result("nope") is None
    assert store.running_experiment("rsi") is None
