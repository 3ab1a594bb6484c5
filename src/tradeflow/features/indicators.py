"""Causal technical indicators over float64 numpy arrays, one value per input row.

Every function is causal: the value at row t is computed from rows <= t only. Windows are trailing
(numpy sliding windows ending at t, so a windowed value depends on its own window alone), and the
recursive smoothers (EMA, Wilder) run forward from the first row (pandas ewm with adjust=False).
Rows without enough history are NaN; the builder drops them, nothing is ever back-filled.

Every output is scale-free (a ratio, a return, or a bounded oscillator), so a constant rescaling of
the whole price history, as happens when Yahoo back-adjusts adj_close for a new dividend, changes
nothing beyond rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

TRADING_DAYS = 252


def _windows(x: FloatArray, window: int) -> tuple[np.ndarray[Any, np.dtype[np.float64]], int]:
    """Trailing windows of x that end at rows window-1 .. n-1, and the row the first one ends at."""
    return sliding_window_view(x, window), window - 1


def _pad(values: FloatArray, first_row: int, n: int) -> FloatArray:
    out = np.full(n, np.nan)
    out[first_row : first_row + len(values)] = values
    return out


def rolling_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of x[t-window+1 .. t]; NaN while the window is incomplete or holds a NaN."""
    if len(x) < window:
        return np.full(len(x), np.nan)
    w, first = _windows(x, window)
    return _pad(w.mean(axis=1), first, len(x))


def rolling_std(x: FloatArray, window: int, ddof: int) -> FloatArray:
    """Standard deviation of x[t-window+1 .. t] (two-pass, so no cancellation on long histories)."""
    if len(x) < window:
        return np.full(len(x), np.nan)
    w, first = _windows(x, window)
    return _pad(w.std(axis=1, ddof=ddof), first, len(x))


def ema(x: FloatArray, alpha: float) -> FloatArray:
    """Recursive EMA y_t = y_{t-1} + alpha (x_t - y_{t-1}), seeded with the first non-NaN x."""
    return pd.Series(x).ewm(alpha=alpha, adjust=False).mean().to_numpy(dtype=np.float64)


def span_alpha(span: int) -> float:
    return 2.0 / (span + 1.0)


def log_returns(close: FloatArray) -> FloatArray:
    """log(close_t / close_{t-1}); NaN at row 0."""
    out = np.full(len(close), np.nan)
    out[1:] = np.log(close[1:] / close[:-1])
    return out


def realized_vol(returns: FloatArray, window: int) -> FloatArray:
    """Annualised sample std (ddof=1) of the last `window` log returns, today's included."""
    return rolling_std(returns, window, ddof=1) * np.sqrt(TRADING_DAYS)


def macd(close: FloatArray, fast: int, slow: int, signal: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line, its signal EMA and their difference, each in price units divided by today's close."""
    line = ema(close, span_alpha(fast)) - ema(close, span_alpha(slow))
    sig = ema(line, span_alpha(signal))
    return line / close, sig / close, (line - sig) / close


def bollinger(close: FloatArray, window: int, k: float) -> tuple[FloatArray, FloatArray]:
    """Upper and lower bands (SMA +- k population std, as Bollinger defined them) as band / close - 1."""
    mid = rolling_mean(close, window)
    dev = k * rolling_std(close, window, ddof=0)
    return (mid + dev) / close - 1.0, (mid - dev) / close - 1.0


def _share(part: FloatArray, total: FloatArray, when_still: float) -> FloatArray:
    """100 * part / total; `when_still` where total is 0 (no movement at all); NaN stays NaN."""
    out = np.full(len(total), when_still)
    np.divide(100.0 * part, total, out=out, where=total > 0)
    out[np.isnan(total)] = np.nan
    return out


def rsi(close: FloatArray, window: int) -> FloatArray:
    """Wilder's RSI in 0..100: 100 * avg_gain / (avg_gain + avg_loss), both Wilder-smoothed.

    Written as a share of total movement (equal to 100 - 100 / (1 + RS)) so a loss-free stretch gives
    100 without dividing by zero; a stretch without any movement is neutral, 50.
    """
    change = np.full(len(close), np.nan)
    change[1:] = np.diff(close)
    gain = ema(np.where(change > 0, change, 0.0 * change), 1.0 / window)
    loss = ema(np.where(change < 0, -change, 0.0 * change), 1.0 / window)
    return _share(gain, gain + loss, when_still=50.0)


def cci(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Commodity Channel Index: (tp - SMA(tp)) / (0.015 * mean absolute deviation), tp = (h + l + c) / 3.

    A window whose typical prices are all equal has no deviation: CCI is 0 there.
    """
    tp = (high + low + close) / 3.0
    n = len(tp)
    if n < window:
        return np.full(n, np.nan)
    w, first = _windows(tp, window)
    mean = w.mean(axis=1)
    mad = np.abs(w - mean[:, None]).mean(axis=1)
    dev = tp[first:] - mean
    value = np.where(mad > 0, dev / (0.015 * np.where(mad > 0, mad, 1.0)), 0.0)
    return _pad(value, first, n)


def dx(high: FloatArray, low: FloatArray, window: int) -> FloatArray:
    """Wilder's directional movement index DX in 0..100 (before ADX's extra smoothing).

    DX = 100 |+DI - -DI| / (+DI + -DI) with DI = smoothed DM / smoothed true range; the true range
    cancels, so DX is computed from the Wilder-smoothed +DM and -DM alone. No directional movement at
    all in the smoothed window gives 0 (no trend).
    """
    up = np.full(len(high), np.nan)
    down = np.full(len(high), np.nan)
    up[1:] = high[1:] - high[:-1]
    down[1:] = low[:-1] - low[1:]
    plus = np.where((up > down) & (up > 0), up, 0.0 * up)
    minus = np.where((down > up) & (down > 0), down, 0.0 * down)
    sp = ema(plus, 1.0 / window)
    sm = ema(minus, 1.0 / window)
    return _share(np.abs(sp - sm), sp + sm, when_still=0.0)


def sma_gap(close: FloatArray, window: int) -> FloatArray:
    """close / SMA(close, window) - 1."""
    return close / rolling_mean(close, window) - 1.0


def turbulence(returns: FloatArray, window: int) -> FloatArray:
    """Single-asset turbulence: ((r_t - mean) / std)^2 against the `window` returns before t (t excluded).

    Undefined (NaN) when those returns have no variance: the builder then drops the row.
    """
    n = len(returns)
    out = np.full(n, np.nan)
    if n <= window:
        return out
    # Windows ending at t-1 for t = window .. n-1: the last window (ending at n-1) is not needed.
    w = sliding_window_view(returns[: n - 1], window)
    mean = w.mean(axis=1)
    var = w.var(axis=1, ddof=1)
    today = returns[window:]
    out[window:] = np.where(var > 0, (today - mean) ** 2 / np.where(var > 0, var, 1.0), np.nan)
    return out


def align_vix(
    sessions: np.ndarray[Any, np.dtype[np.datetime64]],
    vix_sessions: np.ndarray[Any, np.dtype[np.datetime64]],
    vix_close: FloatArray,
    max_ffill: int,
) -> tuple[FloatArray, FloatArray]:
    """VIX level / 100 and its log change on each asset session, using VIX closes at or before it.

    A session without its own VIX bar takes the latest earlier VIX close while at most `max_ffill`
    asset sessions have passed since; staler rows are NaN. Both input session arrays must be sorted.
    """
    n = len(sessions)
    level = np.full(n, np.nan)
    if len(vix_sessions):
        # Index of the latest VIX session <= each asset session (backward as-of join: never a later bar).
        j = np.searchsorted(vix_sessions, sessions, side="right") - 1
        has = j >= 0
        used = vix_sessions[np.where(has, j, 0)]
        # Asset sessions after the VIX session used, up to and including this one: 0 when same-day.
        first_after = np.searchsorted(sessions, used, side="right")
        stale = np.arange(n) - first_after + 1
        ok = has & (stale <= max_ffill)
        level[ok] = vix_close[j[ok]]
    change = np.full(n, np.nan)
    change[1:] = np.log(level[1:] / level[:-1])
    return level / 100.0, change
