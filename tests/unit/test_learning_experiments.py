"""Governed experiments: design floors, deterministic arms, the fixed-horizon analysis, review with
pacing and capped shifts, and the parameters a strategy reads."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tradeflow.errors import InputError
from tradeflow.learning import (
    Experiment,
    ExperimentStatus,
    Governance,
    HistoryKind,
    LearningStore,
    Verdict,
    abandon,
    analyse,
    assign_arm,
    params_for,
    propose,
    review,
)

NOW = dt.datetime(2025, 1, 2, 21, 0, tzinfo=dt.UTC)
D0 = dt.date(2025, 1, 2)
COLUMNS = ["trade_id", "strategy", "entry_session", "exit_session", "return_net", "arm", "experiment_id"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LearningStore]:
    with LearningStore(tmp_path / "learning.sqlite") as s:
        yield s


def exp(**kw: object) -> Experiment:
    base: dict[str, object] = {"id": "e1", "strategy": "rsi", "param": "lower", "control": 45.0, "test": 50.0}
    base["created"] = D0
    base.update(kw)
    return Experiment(**base)  # type: ignore[arg-type]


def trades(
    experiment_id: str,
    control: Sequence[float],
    test: Sequence[float],
    start: dt.date = D0,
    strategy: str = "rsi",
    prefix: str = "",
) -> pd.DataFrame:
    """Control and test trades interleaved one per day from `start`, each exiting the next day."""
    rows, day, i = [], start, 0
    queues = {"control": list(control), "test": list(test)}
    while queues["control"] or queues["test"]:
        for arm in ("control", "test"):
            if queues[arm]:
                day += dt.timedelta(days=1)
                ret = queues[arm].pop(0)
                rows.append((f"{prefix}t{i}", strategy, day, day + dt.timedelta(days=1), ret, arm, experiment_id))
                i += 1
    return pd.DataFrame(rows, columns=COLUMNS)


def noise(n: int, mean: float, sd: float = 0.01, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, sd, n))


# --- the design ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("allocation", 0.5, "allocation"),
        ("allocation", 0.0, "allocation"),
        ("min_trades", 29, "min_trades"),
        ("test", 45.0, "nothing to test"),
        ("control", math.inf, "finite"),
        ("alpha", 1.0, "alpha"),
        ("min_effect", -0.01, "min_effect"),
    ],
)
def test_an_experiment_below_the_issues_floors_is_refused(field: str, value: float, match: str) -> None:
    with pytest.raises(InputError, match=match):
        exp(**{field: value})


def test_governance_looser_than_the_issue_is_refused() -> None:
    with pytest.raises(InputError, match="max_shift"):
        Governance(max_shift=0.25)
    with pytest.raises(InputError, match="min_days"):
        Governance(min_days_between_changes=29)


@pytest.mark.parametrize(
    ("control", "test", "expected", "capped"),
    [
        (10.0, 12.0, 12.0, False),  # exactly 20%: reached
        (45.0, 60.0, 54.0, True),
        (45.0, 30.0, 36.0, True),
        (-10.0, -20.0, -12.0, True),
        (10.0, 9.0, 9.0, False),
    ],
)
def test_a_shift_is_capped_at_20_percent_of_the_control(
    control: float, test: float, expected: float, capped: bool
) -> None:
    assert Governance().paced_value(control, test) == (expected, capped)


# --- arms ---------------------------------------------------------------------------------------


def test_about_20_percent_of_sessions_go_to_test_and_the_assignment_is_reproducible() -> None:
    sessions = [D0 + dt.timedelta(days=i) for i in range(5000)]
    arms = [assign_arm("rsi.lower.1", s, 0.2) for s in sessions]
    share = arms.count("test") / len(arms)
    assert 0.18 <= share <= 0.22
    assert set(arms) == {"control", "test"}
    assert [assign_arm("rsi.lower.1", s, 0.2) for s in sessions] == arms
    # Another experiment gets other sessions, or every experiment would test on the same days.
    other = [assign_arm("rsi.lower.2", s, 0.2) for s in sessions]
    assert other != arms


def test_the_arm_is_the_documented_hash_of_id_and_session() -> None:
    import hashlib

    digest = hashlib.sha256(b"x:2025-01-02").digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    assert assign_arm("x", D0, u + 1e-9) == "test"
    assert assign_arm("x", D0, u - 1e-9) == "control"


def test_assign_arm_refuses_a_datetime_for_a_session() -> None:
    with pytest.raises(InputError, match="session date"):
        assign_arm("x", dt.datetime(2025, 1, 2, 15, 0), 0.2)


# --- analysis -----------------------------------------------------------------------------------


def test_an_arm_short_of_min_trades_waits_and_shows_no_figures() -> None:
    a = analyse(exp(), trades("e1", noise(40, 0.0), noise(29, 0.05, seed=1)))
    assert a.verdict == Verdict.WAITING
    assert not a.ready
    assert (a.control.seen, a.test.seen, a.test.n) == (40, 29, 29)
    assert math.isnan(a.effect)
    assert math.isnan(a.p_value)
    assert math.isnan(a.test.mean)
    assert "29/30" in a.reasoning


def test_a_significant_improvement_above_the_minimum_is_adopted() -> None:
    control, test = noise(30, 0.0, seed=1), noise(30, 0.02, seed=2)
    a = analyse(exp(), trades("e1", control, test))
    assert a.verdict == Verdict.ADOPT
    assert a.p_value == pytest.approx(stats.ttest_ind(test, control, equal_var=False).pvalue)
    assert a.effect == pytest.approx(np.mean(test) - np.mean(control))
    assert a.control.win_rate == pytest.approx(np.mean(np.array(control) > 0))
    assert a.test.median == pytest.approx(np.median(test))
    for figure in ("control n=30", "test n=30", f"effect {a.effect * 100:+.2f} pp", f"p={a.p_value:.4f}", "0.50 pp"):
        assert figure in a.reasoning


def test_a_significantly_better_control_is_rejected() -> None:
    a = analyse(exp(), trades("e1", noise(30, 0.02, seed=1), noise(30, 0.0, seed=2)))
    assert a.verdict == Verdict.REJECT
    assert a.control_better
    assert "control is significantly better" in a.reasoning


def test_a_significant_effect_below_the_minimum_is_rejected() -> None:
    a = analyse(exp(), trades("e1", noise(30, 0.0, 0.0005, 1), noise(30, 0.003, 0.0005, 2)))
    assert a.p_value < 1e-6
    assert a.verdict == Verdict.REJECT
    assert "not above the minimum" in a.reasoning


def test_arms_without_variance_are_rejected_for_lack_of_evidence() -> None:
    a = analyse(exp(), trades("e1", [0.01] * 30, [0.02] * 30))
    assert a.verdict == Verdict.REJECT
    assert "undefined" in a.reasoning


def test_only_the_first_min_trades_per_arm_by_exit_decide() -> None:
    """Fixed horizon: trades past the pre-registered sample cannot change the verdict, however
    strong they are."""
    control, test = noise(30, 0.0, seed=1), noise(30, 0.0, seed=2)
    first = trades("e1", control, test)
    later = trades("e1", noise(100, -0.05, seed=3), noise(100, 0.05, seed=4), start=D0 + dt.timedelta(days=200))
    later["trade_id"] = "late-" + later["trade_id"]
    both = pd.concat([later, first], ignore_index=True).sample(frac=1.0, random_state=0)  # row order shuffled
    a, b = analyse(exp(), first), analyse(exp(), both)
    assert a.verdict == b.verdict == Verdict.REJECT
    assert (b.p_value, b.effect) == (a.p_value, a.effect)
    assert (b.control.seen, b.control.n) == (130, 30)
    # The later trades alone would have been adopted: the horizon is what keeps them out.
    assert analyse(exp(), later).verdict == Verdict.ADOPT


def test_ties_in_exit_order_break_by_entry_then_trade_id() -> None:
    frame = trades("e1", noise(31, 0.0, seed=1), noise(30, 0.02, seed=2))
    frame["exit_session"] = D0 + dt.timedelta(days=400)  # every trade exits the same day
    frame.loc[frame.index[-1], "return_net"] = 99.0  # the last control trade by entry: outside the sample
    assert analyse(exp(), frame).control.mean < 1.0
    assert analyse(exp(), frame.iloc[::-1]).reasoning == analyse(exp(), frame).reasoning


def test_trades_of_other_experiments_and_without_an_arm_are_ignored() -> None:
    mine = trades("e1", noise(30, 0.0, seed=1), noise(30, 0.0, seed=2))
    other = trades("e2", noise(30, -0.1, seed=3), noise(30, 0.1, seed=4), prefix="o")
    plain = trades("", noise(30, -0.1, seed=5), [], prefix="p").assign(arm="")
    a = analyse(exp(), pd.concat([mine, other, plain], ignore_index=True))
    assert a == analyse(exp(), mine)


def test_a_non_finite_return_is_refused() -> None:
    frame = trades("e1", noise(30, 0.0), noise(30, 0.0, seed=1))
    frame.loc[0, "return_net"] = math.nan
    with pytest.raises(InputError, match="non-finite"):
        analyse(exp(), frame)


def test_trades_without_the_needed_columns_are_refused() -> None:
    with pytest.raises(InputError, match="arm"):
        analyse(exp(), trades("e1", [0.0], [0.0]).drop(columns="arm"))


# --- propose / review ---------------------------------------------------------------------------


def test_a_proposal_is_registered_with_its_reasoning(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, hypothesis="earlier entries catch more", now=NOW)
    assert store.running_experiment("rsi") == e
    assert e.id == "rsi.lower.2025-01-02.1"
    [row] = store.history()
    assert row.kind == HistoryKind.PROPOSED
    assert "earlier entries catch more" in row.reasoning
    assert "first 30 trades per arm" in row.reasoning


def test_a_second_proposal_for_a_running_strategy_is_refused(store: LearningStore) -> None:
    propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    with pytest.raises(InputError, match="already runs"):
        propose(store, "rsi", "upper", 60.0, 65.0, D0, now=NOW)


def test_a_proposal_from_zero_is_refused(store: LearningStore) -> None:
    with pytest.raises(InputError, match="control is 0"):
        propose(store, "rsi", "offset", 0.0, 1.0, D0, now=NOW)
    assert store.experiments() == []


def test_a_proposal_whose_control_is_not_the_adopted_value_is_refused(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    review(store, trades(e.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2)), D0 + dt.timedelta(days=90), now=NOW)
    assert store.params("rsi") == {"lower": 50.0}
    with pytest.raises(InputError, match="not the adopted value"):
        propose(store, "rsi", "lower", 45.0, 48.0, D0 + dt.timedelta(days=91), now=NOW)


def test_a_waiting_experiment_records_nothing(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    frame = trades(e.id, noise(30, 0.0), noise(10, 0.05, seed=1))
    for k in range(60):
        assert review(store, frame, D0 + dt.timedelta(days=k), now=NOW) == []
    assert [h.kind for h in store.history()] == [HistoryKind.PROPOSED]


def test_a_rejection_concludes_the_experiment_with_its_reasoning(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    day = D0 + dt.timedelta(days=90)
    [action] = review(store, trades(e.id, noise(30, 0.0, seed=1), noise(30, 0.0, seed=2)), day, now=NOW)
    assert action.kind == HistoryKind.REJECTED
    concluded = store.get_experiment(e.id)
    assert concluded is not None
    assert (concluded.status, concluded.concluded) == (ExperimentStatus.REJECTED, day)
    row = store.history(kind=HistoryKind.REJECTED)[0]
    assert row.reasoning == action.reasoning
    assert "not significant" in row.reasoning
    assert row.evidence["control"]["n"] == 30
    assert store.params("rsi") == {}


def test_review_sees_only_trades_exited_by_its_session(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    frame = trades(e.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2))
    last_exit = max(frame["exit_session"])
    assert review(store, frame, last_exit - dt.timedelta(days=1), now=NOW) == []
    assert [a.kind for a in review(store, frame, last_exit, now=NOW)] == [HistoryKind.ADOPTED]


def test_an_adoption_within_the_shift_limit_reaches_the_test_value(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    day = D0 + dt.timedelta(days=90)
    [action] = review(store, trades(e.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2)), day, now=NOW)
    assert (action.kind, action.old_value, action.new_value, action.capped) == (HistoryKind.ADOPTED, 45.0, 50.0, False)
    assert store.params("rsi") == {"lower": 50.0}
    assert store.running_experiment("rsi") is None  # nothing left to approach
    row = store.history(kind=HistoryKind.ADOPTED)[0]
    assert (row.old_value, row.new_value, row.evidence["capped"]) == (45.0, 50.0, False)
    assert "45 -> 50" in row.reasoning


def test_a_large_change_is_capped_at_20_percent_and_continued_by_a_follow_up(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 60.0, D0, now=NOW)
    day = D0 + dt.timedelta(days=90)
    adopted, proposed = review(store, trades(e.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2)), day, now=NOW)
    assert (adopted.new_value, adopted.capped) == (54.0, True)
    assert store.params("rsi") == {"lower": 54.0}
    follow_up = store.running_experiment("rsi")
    assert follow_up is not None
    assert (follow_up.id, follow_up.control, follow_up.test, follow_up.created) == (
        proposed.experiment_id,
        54.0,
        60.0,
        day,
    )
    assert adopted.follow_up_id == follow_up.id
    rows = store.history()
    assert [h.kind for h in rows] == [HistoryKind.PROPOSED, HistoryKind.ADOPTED, HistoryKind.PROPOSED]
    assert rows[1].evidence["capped"] is True
    assert f"follow-up of {e.id}" in rows[2].reasoning
    assert rows[2].evidence["follow_up_of"] == e.id


def test_a_second_adoption_within_30_days_is_deferred_once_then_adopted(store: LearningStore) -> None:
    first = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    changed = D0 + dt.timedelta(days=70)
    review(store, trades(first.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2)), changed, now=NOW)
    assert store.last_change("rsi") == changed

    second = propose(store, "rsi", "upper", 60.0, 66.0, changed, now=NOW)
    frame = trades(second.id, noise(30, 0.0, seed=3), noise(30, 0.03, seed=4), start=changed - dt.timedelta(days=62))
    day = changed + dt.timedelta(days=10)
    [deferred] = review(store, frame, day, now=NOW)
    assert deferred.kind == HistoryKind.DEFERRED
    assert "2025-04-12" in deferred.reasoning  # eligible from last change + 30 days
    for k in range(11, 30):  # daily reviews until the pause ends write nothing more
        assert review(store, frame, changed + dt.timedelta(days=k), now=NOW) == []
    assert len(store.history(kind=HistoryKind.DEFERRED)) == 1
    assert store.params("rsi") == {"lower": 50.0}
    running = store.running_experiment("rsi")
    assert running is not None
    assert running.id == second.id

    [adopted] = review(store, frame, changed + dt.timedelta(days=30), now=NOW)
    assert (adopted.kind, adopted.new_value) == (HistoryKind.ADOPTED, 66.0)
    assert store.params("rsi") == {"lower": 50.0, "upper": 66.0}


def test_pacing_is_per_strategy(store: LearningStore) -> None:
    a = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    b = propose(store, "sma", "fast", 20.0, 22.0, D0, now=NOW)
    frame = pd.concat(
        [
            trades(a.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2)),
            trades(b.id, noise(30, 0.0, seed=3), noise(30, 0.03, seed=4), strategy="sma", prefix="s"),
        ],
        ignore_index=True,
    )
    actions = review(store, frame, D0 + dt.timedelta(days=90), now=NOW)
    assert sorted((x.strategy, x.kind) for x in actions) == [("rsi", "adopted"), ("sma", "adopted")]


def test_a_large_true_improvement_is_approached_in_paced_steps(store: LearningStore) -> None:
    """The whole loop: the strategy reads its parameters each session, its trades return more the
    higher `lower` is, and review runs daily. 45 -> 60 is reached as 45 -> 54 -> 60, at least 30
    days apart, each step proven on its own trades."""
    rng = np.random.default_rng(7)
    propose(store, "rsi", "lower", 45.0, 60.0, D0, now=NOW)
    rows: list[tuple[object, ...]] = []
    day = D0
    for i in range(600):
        day += dt.timedelta(days=1)
        choice = params_for(store, "rsi", {"lower": 45.0, "upper": 60.0}, day)
        ret = 0.001 * (choice.params["lower"] - 45.0) + rng.normal(0.0, 0.002)
        rows.append((f"t{i}", "rsi", day, day, ret, choice.arm, choice.experiment_id))
        review(store, pd.DataFrame(rows, columns=COLUMNS), day, now=NOW)
    adopted = store.history(kind=HistoryKind.ADOPTED)
    assert [(h.old_value, h.new_value) for h in adopted] == [(45.0, 54.0), (54.0, 60.0)]
    assert (adopted[1].session - adopted[0].session).days >= 30
    assert store.params("rsi") == {"lower": 60.0}
    assert store.running_experiment("rsi") is None


def test_abandon_concludes_without_a_verdict(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    abandon(store, e.id, D0 + dt.timedelta(days=3), "strategy retired", now=NOW)
    concluded = store.get_experiment(e.id)
    assert concluded is not None
    assert concluded.status == ExperimentStatus.ABANDONED
    assert store.history(kind=HistoryKind.ABANDONED)[0].reasoning == "abandoned: strategy retired"
    assert store.params("rsi") == {}


# --- what the strategy reads --------------------------------------------------------------------


def test_without_an_experiment_the_strategy_reads_defaults_and_adopted_values(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    review(store, trades(e.id, noise(30, 0.0, seed=1), noise(30, 0.03, seed=2)), D0 + dt.timedelta(days=90), now=NOW)
    choice = params_for(store, "rsi", {"lower": 45, "upper": 60}, D0 + dt.timedelta(days=91))
    assert (choice.params, choice.arm, choice.experiment_id) == ({"lower": 50.0, "upper": 60.0}, "", "")
    assert params_for(store, "sma", {"fast": 20}, D0).params == {"fast": 20.0}


def test_during_an_experiment_the_parameter_follows_the_sessions_arm(store: LearningStore) -> None:
    e = propose(store, "rsi", "lower", 45.0, 50.0, D0, now=NOW)
    seen = set()
    for k in range(40):
        day = D0 + dt.timedelta(days=k)
        choice = params_for(store, "rsi", {"lower": 45.0, "upper": 60.0}, day)
        assert choice.arm == assign_arm(e.id, day, 0.2)
        assert choice.experiment_id == e.id
        assert choice.params == {"lower": 50.0 if choice.arm == "test" else 45.0, "upper": 60.0}
        seen.add(choice.arm)
    assert seen == {"control", "test"}
    before = params_for(store, "rsi", {"lower": 45.0}, D0 - dt.timedelta(days=1))  # replay before the proposal
    assert (before.arm, before.params) == ("", {"lower": 45.0})
