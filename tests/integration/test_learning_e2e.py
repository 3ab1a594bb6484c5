"""Issue 5, end to end: a multi-year paper replay on real SPY/VIX, the real tick every session, the
learning review after every close. Two parameter arms, the test arm truly better by construction;
the review must adopt a move toward it, and only as the governance allows.

The strategy is built for the test, so that "truly better" is a fact and not a hope: each session it
goes long or flat. With probability 1 - noise it follows an oracle that knows whether the position
it opens at the next open will gain until the open after (it reads the future: allowed here and
only here, because it is the construction of a known effect, never a strategy that trades); with
probability `noise` it flips a coin. noise = 1.0 (control) is a coin; noise = 0.2 (test) is right
90% of the time. The draw for each session is a deterministic hash, so the run is reproducible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.core.decide import GovernedRule
from tradeflow.core.replay import replay
from tradeflow.features import DEFAULT_SPEC, Features, build_features
from tradeflow.learning import LearningStore, propose
from tradeflow.learning.daily_review import ReviewResult, run_review, write_report
from tradeflow.ledger import Ledger
from tradeflow.sim import CostModel

START, END = "2013-01-02", "2018-12-31"
STRATEGY = "oracle"


def _uniform(tag: str, session: np.datetime64) -> float:
    digest = hashlib.sha256(f"{tag}:{pd.Timestamp(session).date().isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def oracle_factory(features: Features):  # type: ignore[no-untyped-def]
    opens = features.bars["open"].to_numpy(dtype=float)
    # The position decided on the close of row r is held from open r+1 to open r+2.
    future = np.full(len(opens), np.nan)
    future[:-2] = opens[2:] / opens[1:-1] - 1.0
    by_session = dict(zip(features.sessions, future, strict=True))

    class NoisyOracle(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        name: ClassVar[str] = STRATEGY
        noise: float = Field(1.0, ge=0.0, le=1.0)

        def targets(self, f: Features) -> np.ndarray:
            out = np.zeros(len(f.frame))
            for i, session in enumerate(f.sessions[-3:], start=len(f.frame) - 3):  # a tick uses the last row
                gain = by_session.get(session, np.nan)
                if _uniform("noise", session) < self.noise or not np.isfinite(gain):
                    out[i] = 1.0 if _uniform("coin", session) < 0.5 else 0.0
                else:
                    out[i] = 1.0 if gain > 0 else 0.0
            return out

    return NoisyOracle


@pytest.fixture(scope="module")
def reviewed(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ReviewResult]]:
    work = tmp_path_factory.mktemp("learning-e2e")
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    features = build_features(spy, vix, DEFAULT_SPEC)
    oracle = oracle_factory(features)
    store = LearningStore(work / "learning.sqlite")
    propose(
        store,
        STRATEGY,
        "noise",
        control=1.0,
        test=0.2,
        session=dt.date(2013, 1, 2),
        hypothesis="less noise in the entry signal raises the net return per trade",
        now=pd.Timestamp("2013-01-02 17:00", tz="America/New_York").to_pydatetime(),
    )
    results: list[ReviewResult] = []

    def after_close(session: dt.date, ledger: Ledger) -> None:
        now = pd.Timestamp(session.isoformat() + " 17:00", tz="America/New_York").to_pydatetime()
        results.append(run_review(ledger, store, session, now=now))

    replay(
        features,
        None,
        START,
        END,
        cost=CostModel(),
        cash_buffer=0.02,
        workdir=work,
        decider_factory=lambda ledger: GovernedRule(
            STRATEGY, store, last_decision=lambda: ledger.last_decision(STRATEGY, "SPY"), factory=oracle
        ),
        after_close=after_close,
    )
    store.close()
    return work, results


def test_a_multi_year_replay_gives_well_over_100_trades_in_both_arms(reviewed):
    _, results = reviewed
    trades = results[-1].trades
    assert len(trades) >= 150
    arms = trades["arm"].value_counts().to_dict()
    assert arms.get("control", 0) >= 30
    assert arms.get("test", 0) >= 30


def test_the_review_adopts_the_truly_better_arm_within_the_pacing_rules(reviewed):
    work, _ = reviewed
    with LearningStore(work / "learning.sqlite") as store:
        adoptions = store.history(STRATEGY, kind="adopted")
        assert adoptions, [(h.kind, h.reasoning) for h in store.history()]
        first = adoptions[0]
        # Toward the better arm (less noise), capped at a 20% shift of 1.0.
        assert (first.old_value, first.new_value) == (1.0, 0.8)
        assert first.evidence["p_value"] < 0.05
        assert first.evidence["effect"] > 0.005
        for a in adoptions:
            assert a.new_value < a.old_value  # every change goes toward the better arm
            assert abs(a.new_value - a.old_value) <= 0.2 * abs(a.old_value) + 1e-12
        for before, after in itertools.pairwise(adoptions):
            assert (after.session - before.session).days >= 30
        assert store.params(STRATEGY)["noise"] == adoptions[-1].new_value
        # Every change is explained: the figures and thresholds it was decided on.
        for h in store.history(STRATEGY):
            assert h.reasoning
        assert "p" in first.reasoning
        assert "0.50 pp" in first.reasoning or "0.5" in first.reasoning


def test_after_an_adoption_the_strategy_trades_on_the_adopted_value(reviewed):
    work, _ = reviewed
    with LearningStore(work / "learning.sqlite") as store:
        first = store.history(STRATEGY, kind="adopted")[0]
    with Ledger(work / "ledger.sqlite") as ledger:
        later = [d for d in ledger.decisions(STRATEGY) if d.session > first.session and d.arm != "test"]
    assert later
    assert later[0].params["noise"] == first.new_value  # the next decision already uses the adopted value
    assert all(d.params["noise"] <= first.new_value for d in later)  # never back to the rejected 1.0


def test_the_review_report_renders_with_patterns_experiments_and_history(reviewed, tmp_path):
    _, results = reviewed
    final = results[-1]
    path = write_report(final, tmp_path)
    text = path.read_text()
    for heading in ("## The day", "## Patterns", "## Experiments", "## Learning history", "## Analyst notes"):
        assert heading in text
    assert "adopted" in text
    assert (path.parent / "equity.png").stat().st_size > 1000
    assert json.loads((path.parent / "review.json").read_text())["session"] == final.session.isoformat()
