"""An ensemble of strategies: a weighted vote of its members' target weights (issue 11, item 5).

Folds. The sessions are cut into consecutive folds of `window` rows (126 by default) ANCHORED AT
THE FIRST ROW: fold j trades rows [j * window, (j + 1) * window), so a fold's rows and evidence never
move when data is appended; walk-forward folds laid out from the end (backtest/folds.py) would shift
with every new session. The weights of fold j are fixed before its first row, from evidence only:

  evidence  the `lookback` most recent earlier folds that end at or before row j * window - embargo.
            On each, every member and buy-and-hold trade the fold's rows from a flat book with the
            configured costs (and the governor's limits, when given), their targets computed on the
            features cut at the fold's end, so nothing after it can reach the evidence by construction.
            These are out-of-sample results in the walk-forward sense: a rule has nothing fitted, and
            each evidence fold only uses rows up to its own end. (A champion RL member is different:
            its evidence is out of sample only for folds after the sessions it was trained on; the
            ensemble cannot know them, so pass a champion only over data after its training window.)
  entry     a member enters (weight > 0) only when `evaluate_promotion` (the promotion gate's own
            test, with `config.policy`) promotes it against buy-and-hold on that evidence, with no
            champion: the baseline is the `BuyAndHold` rule's curve on the same evidence folds, the
            benchmark the gate judges every challenger beside.
  weights   among the m members that entered, w = (1 - shrink) * edge / sum(edge) + shrink / m, the
            edge being the member's annualised Sharpe minus buy-and-hold's on the evidence (> 0 for a
            member that passed). `shrink` defaults to 0.5: two years of daily returns estimate an
            annualised Sharpe only to about +-0.7, as large as the edges themselves, so half the weight
            rests on the noisy ranking and half on equal weights (DeMiguel et al. 2009: 1/N is hard to
            beat out of sample).
  fallback  with no member entered (too little evidence early on, or none passing), the fold holds
            buy-and-hold (target 1.0): the benchmark, not cash, is what an unproven ensemble owes.

The target at row t is sum_k w_k * target_k(t) over the weights of t's fold. `decide` is the same
computation for the last row (its fold's weights and the members' last targets), with the weights in
the Decision's params; over a universe, `Sleeves(Ensemble(...), symbols)` runs one ensemble per symbol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeflow.domain import Book, Decision
from tradeflow.errors import InputError
from tradeflow.registry.promotion import FoldResult, PromotionPolicy, annualised_sharpe, evaluate_promotion
from tradeflow.sim import CostModel
from tradeflow.strategies.base import Strategy, make_strategy
from tradeflow.strategies.rules import BuyAndHold

if TYPE_CHECKING:
    from tradeflow.features import Features
    from tradeflow.risk.limits import RiskLimits
    from tradeflow.sim import MarketArrays

# The rules `ensemble` combines by default: every registered rule but buy-and-hold, which is the
# baseline a member must beat (it could never enter against itself).
DEFAULT_MEMBERS = ("sma", "rsi", "macd", "mean_reversion")


class EnsembleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Half a year of sessions per fold, train-spy's test window: weights are re-estimated twice a
    # year. (Quarterly folds doubled the cost, each fold paying the gate's bootstrap per member.)
    window: int = Field(126, ge=5)
    # Evidence folds per decision: 4 half-years = two years, recent enough to follow a regime and
    # bounded, so a 30-year history costs the same per fold as a 3-year one.
    lookback: int = Field(4, ge=1)
    # Sessions between the end of the evidence and the fold's first row. 0 is enough for rules: an
    # evidence fold's curve ends at its last close and uses no later price.
    embargo: int = Field(0, ge=0)
    shrink: float = Field(0.5, ge=0.0, le=1.0)
    policy: PromotionPolicy = PromotionPolicy()

    @model_validator(mode="after")
    def _enough_evidence(self) -> EnsembleConfig:
        if self.lookback < self.policy.min_folds:
            raise ValueError(
                f"lookback ({self.lookback}) is below the gate's min_folds ({self.policy.min_folds}): "
                "no member could ever enter"
            )
        return self


@dataclass(frozen=True)
class EnsembleFold:
    """One fold of the ensemble: the rows it trades and the weights fixed before its first row."""

    index: int
    start_row: int  # rows [start_row, stop_row) trade with these weights (clipped to the data)
    stop_row: int
    evidence_stop_row: int  # the weights use rows < evidence_stop_row only
    evidence_folds: tuple[int, ...]
    weights: Mapping[str, float]  # member name -> weight; all 0 when the fold holds buy-and-hold
    edges: Mapping[str, float]  # member name -> Sharpe minus buy-and-hold's on the evidence (NaN: none)

    @property
    def holds_buy_and_hold(self) -> bool:
        return not any(self.weights.values())

    def params(self) -> dict[str, float]:
        """The Decision params: each member's weight, and whether the fold fell back to buy-and-hold."""
        return {f"weight_{k}": float(v) for k, v in self.weights.items()} | {
            "buy_and_hold": float(self.holds_buy_and_hold)
        }


class Ensemble:
    """A weighted vote of `members` (strategies over one instrument's Features); see the module doc."""

    def __init__(
        self,
        members: Sequence[Strategy[Features]],
        *,
        cost: CostModel | None = None,
        capital: float = 100_000.0,
        limits: RiskLimits | None = None,
        config: EnsembleConfig | None = None,
        name: str = "ensemble",
    ) -> None:
        if not members:
            raise InputError("an ensemble needs at least one member")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise InputError(f"ensemble members must have distinct names, got {names}")
        self.members = tuple(members)
        self.cost = cost or CostModel()
        self.capital = capital
        self.limits = limits
        self.config = config or EnsembleConfig()
        self._name = name

    @classmethod
    def of_rules(cls, names: Sequence[str] = DEFAULT_MEMBERS, **kwargs: Any) -> Ensemble:
        """An ensemble of registered rules by name (InputError for an unknown one)."""
        return cls([make_strategy(n) for n in names], **kwargs)

    @property
    def name(self) -> str:
        return self._name

    def folds(self, features: Features) -> list[EnsembleFold]:
        """Every fold whose evidence the data covers (the last may have no rows yet), oldest first."""
        n = len(features)
        w, e = self.config.window, self.config.embargo
        count = (n + e) // w + 1  # fold j exists once rows < j * w - e are all there
        evidence = _Evidence(self, features)
        return [self._fold(j, n, evidence) for j in range(count)]

    def targets(self, features: Features) -> np.ndarray:
        n = len(features)
        votes = self._member_targets(features)
        out = np.ones(n, dtype=np.float64)  # buy-and-hold wherever a fold has no member
        for fold in self.folds(features):
            if fold.start_row >= fold.stop_row or fold.holds_buy_and_hold:
                continue
            w = np.array([fold.weights[m.name] for m in self.members])
            out[fold.start_row : fold.stop_row] = votes[fold.start_row : fold.stop_row] @ w
        return out

    def decide(self, features: Features, book: Book) -> Decision:
        # Only the last row's fold is needed: the same _fold the vectorised targets use.
        n = len(features)
        if n == 0:
            raise InputError(f"strategy {self.name!r} has no feature rows to decide on")
        fold = self._fold((n - 1) // self.config.window, n, _Evidence(self, features))
        if fold.holds_buy_and_hold:
            weight = 1.0
        else:
            last = self._member_targets(features)[-1]
            weight = float(last @ np.array([fold.weights[m.name] for m in self.members]))
        return Decision(
            strategy=self.name,
            session=pd.Timestamp(features.sessions[-1]).date(),
            weights={features.symbol: weight},
            params=fold.params(),
            spec_digest=features.spec.digest,
        )

    def _member_targets(self, features: Features) -> np.ndarray:
        """(rows, members) targets of every member on `features`."""
        return np.column_stack([np.asarray(m.targets(features), dtype=np.float64) for m in self.members])

    def _fold(self, j: int, n: int, evidence: _Evidence) -> EnsembleFold:
        cfg = self.config
        start = j * cfg.window
        evidence_stop = max(start - cfg.embargo, 0)
        earlier = [i for i in range(j) if (i + 1) * cfg.window <= evidence_stop][-cfg.lookback :]
        weights = dict.fromkeys((m.name for m in self.members), 0.0)
        edges = dict.fromkeys((m.name for m in self.members), float("nan"))
        if earlier:
            baseline = [evidence.result(None, i) for i in earlier]
            passed: dict[str, float] = {}
            policy = cfg.policy
            base_sharpe = _sharpe(baseline, policy)
            for k, member in enumerate(self.members):
                results = [evidence.result(k, i) for i in earlier]
                edge = _sharpe(results, policy) - base_sharpe
                edges[member.name] = edge
                # The gate passes only an observed edge above the margin on min_folds folds: skipping
                # its bootstrap otherwise gives the same verdict, at a fraction of the cost.
                if edge <= policy.min_sharpe_margin or len(earlier) < policy.min_folds:
                    continue
                if evaluate_promotion(results, None, baseline, policy).promote:
                    passed[member.name] = edge
            if passed:
                total = sum(passed.values())
                m = len(passed)
                for name, edge in passed.items():
                    perf = edge / total if total > 0 else 1.0 / m
                    weights[name] = (1.0 - cfg.shrink) * perf + cfg.shrink / m
        return EnsembleFold(
            index=j,
            start_row=min(start, n),
            stop_row=min(start + cfg.window, n),
            evidence_stop_row=evidence_stop,
            evidence_folds=tuple(earlier),
            weights=MappingProxyType(weights),
            edges=MappingProxyType(edges),
        )


class _Evidence:
    """Out-of-sample results of each member (and buy-and-hold) on each fold, computed once per call."""

    def __init__(self, ensemble: Ensemble, features: Features) -> None:
        self._ens = ensemble
        self._features = features
        self._market: MarketArrays | None = None
        self._targets: dict[int, np.ndarray] = {}  # fold -> (rows, 1 + members) on the cut features
        self._results: dict[tuple[int | None, int], FoldResult] = {}

    def result(self, member: int | None, fold: int) -> FoldResult:
        """`member`'s (None: buy-and-hold's) curve on `fold`'s rows, from a flat book."""
        key = (member, fold)
        if key not in self._results:
            self._results[key] = self._evaluate(member, fold)
        return self._results[key]

    def _evaluate(self, member: int | None, fold: int) -> FoldResult:
        # Imported here: the backtester refers to the Strategy protocol of this package, so a
        # module-level import would make strategies <-> backtest a cycle (tests/test_architecture.py).
        from tradeflow.backtest.engine import evaluate_targets

        ens = self._ens
        w = ens.config.window
        start, stop = fold * w, (fold + 1) * w
        if fold not in self._targets:
            # Cut at the fold's end: the members never see a later row, whatever they compute.
            cut = self._features.slice(0, stop)
            self._targets[fold] = np.column_stack(
                [BuyAndHold().targets(cut), *(np.asarray(m.targets(cut), dtype=np.float64) for m in ens.members)]
            )
        if self._market is None:
            self._market = self._features.market()
        sessions = self._market.sessions
        column = 0 if member is None else member + 1
        name = "buy_and_hold" if member is None else ens.members[member].name
        result = evaluate_targets(
            self._targets[fold][:, column],
            self._market.slice(0, stop),
            ens.cost,
            ens.capital,
            sessions[start],
            sessions[stop - 1],
            name=name,
            limits=ens.limits,
        )
        return FoldResult(fold, result.returns.to_numpy(), result.metrics)


def _sharpe(results: Sequence[FoldResult], policy: PromotionPolicy) -> float:
    """The annualised Sharpe the gate computes: of the evidence folds' returns, concatenated."""
    return float(annualised_sharpe(np.concatenate([r.returns for r in results]), policy.periods_per_year))
