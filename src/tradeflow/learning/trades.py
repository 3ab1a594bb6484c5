"""Round-trip trades rebuilt from tradeflow's own fills, joined to the decision that opened them.

Learning from our own trading needs a unit that has an outcome: a single fill has none, a position
snapshot has no end. The unit here is the round trip, one flat-to-flat episode of the net position of
one (strategy, symbol). Everything the pattern detector and the experiments compare (return, win,
holding time, the market regime at entry) is a column of that episode.

Rules, chosen so the numbers add up and nothing is counted twice:

- Fills are folded per (strategy, symbol) in (ts, execution_id) order, the order the ledger folds
  positions in, so the result does not depend on the order rows arrive in.
- A fill that flips the position through zero ends the episode at that fill with the closing part of
  its quantity (commission split pro rata by quantity) and opens the next episode with the rest, so
  each share and each cent of commission belongs to exactly one episode.
- An episode still open at the end has no outcome yet and is not a trade; `open_episodes` returns it
  so callers can still account for its cash (sum of trade pnl + open cash flow - open costs = the
  total cash flow minus commissions of the fills).
- The context (params, experiment arm, VIX, trend) comes from the entry decision: the decision of the
  same (strategy, symbol) for the session of the order that opened the episode. That is what the
  strategy knew when it committed capital; later decisions that resized the position do not relabel it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.errors import InputError

FILL_COLUMNS = (
    "execution_id",
    "client_order_id",
    "symbol",
    "side",
    "qty",
    "price",
    "commission",
    "ts",
    "session",
    "strategy",
)
DECISION_COLUMNS = ("session", "strategy", "symbol", "params", "arm", "experiment_id", "target", "vix", "trend")
TRADE_COLUMNS = (
    "trade_id",
    "strategy",
    "symbol",
    "direction",
    "entry_session",
    "exit_session",
    "entry_ts",
    "exit_ts",
    "holding_days",
    "max_qty",
    "entry_notional",
    "pnl",
    "costs",
    "return_net",
    "win",
    "params",
    "arm",
    "experiment_id",
    "vix_at_entry",
    "vix_regime",
    "trend",
    "weekday",
)
# An open episode has no exit and no realised outcome; what it does have is the position still held and
# the cash it has moved so far, which callers need to reconcile trades against the fills.
OPEN_EPISODE_COLUMNS = (*TRADE_COLUMNS, "position", "cash_flow")

VIX_LOW = 15.0  # below: "low"
VIX_HIGH = 25.0  # at or above: "high"; between: "normal"

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Quantities are floats (fractional shares); a position this close to zero relative to the quantities
# involved is flat. Without a tolerance 0.1 + 0.2 - 0.3 would leave a phantom episode open forever.
_REL_TOL = 1e-9

_TRADE_DTYPES: dict[str, Any] = {
    "trade_id": "str",
    "strategy": "str",
    "symbol": "str",
    "direction": "str",
    "entry_session": "object",
    "exit_session": "object",
    # Only for empty frames: non-empty ones keep the input's time unit, so nanoseconds are not truncated.
    "entry_ts": "datetime64[us, UTC]",
    "exit_ts": "datetime64[us, UTC]",
    "holding_days": "int64",
    "max_qty": "float64",
    "entry_notional": "float64",
    "pnl": "float64",
    "costs": "float64",
    "return_net": "float64",
    "win": "bool",
    "params": "str",
    "arm": "str",
    "experiment_id": "str",
    "vix_at_entry": "float64",
    "vix_regime": "str",
    "trend": "str",
    "weekday": "str",
}
# Open episodes have no realised outcome, so those columns are nullable rather than a made-up 0/False.
_OPEN_DTYPES: dict[str, Any] = {
    **_TRADE_DTYPES,
    "holding_days": "Int64",
    "win": "boolean",
    "position": "float64",
    "cash_flow": "float64",
}


@dataclass
class _Episode:
    """The running state of one flat-to-flat episode of one (strategy, symbol)."""

    strategy: str
    symbol: str
    direction: int  # +1 long, -1 short
    entry_ts: pd.Timestamp
    entry_session: dt.date
    position: float = 0.0
    max_qty: float = 0.0
    entry_notional: float = 0.0
    cash_flow: float = 0.0  # sells' notional minus buys' notional, commissions excluded
    costs: float = 0.0
    exit_ts: pd.Timestamp | None = None
    exit_session: dt.date | None = None

    def apply(self, signed_qty: float, price: float, commission: float) -> None:
        """Fold one fill (or the part of a flipping fill that belongs here), never crossing zero."""
        if self.position == 0.0 or (signed_qty > 0) == (self.position > 0):
            # Only fills that grow |position| commit capital; the return is measured against this.
            self.entry_notional += abs(signed_qty) * price
        self.cash_flow -= signed_qty * price
        self.costs += commission
        self.position += signed_qty
        self.max_qty = max(self.max_qty, abs(self.position))


def round_trips(fills: pd.DataFrame, decisions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The closed round-trip trades in `fills` (FILL_COLUMNS), one row per trade (TRADE_COLUMNS).

    Rows are ordered by entry time, then strategy and symbol. Context columns come from the entry
    decision in `decisions` (DECISION_COLUMNS); a trade without one gets the documented defaults
    (params "", arm "", experiment_id "", vix NaN / "unknown", trend "unknown").
    """
    closed, _ = _fold(fills)
    if not closed:
        return _empty(TRADE_COLUMNS, _TRADE_DTYPES)
    context = _decision_index(decisions)
    rows = [_row(ep, context) for ep in closed]
    _disambiguate_ids(rows)
    out = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    out = out.sort_values(["entry_ts", "strategy", "symbol"], kind="stable", ignore_index=True)
    return out.astype(_without_ts(_TRADE_DTYPES))


def open_episodes(fills: pd.DataFrame, decisions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The episodes still open after the last fill (OPEN_EPISODE_COLUMNS): not trades, no outcome yet.

    Entry-side columns are filled as for trades; exit_session is None, exit_ts NaT, holding_days,
    pnl, return_net and win are missing. `position` is the signed quantity still held and `cash_flow`
    the sells' minus buys' notional so far (commissions excluded; they are in `costs`).
    """
    _, still_open = _fold(fills)
    if not still_open:
        return _empty(OPEN_EPISODE_COLUMNS, _OPEN_DTYPES)
    context = _decision_index(decisions)
    rows = []
    for ep in still_open:
        row = _row(ep, context)
        row.update(
            exit_session=None,
            exit_ts=pd.NaT,
            holding_days=pd.NA,
            pnl=math.nan,
            return_net=math.nan,
            win=pd.NA,
            position=ep.position,
            cash_flow=ep.cash_flow,
        )
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(OPEN_EPISODE_COLUMNS))
    out["exit_ts"] = pd.Series(pd.NaT, index=out.index, dtype=out["entry_ts"].dtype)
    out = out.sort_values(["entry_ts", "strategy", "symbol"], kind="stable", ignore_index=True)
    return out.astype(_without_ts(_OPEN_DTYPES))


def summarize(trades: pd.DataFrame) -> dict[str, float | int]:
    """Headline figures of a set of trades; on no trades the counts are 0 and the rates/means NaN."""
    count = len(trades)
    if count == 0:
        return {
            "count": 0,
            "wins": 0,
            "win_rate": math.nan,
            "mean_return": math.nan,
            "median_return": math.nan,
            "total_pnl": 0.0,
            "mean_holding_days": math.nan,
        }
    wins = int(trades["win"].astype(bool).sum())
    returns = trades["return_net"].astype(float)
    return {
        "count": count,
        "wins": wins,
        "win_rate": wins / count,
        "mean_return": float(returns.mean()),
        "median_return": float(returns.median()),
        "total_pnl": float(trades["pnl"].astype(float).sum()),
        "mean_holding_days": float(trades["holding_days"].astype(float).mean()),
    }


# --- the fold ---------------------------------------------------------------------------------------


def _fold(fills: pd.DataFrame) -> tuple[list[_Episode], list[_Episode]]:
    """(closed episodes in the order they closed, episodes still open) of the validated fills."""
    df = _validated_fills(fills)
    running: dict[tuple[str, str], _Episode] = {}
    closed: list[_Episode] = []
    for strategy, symbol, side, qty, price, commission, ts, session in zip(
        df["strategy"],
        df["symbol"],
        df["side"],
        df["qty"],
        df["price"],
        df["commission"],
        df["ts"],
        df["session"],
        strict=True,
    ):
        key = (strategy, symbol)
        sign = 1 if side == "buy" else -1
        ep = running.get(key)
        if ep is None:
            running[key] = _open(strategy, symbol, sign, ts, session, qty, price, commission)
            continue
        if sign == ep.direction:
            ep.apply(sign * qty, price, commission)
            continue
        held = abs(ep.position)
        excess = qty - held
        tol = _REL_TOL * max(qty, held)
        if excess < -tol:  # reduces without reaching zero: still the same episode
            ep.apply(sign * qty, price, commission)
            continue
        flips = excess > tol
        close_qty = held if flips else qty
        close_commission = commission * close_qty / qty if flips else commission
        ep.apply(sign * close_qty, price, close_commission)
        ep.position = 0.0  # flat by definition; drop float residue below the tolerance
        ep.exit_ts, ep.exit_session = ts, session
        closed.append(ep)
        del running[key]
        if flips:
            running[key] = _open(strategy, symbol, sign, ts, session, excess, price, commission - close_commission)
    return closed, list(running.values())


def _open(
    strategy: str,
    symbol: str,
    sign: int,
    ts: pd.Timestamp,
    session: dt.date,
    qty: float,
    price: float,
    commission: float,
) -> _Episode:
    ep = _Episode(strategy=strategy, symbol=symbol, direction=sign, entry_ts=ts, entry_session=session)
    ep.apply(sign * qty, price, commission)
    return ep


def _validated_fills(fills: pd.DataFrame) -> pd.DataFrame:
    """The fills with checked types, sorted by (ts, execution_id): the ledger's fold order."""
    missing = [c for c in FILL_COLUMNS if c not in fills.columns]
    if missing:
        raise InputError(f"fills are missing column(s) {missing}; expected {list(FILL_COLUMNS)}")
    df = fills.loc[:, list(FILL_COLUMNS)].copy()
    if df.empty:
        return df
    df["side"] = df["side"].map(lambda s: str(s).strip().lower())
    bad_sides = sorted(set(df["side"]) - {"buy", "sell"})
    if bad_sides:
        raise InputError(f"fills.side must be 'buy' or 'sell', got {bad_sides}")
    for col in ("qty", "price", "commission"):
        try:
            df[col] = df[col].astype("float64")
        except (TypeError, ValueError) as exc:
            raise InputError(f"fills.{col} must be numeric: {exc}") from exc
        if not np.isfinite(df[col].to_numpy()).all():
            raise InputError(f"fills.{col} has missing or non-finite values")
    if (df["qty"] <= 0).any():
        raise InputError("fills.qty must be > 0 (the direction is in `side`)")
    df["ts"] = _utc_timestamps(df["ts"])
    df["session"] = df["session"].map(_as_date).astype("object")
    df["strategy"] = df["strategy"].astype(str)
    df["symbol"] = df["symbol"].astype(str)
    df["execution_id"] = df["execution_id"].astype(str)
    return df.sort_values(["ts", "execution_id"], kind="stable", ignore_index=True)


def _utc_timestamps(raw: pd.Series) -> pd.Series:
    try:
        ts = pd.to_datetime(raw)
    except (TypeError, ValueError):
        # Aware timestamps with different offsets do not share a dtype until converted to UTC.
        try:
            ts = pd.to_datetime(raw, utc=True)
        except (TypeError, ValueError) as exc:
            raise InputError(f"fills.ts is not a timestamp column: {exc}") from exc
    if ts.dt.tz is None:
        # A naive time could be exchange time or UTC; guessing would misorder fills around midnight.
        raise InputError("fills.ts must be tz-aware (UTC), got naive timestamps")
    if ts.isna().any():
        raise InputError("fills.ts has missing values")
    return ts.dt.tz_convert("UTC")


def _as_date(value: Any) -> dt.date:
    if value is None or (not isinstance(value, dt.date) and pd.isna(value)):
        raise InputError("a session value is missing: every fill and decision needs its trading session")
    if isinstance(value, dt.datetime):  # also pd.Timestamp: a session is a calendar day, not an instant
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot read session {value!r} as a date") from exc


# --- the entry decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    params: str
    arm: str
    experiment_id: str
    vix: float
    trend: str


_NO_CONTEXT = _Context(params="", arm="", experiment_id="", vix=math.nan, trend="unknown")


def _decision_index(decisions: pd.DataFrame | None) -> dict[tuple[str, str, dt.date], _Context]:
    if decisions is None or decisions.empty:
        return {}
    needed = ("session", "strategy", "symbol", "params", "arm", "experiment_id", "vix", "trend")
    missing = [c for c in needed if c not in decisions.columns]
    if missing:
        raise InputError(f"decisions are missing column(s) {missing}; expected {list(DECISION_COLUMNS)}")
    index: dict[tuple[str, str, dt.date], _Context] = {}
    # One tick per session makes one decision per (strategy, symbol, session); should a re-run have
    # written it twice, the later row wins, as it is the one whose orders were sent last.
    for session, strategy, symbol, params, arm, experiment_id, vix, trend in zip(
        decisions["session"],
        decisions["strategy"],
        decisions["symbol"],
        decisions["params"],
        decisions["arm"],
        decisions["experiment_id"],
        decisions["vix"],
        decisions["trend"],
        strict=True,
    ):
        index[(str(strategy), str(symbol), _as_date(session))] = _Context(
            params=_params_text(params),
            arm=_text(arm),
            experiment_id=_text(experiment_id),
            vix=_float(vix),
            trend=_trend(trend),
        )
    return index


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def _params_text(value: Any) -> str:
    if isinstance(value, dict):
        # Sorted keys: the same parameters must give the same string, or grouping by params splits them.
        return json.dumps(value, sort_keys=True)
    return _text(value)


def _float(value: Any) -> float:
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"decisions.vix must be numeric, got {value!r}") from exc


def _trend(value: Any) -> str:
    text = _text(value).strip().lower()
    return text if text in ("up", "down") else "unknown"


def vix_regime(vix: float) -> str:
    """ "low" below 15, "normal" from 15 to below 25, "high" from 25, "unknown" when not known."""
    if math.isnan(vix):
        return "unknown"
    if vix < VIX_LOW:
        return "low"
    return "normal" if vix < VIX_HIGH else "high"


def _row(ep: _Episode, context: dict[tuple[str, str, dt.date], _Context]) -> dict[str, Any]:
    ctx = context.get((ep.strategy, ep.symbol, ep.entry_session), _NO_CONTEXT)
    pnl = ep.cash_flow - ep.costs
    exit_session = ep.exit_session
    return {
        "trade_id": f"{ep.strategy}:{ep.symbol}:{ep.entry_ts.isoformat()}",
        "strategy": ep.strategy,
        "symbol": ep.symbol,
        "direction": "long" if ep.direction > 0 else "short",
        "entry_session": ep.entry_session,
        "exit_session": exit_session,
        "entry_ts": ep.entry_ts,
        "exit_ts": ep.exit_ts,
        "holding_days": int(np.busday_count(ep.entry_session, exit_session)) if exit_session is not None else 0,
        "max_qty": ep.max_qty,
        "entry_notional": ep.entry_notional,
        "pnl": pnl,
        "costs": ep.costs,
        "return_net": pnl / ep.entry_notional if ep.entry_notional > 0 else math.nan,
        "win": pnl > 0,
        "params": ctx.params,
        "arm": ctx.arm,
        "experiment_id": ctx.experiment_id,
        "vix_at_entry": ctx.vix,
        "vix_regime": vix_regime(ctx.vix),
        "trend": ctx.trend,
        "weekday": _WEEKDAYS[ep.entry_session.weekday()],
    }


def _disambiguate_ids(rows: list[dict[str, Any]]) -> None:
    """Suffix "#2", "#3"... to an id already taken, in the order the trades closed.

    Two trades of one (strategy, symbol) share an entry time only when fills carry equal timestamps
    (a round trip and a re-entry within one timestamp); ids must still be unique to be used as keys.
    """
    seen: dict[str, int] = {}
    for row in rows:
        base = row["trade_id"]
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            row["trade_id"] = f"{base}#{seen[base]}"


def _without_ts(dtypes: dict[str, Any]) -> dict[str, Any]:
    return {c: t for c, t in dtypes.items() if c not in ("entry_ts", "exit_ts")}


def _empty(columns: tuple[str, ...], dtypes: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in columns})
