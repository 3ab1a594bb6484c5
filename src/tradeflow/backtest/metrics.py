"""Performance metrics of a daily equity curve, in plain numpy.

Conventions: `equity` is marked at each session's close (equity[0] = starting capital); returns are
simple close-to-close returns (len n - 1); a year is `periods_per_year` = 252 sessions; the risk-free
rate is zero unless given (annual, spread evenly over sessions). Standard deviations use ddof=1.
A metric that is undefined for the data (a flat curve's Sharpe, the win rate of no round trips, a
Calmar without drawdown) is NaN, never a made-up 0; `to_jsonable` turns NaN into JSON null.

The probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012, "The Sharpe Ratio Efficient Frontier")
is the probability that the true Sharpe exceeds a benchmark, given the sample's length, skewness and
kurtosis. The deflated Sharpe ratio (Bailey & Lopez de Prado 2014) is the PSR against the Sharpe
the best of N unskilled trials would show by luck, so it is never above the PSR against zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, time
from statistics import NormalDist
from typing import Any

import numpy as np

PERIODS_PER_YEAR = 252
EULER_GAMMA = 0.5772156649015329
# What `tradeflow backtest --json` prints, in this order (psr/dsr follow as extras).
METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "win_rate",
    "turnover",
    "exposure",
    "trades",
)
EXTRA_KEYS: tuple[str, ...] = ("psr", "dsr")
_NORMAL = NormalDist()
_NAN = float("nan")


def simple_returns(equity: np.ndarray) -> np.ndarray:
    """Close-to-close returns; a session after equity reached zero or below returns 0 (nothing left)."""
    e = np.asarray(equity, dtype=np.float64)
    prev = e[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev > 0, e[1:] / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)


def total_return(equity: np.ndarray) -> float:
    e = np.asarray(equity, dtype=np.float64)
    return float(e[-1] / e[0] - 1.0) if len(e) and e[0] > 0 else _NAN


def cagr(equity: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Compound annual growth over len(equity) - 1 sessions; -1.0 once the capital is gone."""
    e = np.asarray(equity, dtype=np.float64)
    if len(e) < 2 or e[0] <= 0:
        return _NAN
    if e[-1] <= 0:
        return -1.0
    years = (len(e) - 1) / periods_per_year
    return float((e[-1] / e[0]) ** (1.0 / years) - 1.0)


def volatility(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    r = np.asarray(returns, dtype=np.float64)
    return float(r.std(ddof=1) * math.sqrt(periods_per_year)) if len(r) > 1 else _NAN


def _excess(returns: np.ndarray, risk_free: float, periods_per_year: int) -> np.ndarray:
    return np.asarray(returns, dtype=np.float64) - risk_free / periods_per_year


def sharpe_ratio(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ratio: mean / std of excess daily returns times sqrt(periods_per_year)."""
    x = _excess(returns, risk_free, periods_per_year)
    if len(x) < 2:
        return _NAN
    sd = x.std(ddof=1)
    return float(x.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else _NAN


def sortino_ratio(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR, risk_free: float = 0.0) -> float:
    """Annualised Sortino ratio with target 0 excess: downside deviation = sqrt(mean(min(x, 0)^2)) over all days."""
    x = _excess(returns, risk_free, periods_per_year)
    if len(x) < 2:
        return _NAN
    downside = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
    return float(x.mean() / downside * math.sqrt(periods_per_year)) if downside > 0 else _NAN


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at each close (0 at a new high, negative below it)."""
    e = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, e / np.where(peak > 0, peak, 1.0) - 1.0, 0.0)


def max_drawdown(equity: np.ndarray) -> float:
    """The deepest drawdown as a NEGATIVE fraction (-0.34 = 34% below the peak); 0.0 if never below."""
    return float(drawdown(equity).min()) if len(equity) else _NAN


def calmar_ratio(equity: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """CAGR / |max drawdown|; NaN without a drawdown."""
    mdd = max_drawdown(equity)
    return cagr(equity, periods_per_year) / -mdd if mdd < 0 else _NAN


def win_rate(round_trip_pnl: np.ndarray) -> float:
    """Fraction of closed round trips (entry -> exit) with a positive net P&L; NaN with none."""
    pnl = np.asarray(round_trip_pnl, dtype=np.float64)
    return float((pnl > 0).mean()) if len(pnl) else _NAN


def turnover(traded_notional: float, equity: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised traded notional (buys + sells) over average equity: 2.0 = the book bought and sold once a year."""
    e = np.asarray(equity, dtype=np.float64)
    if len(e) < 2 or e.mean() <= 0:
        return _NAN
    years = (len(e) - 1) / periods_per_year
    return float(traded_notional / years / e.mean())


def exposure(position: np.ndarray) -> float:
    """Fraction of sessions that close with a non-zero position."""
    p = np.asarray(position, dtype=np.float64)
    return float((p != 0).mean()) if len(p) else _NAN


def _moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe (ddof=1), skewness and (non-excess) kurtosis of the returns."""
    r = np.asarray(returns, dtype=np.float64)
    centred = r - r.mean()
    # products, not ** with a float exponent: np.power is ~20x slower and this runs every backtest
    c2 = centred * centred
    m2 = float(c2.mean())
    skew = float((c2 * centred).mean()) / m2**1.5
    kurt = float((c2 * c2).mean()) / m2**2
    sd = math.sqrt(m2 * len(r) / (len(r) - 1))
    return float(r.mean()) / sd, skew, kurt


def probabilistic_sharpe_ratio(
    returns: np.ndarray, benchmark_sharpe: float = 0.0, periods_per_year: int = PERIODS_PER_YEAR
) -> float:
    """P(true Sharpe > benchmark) = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)).

    SR and SR* are per period in the formula; `benchmark_sharpe` is annualised, like `sharpe_ratio`.
    """
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 3 or not r.std(ddof=1) > 0:
        return _NAN
    sr, skew, kurt = _moments(r)
    sr_star = benchmark_sharpe / math.sqrt(periods_per_year)
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not var > 0:
        return _NAN
    return _NORMAL.cdf((sr - sr_star) * math.sqrt(len(r) - 1) / math.sqrt(var))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """The Sharpe the best of `n_trials` skill-less trials is expected to show (same units as the variance's root)."""
    if n_trials < 1:
        raise ValueError("n_trials must be at least 1")
    if n_trials == 1 or trial_sharpe_variance <= 0:
        return 0.0
    z = _NORMAL.inv_cdf
    return math.sqrt(trial_sharpe_variance) * (
        (1.0 - EULER_GAMMA) * z(1.0 - 1.0 / n_trials) + EULER_GAMMA * z(1.0 - 1.0 / (n_trials * math.e))
    )


def deflated_sharpe_ratio(
    returns: np.ndarray,
    n_trials: int,
    trial_sharpe_variance: float,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> float:
    """PSR against the expected maximum Sharpe of `n_trials` trials.

    `trial_sharpe_variance` is the variance across trials of their ANNUALISED Sharpe ratios (as
    `sharpe_ratio` reports them). One trial (or no dispersion) deflates nothing: DSR = PSR(0).
    """
    sr_star = expected_max_sharpe(n_trials, trial_sharpe_variance)
    return probabilistic_sharpe_ratio(returns, sr_star, periods_per_year)


def metrics_dict(
    equity: np.ndarray,
    *,
    position: np.ndarray | None = None,
    traded_notional: float = 0.0,
    round_trip_pnl: np.ndarray | None = None,
    fills: int = 0,
    periods_per_year: int = PERIODS_PER_YEAR,
    risk_free: float = 0.0,
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
) -> dict[str, float]:
    """Every metric under METRIC_KEYS + EXTRA_KEYS, as plain Python floats (trades an int)."""
    e = np.asarray(equity, dtype=np.float64)
    r = simple_returns(e)
    pnl = np.asarray(round_trip_pnl if round_trip_pnl is not None else [], dtype=np.float64)
    out: dict[str, float] = {
        "total_return": total_return(e),
        "cagr": cagr(e, periods_per_year),
        "volatility": volatility(r, periods_per_year),
        "sharpe": sharpe_ratio(r, periods_per_year, risk_free),
        "sortino": sortino_ratio(r, periods_per_year, risk_free),
        "max_drawdown": max_drawdown(e),
        "calmar": calmar_ratio(e, periods_per_year),
        "win_rate": win_rate(pnl),
        "turnover": turnover(traded_notional, e, periods_per_year),
        "exposure": exposure(position) if position is not None else _NAN,
        "trades": int(fills),
        "psr": probabilistic_sharpe_ratio(_excess(r, risk_free, periods_per_year), 0.0, periods_per_year),
        "dsr": deflated_sharpe_ratio(
            _excess(r, risk_free, periods_per_year), n_trials, trial_sharpe_variance, periods_per_year
        ),
    }
    return out


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays to Python, NaN and infinities to None, timestamps to ISO dates."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        # tolist() would turn datetime64[ns] into bare integers
        return [to_jsonable(v) for v in (value if value.dtype.kind == "M" else value.tolist())]
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        value = value.astype("datetime64[us]").item()
    if isinstance(value, date):  # datetime and pd.Timestamp too
        if value != value:  # NaT
            return None
        # Sessions are dates: a naive midnight prints as the date alone.
        if isinstance(value, datetime) and value.tzinfo is None and value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat()
    return value
