"""The promotion gate: a challenger replaces the champion only on out-of-sample evidence.

The challenger must, on the same walk-forward folds,
  1. have at least `min_folds` folds,
  2. beat buy-and-hold's annualised Sharpe by more than `min_sharpe_margin`, significantly,
  3. beat the champion's the same way, when there is a champion,
  4. keep its out-of-sample max drawdown at or above `max_drawdown_limit` (a negative fraction).

The test. The daily out-of-sample returns of all folds are concatenated, and the challenger's,
buy-and-hold's and the champion's are resampled TOGETHER, day by day (a paired stationary
bootstrap, Politis & Romano 1994, with geometric blocks so volatility clustering survives the
resampling). For each resample the Sharpe difference is computed; the p-value is the share of
resamples in which the difference is <= the margin, with the usual +1 correction so it is never 0.
Rejecting at `alpha` is the same as the one-sided (1 - alpha) percentile interval of the
difference lying wholly above the margin. The probabilistic Sharpe ratio (Bailey & López de Prado
2012) of the challenger is reported beside it, against 0 and against buy-and-hold's Sharpe.

Pure: no I/O, no clock; all randomness comes from `policy.seed`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tradeflow.backtest.metrics import max_drawdown, probabilistic_sharpe_ratio
from tradeflow.errors import InputError

REQUIRED_FOLD_METRICS = ("sharpe", "total_return", "max_drawdown")
# Resamples are drawn in chunks so memory stays ~ chunk x days, whatever n_bootstrap is.
_CHUNK = 256


class PromotionPolicy(BaseModel):
    """How much better, how sure, and how safe a challenger must be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # 0.0: the bootstrap test already demands the gain be distinguishable from noise; raise it to
    # demand an economically meaningful gain on top (a Sharpe difference, annualised).
    min_sharpe_margin: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    # 5% one-sided. The gate runs nightly, so a looser level would let noise through repeatedly.
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    # Matches the risk governor's seed default (halt at a 20% drawdown): a model that would
    # already have been halted out of sample is not promoted.
    max_drawdown_limit: float = Field(-0.20, ge=-1.0, le=0.0)
    n_bootstrap: int = Field(2000, ge=100, le=1_000_000)
    seed: int = Field(0, ge=0)
    min_folds: int = Field(3, ge=1)
    # Mean block length of the stationary bootstrap in sessions; None = n_days ** (1/3).
    mean_block_length: float | None = Field(None, ge=1.0)
    periods_per_year: int = Field(252, ge=1)
    # Replay parity (issue 10): the challenger's last test fold re-run through the real tick must end
    # within this many basis points of total return of the vectorised evaluation. Rules agree to
    # < 0.01 bp; a policy's argmax near a tie can flip on the broker's price rounding in its P&L input
    # (seen: one flipped day of a barely trained policy, 20.6 bp), while a path defect (sizing, fills,
    # lookahead) costs hundreds of bp: 25 bp tolerates one such flip per fold.
    replay_parity_bps: float = Field(25.0, ge=0.0, allow_inf_nan=False)


@dataclass(frozen=True)
class FoldResult:
    """One strategy's out-of-sample result on one walk-forward fold, net of costs."""

    fold: int
    returns: np.ndarray  # daily simple returns of the test window
    metrics: Mapping[str, float]  # at least REQUIRED_FOLD_METRICS, as the backtester reports them

    def __post_init__(self) -> None:
        returns = np.asarray(self.returns, dtype=np.float64)
        if returns.ndim != 1 or returns.size < 2:
            raise InputError(f"fold {self.fold}: returns must be a 1-D array of at least 2 days")
        if not np.isfinite(returns).all():
            raise InputError(f"fold {self.fold}: returns contain NaN or inf")
        missing = [k for k in REQUIRED_FOLD_METRICS if k not in self.metrics]
        if missing:
            raise InputError(f"fold {self.fold}: metrics lack {missing}")
        object.__setattr__(self, "returns", returns)


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: tuple[str, ...]  # every check, passed or failed, as a sentence
    evidence: dict[str, Any]  # the numbers behind the reasons, JSON-ready

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": list(self.reasons), "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromotionDecision:
        return cls(promote=bool(data["promote"]), reasons=tuple(data["reasons"]), evidence=dict(data["evidence"]))


def annualised_sharpe(returns: np.ndarray, periods_per_year: int = 252) -> np.ndarray:
    """Sharpe along the last axis (risk-free 0, ddof=1), vectorised over bootstrap samples.

    Unlike metrics.sharpe_ratio (NaN when undefined), a flat resample scores 0 and a riskless drift
    +-inf, so every resample stays comparable and a NaN never silently counts as "not <= margin".
    """
    mean = returns.mean(axis=-1)
    std = returns.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(std > 0, mean / np.where(std > 0, std, 1.0), np.sign(mean) * np.inf)
    ratio = np.where((std == 0) & (mean == 0), 0.0, ratio)
    return np.asarray(ratio * math.sqrt(periods_per_year))


def stationary_bootstrap_indices(
    n: int, n_samples: int, mean_block_length: float, rng: np.random.Generator
) -> np.ndarray:
    """(n_samples, n) day indices: blocks start at random days, continue circularly, and end with
    probability 1 / mean_block_length each day."""
    p_new = 1.0 / mean_block_length
    new_block = rng.random((n_samples, n)) < p_new
    new_block[:, 0] = True
    starts = rng.integers(0, n, size=(n_samples, n))
    t = np.arange(n)
    block_t = np.maximum.accumulate(np.where(new_block, t, 0), axis=1)
    start_of_block = np.take_along_axis(starts, block_t, axis=1)
    return np.asarray((start_of_block + (t - block_t)) % n)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _aligned(name: str, results: Sequence[FoldResult], folds: list[int], lengths: list[int]) -> list[FoldResult]:
    """`results` in the challenger's fold order, checked to be paired with it day for day."""
    by_fold = {r.fold: r for r in results}
    if len(by_fold) != len(results):
        raise InputError(f"{name}: a fold appears twice")
    if sorted(by_fold) != folds:
        raise InputError(f"{name} has folds {sorted(by_fold)}, the challenger {folds}: compare on the SAME folds")
    for f, n in zip(folds, lengths, strict=True):
        if by_fold[f].returns.size != n:
            raise InputError(f"{name} fold {f} has {by_fold[f].returns.size} days, the challenger {n}: not paired")
    return [by_fold[f] for f in folds]


def _bootstrap_sharpe_diffs(series: np.ndarray, policy: PromotionPolicy, block: float) -> np.ndarray:
    """(n_bootstrap, k-1) Sharpe of series[0] minus Sharpe of each other row, resampled jointly."""
    rng = np.random.default_rng(policy.seed)
    n = series.shape[1]
    out = np.empty((policy.n_bootstrap, series.shape[0] - 1))
    for lo in range(0, policy.n_bootstrap, _CHUNK):
        m = min(_CHUNK, policy.n_bootstrap - lo)
        idx = stationary_bootstrap_indices(n, m, block, rng)
        sharpes = annualised_sharpe(series[:, idx], policy.periods_per_year)  # (k, m)
        out[lo : lo + m] = (sharpes[0] - sharpes[1:]).T
    return out


def _compare(
    label: str, observed: float, base: float, diffs: np.ndarray, policy: PromotionPolicy
) -> tuple[bool, str, dict[str, Any]]:
    margin = policy.min_sharpe_margin
    p = (1.0 + float(np.sum(diffs <= margin))) / (1.0 + diffs.size)
    diff = observed - base
    passed = diff > margin and p < policy.alpha
    sign = "<" if p < policy.alpha else ">="
    text = (
        f"{'pass' if passed else 'FAIL'}: challenger Sharpe {observed:.2f} vs {label} {base:.2f}: "
        f"{diff:+.2f} (margin {margin:.2f}), bootstrap p={p:.4f} {sign} {policy.alpha:g}"
    )
    # The (1 - 2 alpha) percentile interval of the difference; the test passes when its low end
    # clears the margin (up to the +1 correction of p).
    lo, hi = np.quantile(diffs, [policy.alpha, 1.0 - policy.alpha])
    evidence = {
        "challenger_sharpe": observed,
        "benchmark_sharpe": base,
        "sharpe_diff": diff,
        "p_value": p,
        "diff_ci_low": float(lo),
        "diff_ci_high": float(hi),
        "passed": passed,
    }
    return passed, text, evidence


def evaluate_promotion(
    challenger: Sequence[FoldResult],
    champion: Sequence[FoldResult] | None,
    buy_and_hold: Sequence[FoldResult],
    policy: PromotionPolicy | None = None,
) -> PromotionDecision:
    """Decide whether `challenger` replaces `champion` (None: no champion yet; buy-and-hold only)."""
    policy = policy or PromotionPolicy()
    if not challenger:
        raise InputError("the challenger has no fold results")
    ordered = sorted(challenger, key=lambda r: r.fold)
    folds = [r.fold for r in ordered]
    if len(set(folds)) != len(folds):
        raise InputError("challenger: a fold appears twice")
    lengths = [r.returns.size for r in ordered]
    aligned = {"challenger": ordered, "buy_and_hold": _aligned("buy-and-hold", buy_and_hold, folds, lengths)}
    if champion is not None:
        aligned["champion"] = _aligned("champion", champion, folds, lengths)
    series = np.vstack([np.concatenate([r.returns for r in results]) for results in aligned.values()])
    n_days = series.shape[1]
    block = policy.mean_block_length or max(1.0, n_days ** (1.0 / 3.0))
    sharpes = annualised_sharpe(series, policy.periods_per_year)
    diffs = _bootstrap_sharpe_diffs(series, policy, block)

    reasons: list[str] = []
    checks: list[bool] = []
    enough = len(folds) >= policy.min_folds
    checks.append(enough)
    reasons.append(f"{'pass' if enough else 'FAIL'}: {len(folds)} folds, at least {policy.min_folds} required")

    ok, text, vs_bh = _compare("buy-and-hold", float(sharpes[0]), float(sharpes[1]), diffs[:, 0], policy)
    checks.append(ok)
    reasons.append(text)
    vs_champion = None
    if champion is not None:
        ok, text, vs_champion = _compare("champion", float(sharpes[0]), float(sharpes[2]), diffs[:, 1], policy)
        checks.append(ok)
        reasons.append(text)
    else:
        reasons.append("no champion yet: compared with buy-and-hold only")

    stitched_dd = max_drawdown(np.concatenate(([1.0], np.cumprod(1.0 + series[0]))))
    # The worse of the stitched track and the backtester's own per-fold figures (NaN ones ignored).
    fold_dds = [float(r.metrics["max_drawdown"]) for r in ordered if math.isfinite(float(r.metrics["max_drawdown"]))]
    worst_fold_dd = min(fold_dds, default=stitched_dd)
    drawdown = min(stitched_dd, worst_fold_dd)
    ok = drawdown >= policy.max_drawdown_limit
    checks.append(ok)
    reasons.append(
        f"{'pass' if ok else 'FAIL'}: challenger max drawdown {drawdown:.1%} "
        f"{'within' if ok else 'beyond'} the limit {policy.max_drawdown_limit:.1%}"
    )

    promote = all(checks)
    reasons.insert(0, f"{'PROMOTE' if promote else 'REJECT'}: {sum(checks)}/{len(checks)} checks passed")
    evidence: dict[str, Any] = {
        "policy": policy.model_dump(),
        "folds": folds,
        "n_days": n_days,
        "mean_block_length": block,
        "challenger": {
            "sharpe": float(sharpes[0]),
            "psr_vs_zero": _finite_or_none(probabilistic_sharpe_ratio(series[0], 0.0, policy.periods_per_year)),
            "psr_vs_buy_and_hold": _finite_or_none(
                probabilistic_sharpe_ratio(series[0], float(sharpes[1]), policy.periods_per_year)
            ),
            "total_return": float(np.prod(1.0 + series[0]) - 1.0),
            "max_drawdown_stitched": stitched_dd,
            "max_drawdown_worst_fold": worst_fold_dd,
        },
        "vs_buy_and_hold": vs_bh,
        "vs_champion": vs_champion,
        # Each strategy's own per-fold metrics, as its backtest reported them.
        "per_fold": [
            {"fold": f}
            | {
                f"{name}_{key}": float(results[i].metrics[key])
                for name, results in aligned.items()
                for key in REQUIRED_FOLD_METRICS
            }
            for i, f in enumerate(folds)
        ],
    }
    return PromotionDecision(promote=promote, reasons=tuple(reasons), evidence=evidence)
