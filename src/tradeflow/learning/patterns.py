"""Which kinds of trades do better or worse than the rest, with the false discoveries kept in check.

Each value of each dimension (a strategy, an experiment arm, a VIX regime, a weekday...) is compared
with all other trades on two questions: is the mean net return different (Welch's t-test, which does
not assume both groups have the same spread) and is the win rate different (Fisher's exact test on
the 2x2 wins/losses table, exact at small counts where a chi-squared test is not).

Why Benjamini-Hochberg. Slicing a few hundred trades by seven dimensions asks dozens of questions at
once; at alpha = 0.05 about one in twenty of them comes out "significant" by chance even when nothing
is going on, and the loop that reads these patterns would act on noise. BH controls the false
discovery rate, the expected share of reported patterns that are flukes, which is the error that
matters for a list of candidates to investigate. Bonferroni (family-wise control) would be so strict
at this many tests that real effects of a few hundred trades would never show. BH is applied once over
every p-value of the run, both test families pooled, so looking at the win rate as well as the mean
does not buy a second chance.

Why 30 trades. Below about thirty trades the t-test leans on a normality that trade returns (fat
tailed, skewed) do not have, a single outlier decides the mean, and a win rate of 7 out of 10 is
compatible with almost anything. Such groups are not tested at all, rather than tested and then
discounted: an untested group also does not enlarge the BH family and so does not dilute real
findings. The same floor applies to the rest, since the comparison is only as good as its weaker side.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tradeflow.errors import InputError

DEFAULT_DIMENSIONS = ("strategy", "arm", "direction", "vix_regime", "trend", "weekday", "holding_bucket")
PATTERN_COLUMNS = (
    "dimension",
    "value",
    "n",
    "n_rest",
    "wins",
    "win_rate",
    "rest_win_rate",
    "mean_return",
    "rest_mean_return",
    "median_return",
    "effect",
    "p_mean",
    "p_win",
    "q_mean",
    "q_win",
    "significant",
    "confidence",
)
_PATTERN_DTYPES: dict[str, Any] = {
    "dimension": "str",
    "value": "str",
    "n": "int64",
    "n_rest": "int64",
    "wins": "int64",
    "win_rate": "float64",
    "rest_win_rate": "float64",
    "mean_return": "float64",
    "rest_mean_return": "float64",
    "median_return": "float64",
    "effect": "float64",
    "p_mean": "float64",
    "p_win": "float64",
    "q_mean": "float64",
    "q_win": "float64",
    "significant": "bool",
    "confidence": "float64",
}


def holding_bucket(days: int) -> str:
    """The holding-time class of a trade held `days` weekdays: "0-1d", "2-5d", "6-20d" or ">20d"."""
    if days < 0:
        raise InputError(f"holding days cannot be negative, got {days}")
    if days <= 1:
        return "0-1d"
    if days <= 5:
        return "2-5d"
    if days <= 20:
        return "6-20d"
    return ">20d"


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the order given.

    q_(i) = min over j >= i of p_(j) * m / j for the ascending p-values, clipped to 1, so q >= p and q is
    monotone in p. A NaN p-value (a test that could not be run) stays NaN and is not counted in m:
    counting it would make every other q larger for a question that was never asked.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise InputError(f"p-values must be one-dimensional, got shape {p.shape}")
    q = np.full(p.shape, np.nan)
    known = ~np.isnan(p)
    if not known.any():
        return q
    pk = p[known]
    if ((pk < 0) | (pk > 1)).any():
        raise InputError("p-values must lie in [0, 1]")
    m = pk.size
    order = np.argsort(pk, kind="stable")
    scaled = pk[order] * m / np.arange(1, m + 1)
    # The running minimum from the largest p down makes q monotone (a smaller p never gets a larger q).
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    qk = np.empty(m)
    qk[order] = np.minimum(adjusted, 1.0)
    q[known] = qk
    return q


def detect_patterns(
    trades: pd.DataFrame,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
    *,
    min_trades: int = 30,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every tested (dimension, value) group compared with the rest of the trades (PATTERN_COLUMNS).

    `trades` needs return_net, win and each dimension's column (holding_bucket is derived from
    holding_days when the frame has no such column). A group is tested only when it and its rest
    both hold at least `min_trades` trades with a known return, and only in dimensions with two or
    more values. Rows are sorted by the smaller of their two q-values, then dimension and value.
    `significant` means either q-value is at most `alpha`; `confidence` is 1 - that smaller q-value.

    A dimension with exactly two values yields two mirror rows with the same p-values (group A vs B
    and B vs A); both count in the BH family, which is slightly conservative.
    """
    if min_trades < 2:
        raise InputError(f"min_trades must be at least 2 (a variance needs two trades), got {min_trades}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie in (0, 1), got {alpha}")
    dims = list(dict.fromkeys(dimensions))
    frame = _validated(trades, dims)
    if frame.empty:
        return _empty()

    returns = frame["return_net"].to_numpy(dtype=float)
    wins = frame["win"].to_numpy(dtype=bool)
    rows: list[dict[str, Any]] = []
    for dim in dims:
        labels = frame[dim]
        values = sorted(labels.dropna().unique(), key=str)
        if len(values) < 2:
            continue
        for value in values:
            in_group = (labels == value).to_numpy(dtype=bool)
            n = int(in_group.sum())
            n_rest = len(frame) - n
            if n < min_trades or n_rest < min_trades:
                continue
            rows.append(_compare(dim, value, returns[in_group], returns[~in_group], wins[in_group], wins[~in_group]))
    if not rows:
        return _empty()

    out = pd.DataFrame(rows)
    # One BH family over both test families: m = 2 x groups tested (less any untestable NaN p-value).
    q = benjamini_hochberg(np.concatenate([out["p_mean"].to_numpy(), out["p_win"].to_numpy()]))
    out["q_mean"] = q[: len(out)]
    out["q_win"] = q[len(out) :]
    best_q = out[["q_mean", "q_win"]].min(axis=1, skipna=True)
    out["significant"] = (best_q <= alpha).fillna(False).astype(bool)
    out["confidence"] = 1.0 - best_q
    out = out.assign(_best_q=best_q).sort_values(["_best_q", "dimension", "value"], kind="stable", na_position="last")
    return out.drop(columns="_best_q").reset_index(drop=True).loc[:, list(PATTERN_COLUMNS)].astype(_PATTERN_DTYPES)


def _compare(
    dim: str,
    value: Any,
    group: np.ndarray,
    rest: np.ndarray,
    group_wins: np.ndarray,
    rest_wins: np.ndarray,
) -> dict[str, Any]:
    with warnings.catch_warnings():
        # Near-constant returns (e.g. all flat trades) make scipy warn about precision and answer NaN;
        # that NaN is the honest result and is handled downstream, the warning adds nothing.
        warnings.simplefilter("ignore", RuntimeWarning)
        p_mean = float(stats.ttest_ind(group, rest, equal_var=False).pvalue)
    w, wr = int(group_wins.sum()), int(rest_wins.sum())
    table = [[w, len(group) - w], [wr, len(rest) - wr]]
    p_win = float(stats.fisher_exact(table).pvalue)
    mean, rest_mean = float(group.mean()), float(rest.mean())
    return {
        "dimension": dim,
        "value": str(value),
        "n": len(group),
        "n_rest": len(rest),
        "wins": w,
        "win_rate": w / len(group),
        "rest_win_rate": wr / len(rest),
        "mean_return": mean,
        "rest_mean_return": rest_mean,
        "median_return": float(np.median(group)),
        "effect": mean - rest_mean,
        "p_mean": p_mean if math.isfinite(p_mean) else math.nan,
        "p_win": p_win,
    }


def _validated(trades: pd.DataFrame, dims: list[str]) -> pd.DataFrame:
    """The trades with a known return, the dimension columns present (holding_bucket derived)."""
    needed = ["return_net", "win"]
    for dim in dims:
        if dim == "holding_bucket" and dim not in trades.columns:
            needed.append("holding_days")
        else:
            needed.append(dim)
    missing = [c for c in dict.fromkeys(needed) if c not in trades.columns]
    if missing:
        raise InputError(f"trades are missing column(s) {missing} needed for pattern detection")
    frame = trades.loc[:, [c for c in dict.fromkeys([*needed, *dims]) if c in trades.columns]].copy()
    try:
        frame["return_net"] = frame["return_net"].astype("float64")
    except (TypeError, ValueError) as exc:
        raise InputError(f"trades.return_net must be numeric: {exc}") from exc
    # A trade without a finite return (no capital committed) cannot be averaged; it is left out of
    # every group and every rest alike, so the counts stay consistent.
    frame = frame[np.isfinite(frame["return_net"].to_numpy())]
    if frame["win"].isna().any():
        raise InputError("trades.win has missing values: open episodes are not trades")
    if "holding_bucket" in dims and "holding_bucket" not in frame.columns:
        frame["holding_bucket"] = [holding_bucket(int(d)) for d in frame["holding_days"]]
    return frame


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_PATTERN_DTYPES[c]) for c in PATTERN_COLUMNS})
