"""Governed experiments on one strategy parameter: proposal, deterministic arm assignment, a
fixed-horizon analysis, and adoption under pacing rules, every step written to the learning history.

The flow, once per session:
1. `params_for` gives the strategy its parameters: defaults, overlaid with adopted overrides, and for
   a running experiment the control or test value of its parameter, by `assign_arm` (a hash of the
   experiment id and the session, so a replay assigns exactly the same arms).
2. The trades the strategy closes carry that arm and experiment id (`round_trips()`).
3. `review` analyses each running experiment on the trades exited so far and acts: nothing while
   waiting, "rejected", "deferred" (pacing), or "adopted" (a capped adoption proposes its follow-up).

Why a fixed horizon: `review` runs every session, so a test that re-decided on all trades seen so
far would get a new chance to cross p < alpha each day, and under no true effect it eventually
would (the "peeking" problem). `analyse` therefore decides on the first `min_trades` trades of each
arm by exit order, a sample size fixed when the experiment was registered: once both arms have
reached it, the verdict is the same whichever day it is computed, and daily review costs nothing in
false adoptions. Figures are withheld until then for the same reason. tests/property/test_learning_fdr.py
measures the false-adoption rate of the whole loop with two identical arms on real SPY returns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from tradeflow.errors import InputError
from tradeflow.learning.values import MIN_TRADES_FLOOR, Experiment, ExperimentStatus, HistoryKind

if TYPE_CHECKING:
    from tradeflow.learning.store import LearningStore

CONTROL = "control"
TEST = "test"
ARMS = (CONTROL, TEST)

# The floors: a configuration looser than these is refused, not obeyed.
MAX_SHIFT_CEILING = 0.20
MIN_DAYS_FLOOR = 30

TRADE_COLUMNS = ("trade_id", "entry_session", "exit_session", "return_net", "arm", "experiment_id")


class Verdict(StrEnum):
    WAITING = "waiting"
    ADOPT = "adopt"
    REJECT = "reject"


def assign_arm(experiment_id: str, session: dt.date, allocation: float) -> str:
    """ "test" for about `allocation` of the sessions, "control" for the rest: the first 8 bytes of
    sha256(f"{experiment_id}:{session}") as a fraction of 2**64. Deterministic, so a replay or a
    re-run tick assigns the same arm, and independent across experiments."""
    if isinstance(session, dt.datetime):
        # A datetime's isoformat carries the time and would hash to another arm than its session.
        raise InputError(f"assign_arm takes the session date, not a datetime ({session!r})")
    if not 0 < allocation < 1:
        raise InputError(f"allocation must be in (0, 1), got {allocation}")
    digest = hashlib.sha256(f"{experiment_id}:{session.isoformat()}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return TEST if u < allocation else CONTROL


# --- analysis ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmStats:
    """One arm. `seen`: its trades so far; `n`: those the decision uses (at most min_trades). The
    figures are NaN until both arms are ready (no interim figures to peek at)."""

    arm: str
    seen: int
    n: int
    mean: float
    median: float
    win_rate: float


@dataclass(frozen=True)
class Analysis:
    experiment_id: str
    control: ArmStats
    test: ArmStats
    effect: float  # mean_test - mean_control, per trade (0.01 = 1 percentage point)
    p_value: float  # Welch's t-test, two-sided
    ready: bool
    verdict: Verdict
    control_better: bool
    reasoning: str

    def evidence(self) -> dict[str, Any]:
        """A JSON-able record (NaN as None) for the experiment's result and the history row."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        out = {k: clean(v) for k, v in asdict(self).items() if k not in ("control", "test", "reasoning")}
        for arm in (self.control, self.test):
            out[arm.arm] = {k: clean(v) for k, v in asdict(arm).items() if k != "arm"}
        out["verdict"] = str(self.verdict)
        return out


def _days(column: pd.Series) -> np.ndarray:
    # date objects, strings or datetime64 alike: compare and sort as whole days.
    return pd.to_datetime(column).to_numpy(dtype="datetime64[D]")


def _check_columns(trades: pd.DataFrame) -> None:
    missing = [c for c in TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise InputError(f"trades lack columns {missing}")


class _Trades:
    """The trades exited by a session, with the columns every review needs (exit session, arm,
    experiment id) as numpy arrays, converted once per review rather than once per experiment.
    The other columns are converted on demand: only an experiment whose arms are both full needs
    them, and review runs every session."""

    def __init__(self, trades: pd.DataFrame, session: dt.date | None = None) -> None:
        self._frame = trades
        if len(trades) == 0:
            self.rows = np.empty(0, dtype=np.intp)
            self.exit = np.empty(0, dtype="datetime64[D]")
            self.arm = self.experiment_id = np.empty(0, dtype=object)
            return
        _check_columns(trades)
        exit_days = _days(trades["exit_session"])
        self.rows = (
            np.arange(len(trades)) if session is None else np.flatnonzero(exit_days <= np.datetime64(session, "D"))
        )
        self.exit = exit_days[self.rows]
        self.arm = trades["arm"].to_numpy(dtype=object)[self.rows]
        self.experiment_id = trades["experiment_id"].to_numpy(dtype=object)[self.rows]

    def entry(self, at: np.ndarray) -> np.ndarray:
        return _days(self._frame["entry_session"].iloc[self.rows[at]])

    def trade_id(self, at: np.ndarray) -> np.ndarray:
        return self._frame["trade_id"].iloc[self.rows[at]].astype(str).to_numpy(dtype=object)

    def returns(self, at: np.ndarray) -> np.ndarray:
        return self._frame["return_net"].iloc[self.rows[at]].to_numpy(dtype=float)


def _arm_returns(experiment: Experiment, trades: _Trades) -> tuple[dict[str, int], dict[str, np.ndarray] | None]:
    """(each arm's count of trades, each arm's returns in exit order or None while an arm has fewer
    than min_trades). Ties in exit order go by entry session, then trade id, so the pre-registered
    sample does not depend on the frame's row order."""
    mine = np.flatnonzero(trades.experiment_id == experiment.id)
    arms = trades.arm[mine]
    seen = {arm: int(np.count_nonzero(arms == arm)) for arm in ARMS}
    if any(n < experiment.min_trades for n in seen.values()):
        return seen, None
    order = mine[np.lexsort((trades.trade_id(mine), trades.entry(mine), trades.exit[mine]))]
    arms, returns = trades.arm[order], trades.returns(order)
    if not np.isfinite(returns).all():
        raise InputError(f"experiment {experiment.id}: trades with a non-finite return_net")
    return seen, {arm: returns[arms == arm] for arm in ARMS}


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def analyse(experiment: Experiment, trades: pd.DataFrame) -> Analysis:
    """Analyse one experiment on `trades` (only the rows with its experiment_id count).

    Fixed-horizon design: the decision uses, per arm, ONLY the first `min_trades` trades by exit
    order, the sample size pre-registered with the experiment. `review` calls this every session
    ("peeking"); because the sample is fixed, the verdict cannot change once both arms are ready, so
    the daily look does not inflate the false-positive rate above what one test at `alpha` has.
    Until both arms reach `min_trades` the verdict is "waiting" and no mean, effect or p is
    computed, so there are no interim figures to be tempted by.

    Verdict when ready: "adopt" when Welch's two-sided p < alpha and the effect (mean test − mean
    control, per trade) > min_effect; otherwise "reject", including when the control is
    significantly better (the change is not made). A p that is undefined (both samples without
    variance) rejects: no evidence is not evidence.
    """
    return _analyse(experiment, _Trades(trades))


def _analyse(experiment: Experiment, trades: _Trades) -> Analysis:
    seen, returns = _arm_returns(experiment, trades)
    m = experiment.min_trades
    e = experiment
    head = f"{e.id} ({e.strategy}.{e.param}: control {e.control:g}, test {e.test:g})"
    if returns is None:
        arms = {arm: ArmStats(arm, seen[arm], min(seen[arm], m), math.nan, math.nan, math.nan) for arm in ARMS}
        reasoning = (
            f"{head}: waiting for the pre-registered {m} trades per arm (control {seen[CONTROL]}/{m}, "
            f"test {seen[TEST]}/{m}); no figures are computed before then"
        )
        return Analysis(
            experiment.id, arms[CONTROL], arms[TEST], math.nan, math.nan, False, Verdict.WAITING, False, reasoning
        )
    sample = {arm: returns[arm][:m] for arm in ARMS}
    arms = {
        arm: ArmStats(arm, seen[arm], m, float(np.mean(s)), float(np.median(s)), float(np.mean(s > 0)))
        for arm, s in sample.items()
    }
    effect = arms[TEST].mean - arms[CONTROL].mean
    if all(np.ptp(s) == 0 for s in sample.values()):
        p = math.nan  # Welch's t divides by the spread: with none in either arm it is undefined
    else:
        p = float(stats.ttest_ind(sample[TEST], sample[CONTROL], equal_var=False).pvalue)
    significant = math.isfinite(p) and p < experiment.alpha
    control_better = significant and effect < 0
    if not math.isfinite(p):
        verdict, why = Verdict.REJECT, "p is undefined (neither arm varies): no evidence"
    elif significant and effect > experiment.min_effect:
        verdict, why = Verdict.ADOPT, "the test value is significantly better by more than the minimum effect"
    elif control_better:
        verdict, why = Verdict.REJECT, "the control is significantly better: the change is not made"
    elif significant:
        verdict, why = Verdict.REJECT, "significant, but the effect is not above the minimum"
    else:
        verdict, why = Verdict.REJECT, "not significant"

    def arm_text(a: ArmStats) -> str:
        return f"{a.arm} n={a.n} (of {a.seen}) mean {_pct(a.mean)} median {_pct(a.median)} win {a.win_rate * 100:.0f}%"

    reasoning = (
        f"{head}, first {m} trades per arm by exit (pre-registered): {arm_text(arms[CONTROL])}; "
        f"{arm_text(arms[TEST])}; effect {effect * 100:+.2f} pp, Welch p={p:.4f}; adoption needs "
        f"p < {experiment.alpha:g} and effect > {experiment.min_effect * 100:.2f} pp: {verdict} ({why})"
    )
    return Analysis(experiment.id, arms[CONTROL], arms[TEST], effect, p, True, verdict, control_better, reasoning)


# --- governance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Governance:
    """Pacing rules. The defaults are the issue's limits, and looser values are refused: at most a
    20% shift of a value at once, at most one change per strategy per 30 calendar days."""

    max_shift: float = MAX_SHIFT_CEILING
    min_days_between_changes: int = MIN_DAYS_FLOOR

    def __post_init__(self) -> None:
        if not 0 < self.max_shift <= MAX_SHIFT_CEILING:
            raise InputError(f"max_shift must be in (0, {MAX_SHIFT_CEILING}], got {self.max_shift}")
        if self.min_days_between_changes < MIN_DAYS_FLOOR:
            raise InputError(
                f"min_days_between_changes must be >= {MIN_DAYS_FLOOR}, got {self.min_days_between_changes}"
            )

    def paced_value(self, control: float, test: float) -> tuple[float, bool]:
        """(the value to adopt, whether it was capped): the test value when it lies within
        max_shift·|control| of the control, else the control moved that far toward it."""
        limit = self.max_shift * abs(control)
        # The tolerance keeps a shift of exactly 20% (12 from 10) from being "capped" by rounding.
        if abs(test - control) <= limit * (1 + 1e-9):
            return test, False
        # 12 significant digits: 45 * 1.2 is adopted as 54, not 54.00000000000001.
        return float(f"{control + math.copysign(limit, test - control):.12g}"), True


DEFAULT_GOVERNANCE = Governance()


@dataclass(frozen=True)
class ReviewAction:
    """What `review` did to one experiment (one per history row it wrote)."""

    kind: HistoryKind
    experiment_id: str
    strategy: str
    param: str
    old_value: float | None
    new_value: float | None
    reasoning: str
    capped: bool = False
    follow_up_id: str = ""


def _new_id(store: LearningStore, strategy: str, param: str, session: dt.date) -> str:
    # Deterministic for a given store history, so a replay produces the same ids and the same arms.
    return f"{strategy}.{param}.{session.isoformat()}.{store.count_experiments(strategy) + 1}"


def propose(
    store: LearningStore,
    strategy: str,
    param: str,
    control: float,
    test: float,
    session: dt.date,
    *,
    allocation: float = 0.2,
    min_trades: int = MIN_TRADES_FLOOR,
    alpha: float = 0.05,
    min_effect: float = 0.005,
    hypothesis: str = "",
    experiment_id: str | None = None,
    now: dt.datetime,
) -> Experiment:
    """Register an experiment and its "proposed" history row. InputError when the strategy already
    runs an experiment, when control is 0 (a relative shift of 0 is undefined), when control is not
    the adopted value of the parameter, or when the design breaks a floor (see Experiment)."""
    if float(control) == 0:
        raise InputError(f"{strategy}.{param}: control is 0, so a shift relative to it is undefined")
    running = store.running_experiment(strategy)
    if running is not None:
        raise InputError(f"strategy {strategy!r} already runs experiment {running.id!r}: one at a time")
    adopted = store.params(strategy).get(param)
    if adopted is not None and adopted != float(control):
        # The control arm must be the value in use, or the "control" is itself an untested change.
        raise InputError(f"{strategy}.{param}: control {control:g} is not the adopted value {adopted:g}")
    experiment = Experiment(
        id=experiment_id or _new_id(store, strategy, param, session),
        strategy=strategy,
        param=param,
        control=control,
        test=test,
        allocation=allocation,
        min_trades=min_trades,
        alpha=alpha,
        min_effect=min_effect,
        created=session,
    )
    reasoning = (
        f"proposed {strategy}.{param}: {experiment.control:g} (control) vs {experiment.test:g} (test), "
        f"{experiment.allocation:.0%} of sessions to test, decided on the first {experiment.min_trades} trades "
        f"per arm: adopt if Welch p < {experiment.alpha:g} and effect > {experiment.min_effect * 100:.2f} pp"
    )
    if hypothesis:
        reasoning += f". Hypothesis: {hypothesis}"
    store.insert_experiment(experiment, reasoning=reasoning, now=now, evidence={"hypothesis": hypothesis})
    return experiment


def abandon(store: LearningStore, experiment_id: str, session: dt.date, reason: str, *, now: dt.datetime) -> None:
    """End a running experiment without a verdict (e.g. the strategy is retired), with its reason."""
    store.conclude_experiment(
        experiment_id, ExperimentStatus.ABANDONED, session=session, reasoning=f"abandoned: {reason}", now=now
    )


def review(
    store: LearningStore,
    trades: pd.DataFrame,
    session: dt.date,
    *,
    governance: Governance = DEFAULT_GOVERNANCE,
    now: dt.datetime,
) -> list[ReviewAction]:
    """Review every running experiment on the trades exited by `session`, and act:

    - waiting: nothing, and nothing is recorded (a daily "still waiting" row would bury the history);
    - reject: status "rejected" and a "rejected" history row with the analysis' reasoning;
    - adopt, but the strategy's last change is fewer than `min_days_between_changes` calendar days
      before `session`: a "deferred" row, written once per experiment, and the experiment keeps
      running. Later reviews decide on the same fixed sample, so the verdict stays "adopt" and the
      adoption happens at the first review that pacing allows;
    - adopt: the value moves to the test value, or by at most max_shift·|control| toward it
      (capped); the override, the status and an "adopted" row commit together. A capped adoption
      registers a follow-up experiment (control = the new value, test = the original test value) in
      the same transaction, so a large true improvement is approached in steps of at most 20%, at
      most one every 30 days, each step proven again on fresh trades.

    Returns one action per history row written.
    """
    # created > session: replaying a session before the experiment existed.
    running = [exp for exp in store.experiments(ExperimentStatus.RUNNING) if exp.created <= session]
    if not running:
        return []
    # Only trades exited by the session under review: a replay of an old session must not see the
    # future, or it would conclude experiments earlier than the live run did.
    visible = _Trades(trades, session)
    actions: list[ReviewAction] = []
    for exp in running:
        analysis = _analyse(exp, visible)
        if analysis.verdict == Verdict.WAITING:
            continue
        result = analysis.evidence()
        if analysis.verdict == Verdict.REJECT:
            store.conclude_experiment(
                exp.id, ExperimentStatus.REJECTED, session=session, reasoning=analysis.reasoning, now=now,
                result=result,
            )  # fmt: skip
            actions.append(
                ReviewAction(
                    HistoryKind.REJECTED, exp.id, exp.strategy, exp.param, exp.control, None, analysis.reasoning
                )
            )
            continue
        last = store.last_change(exp.strategy)
        if last is not None and (session - last).days < governance.min_days_between_changes:
            if not store.history(kind=HistoryKind.DEFERRED, experiment_id=exp.id):
                eligible = last + dt.timedelta(days=governance.min_days_between_changes)
                reasoning = (
                    f"deferred: {exp.strategy} last changed a parameter on {last.isoformat()}, fewer than "
                    f"{governance.min_days_between_changes} days ago; the experiment keeps running and is adopted "
                    f"at the first review from {eligible.isoformat()}. {analysis.reasoning}"
                )
                store.append_history(
                    HistoryKind.DEFERRED, session=session, reasoning=reasoning, now=now, strategy=exp.strategy,
                    param=exp.param, old_value=exp.control, new_value=exp.test, experiment_id=exp.id,
                    evidence={**result, "last_change": last.isoformat(), "eligible_from": eligible.isoformat()},
                )  # fmt: skip
                actions.append(
                    ReviewAction(HistoryKind.DEFERRED, exp.id, exp.strategy, exp.param, exp.control, None, reasoning)
                )
            continue
        new_value, capped = governance.paced_value(exp.control, exp.test)
        reasoning = f"adopted {exp.strategy}.{exp.param}: {exp.control:g} -> {new_value:g}"
        follow_up: Experiment | None = None
        follow_up_reasoning = ""
        if capped:
            reasoning += (
                f" (capped at {governance.max_shift:.0%} of |control|; the test value {exp.test:g} is not reached "
                f"and a follow-up experiment continues toward it)"
            )
            follow_up = Experiment(
                id=_new_id(store, exp.strategy, exp.param, session),
                strategy=exp.strategy,
                param=exp.param,
                control=new_value,
                test=exp.test,
                allocation=exp.allocation,
                min_trades=exp.min_trades,
                alpha=exp.alpha,
                min_effect=exp.min_effect,
                created=session,
            )
            follow_up_reasoning = (
                f"follow-up of {exp.id}, whose adoption was capped at {new_value:g}: proposed {exp.strategy}."
                f"{exp.param} {new_value:g} (control) vs {exp.test:g} (test), same design, decided on fresh trades"
            )
        reasoning += f". {analysis.reasoning}"
        store.conclude_experiment(
            exp.id, ExperimentStatus.ADOPTED, session=session, reasoning=reasoning, now=now,
            result={**result, "new_value": new_value, "capped": capped}, new_value=new_value, follow_up=follow_up,
            follow_up_reasoning=follow_up_reasoning,
        )  # fmt: skip
        actions.append(
            ReviewAction(
                HistoryKind.ADOPTED, exp.id, exp.strategy, exp.param, exp.control, new_value, reasoning, capped,
                follow_up.id if follow_up is not None else "",
            )
        )  # fmt: skip
        if follow_up is not None:
            actions.append(
                ReviewAction(
                    HistoryKind.PROPOSED, follow_up.id, exp.strategy, exp.param, new_value, exp.test,
                    follow_up_reasoning,
                )
            )  # fmt: skip
    return actions


# --- the strategy's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ParamChoice:
    """The parameters a strategy uses for one session, and the arm they belong to ("" when no
    experiment runs), which the session's trades must carry."""

    params: dict[str, float] = field(default_factory=dict)
    arm: str = ""
    experiment_id: str = ""


def params_for(store: LearningStore, strategy: str, defaults: Mapping[str, float], session: dt.date) -> ParamChoice:
    """The strategy's parameters for `session`: `defaults`, overlaid with the adopted overrides, and
    for a running experiment its parameter set to the control or test value of the session's arm."""
    params = dict(defaults)
    params.update(store.params(strategy))
    exp = store.running_experiment(strategy)
    if exp is None or exp.created > session:
        return ParamChoice(params)
    arm = assign_arm(exp.id, session, exp.allocation)
    params[exp.param] = exp.test if arm == TEST else exp.control
    return ParamChoice(params, arm, exp.id)
