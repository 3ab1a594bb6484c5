"""Model health for the RL champion: is the world it trades in still the world it was trained and
costed on, and does the live loop still decide what the research code decides?

Three checks, each pure (frames in, numbers out; no clock, no I/O, no torch), so the Prefect task that
turns `HealthReport.breaches` into an event (which may start train-spy early) holds no logic:

1. Feature drift: each feature's live distribution against the training window's, by the
   population stability index (PSI) and the two-sample Kolmogorov-Smirnov test.
2. Cost realisation: what our fills really cost (price against the bar's open, which is the price the
   backtest fills at, plus the commission booked) against what `CostModel` charges for the same
   trades. A champion selected under costs it does not get is selected on fiction.
3. Decision agreement: the target weights the live ticks decided against the targets a replay of the
   same sessions decides. A deterministic policy fed the same features must agree; disagreement means
   the live inputs (data revisions, stale bars, a different spec) differ from research's.

Thresholds (`HealthThresholds`) and why:

- PSI 0.25: the credit-scoring convention (Siddiqi, "Credit Risk Scorecards", 2006) reads PSI < 0.1 as
  no shift, 0.1-0.25 as a moderate shift worth watching, > 0.25 as a major shift. Only "major" counts.
- KS p < 0.01 as well: PSI alone is biased upwards on small samples (with 10 bins and 20 live rows
  about one bin is empty by chance, and an empty bin alone adds ~0.7 through the eps floor), so a
  feature counts as drifted only when the KS test also says the difference is not sampling noise.
  KS assumes independent rows and daily features are autocorrelated, so its p-value is too small, but
  as a guard against the small-sample PSI bias it does its job; set `ks_alpha=1` for PSI alone.
- 30% of features drifted: one or two drifting features is routine (the VIX level moves between
  regimes); a third of the inputs off their training distribution means the policy is extrapolating.
  Measured on real SPY features (15 features, training 1995-2016, live windows starting each quarter
  of 2017-2022): the share crossed 30% for 88% of 60-session windows and 67% of 250-session ones.
  The features follow regimes that last months, so a short live window sits in one corner of a long
  training distribution and PSI/KS call that drift. Use a long live window, and tune the share on the
  champion's own history before the breach event is allowed to retrain.
- Cost ratio 2: the model's costs are a little conservative by design (sim/costs.py), so realised
  costs above twice the modelled ones are not rounding, they are a wrong model.
- Agreement 95%: the same deterministic policy on the same features agrees every session; the 5%
  leaves room for the odd session whose latest bar the vendor revised after the tick read it.
- Minimum evidence (10 fills, 20 sessions): fewer is noise; insufficient evidence is reported as
  such and is never a breach, so a quiet month does not retrain the champion.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tradeflow.backtest.metrics import to_jsonable
from tradeflow.errors import ConfigError, InputError
from tradeflow.sim.costs import CostModel

# Floor for a bin's proportion: an empty bin would make ln(a/e) infinite. 1e-4 is the usual choice;
# proportions are not renormalised after flooring, so PSI(x, x) stays exactly 0.
PSI_EPS = 1e-4
NEW_YORK = "America/New_York"
DRIFT_COLUMNS = ("psi", "ks_stat", "ks_p", "n_train", "n_live", "drifted")
FILL_COLUMNS = ("session", "side", "qty", "price", "commission")
_COMMISSIONS = ("realised_commission", "modelled_commission")
# Disagreeing sessions listed in the markdown; the JSON lists them all.
MARKDOWN_DISAGREEMENTS = 20

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _finite(values: Any) -> FloatArray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def psi(expected: Any, actual: Any, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`: sum over bins of (a - e) * ln(a / e).

    Bin edges are quantiles of `expected` taken as sample values (inverted CDF), so each bin holds
    ~1/bins of it and PSI depends only on the order of the values: a strictly increasing transform of
    both samples leaves it unchanged. Ties collapse edges (a feature with few distinct values gets
    fewer bins). Proportions are floored at PSI_EPS; non-finite values are dropped. PSI >= 0, and 0
    exactly when both samples fill the bins in the same proportions.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise InputError(f"psi: bins must be an integer >= 2, got {bins!r}")
    e, a = _finite(expected), _finite(actual)
    if e.size == 0 or a.size == 0:
        raise InputError(f"psi: need finite values on both sides, got {e.size} expected and {a.size} actual")
    inner = np.quantile(e, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf")
    edges = np.unique(inner)
    # side="left": bin j is (edge[j-1], edge[j]], so a value equal to an edge (a sample value) falls
    # in the bin whose upper quantile it is, and each bin holds its quantile share of `expected`.
    k = len(edges) + 1
    pe = np.bincount(np.searchsorted(edges, e, side="left"), minlength=k) / e.size
    pa = np.bincount(np.searchsorted(edges, a, side="left"), minlength=k) / a.size
    pe, pa = np.maximum(pe, PSI_EPS), np.maximum(pa, PSI_EPS)
    # Each term is >= 0: (pa - pe) and ln(pa / pe) always share their sign.
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def feature_drift(
    train: pd.DataFrame,
    live: pd.DataFrame,
    *,
    psi_threshold: float = 0.25,
    ks_alpha: float = 0.01,
    bins: int = 10,
) -> pd.DataFrame:
    """PSI and KS per numeric column the two frames share, most drifted first.

    Returns a frame indexed by `feature` with DRIFT_COLUMNS; `drifted` = psi > psi_threshold and
    ks_p < ks_alpha (see the module docstring for why both). A column without finite values on one
    side gets NaN statistics and is not drifted. Order: psi descending (NaN last), then name.
    """
    common = [c for c in train.columns if c in live.columns and pd.api.types.is_numeric_dtype(train[c])]
    common = [c for c in common if pd.api.types.is_numeric_dtype(live[c])]
    if not common:
        raise InputError("feature drift: the training and live frames share no numeric column")
    rows: dict[str, dict[str, Any]] = {}
    for name in common:
        t, lv = _finite(train[name]), _finite(live[name])
        row: dict[str, Any] = {"psi": math.nan, "ks_stat": math.nan, "ks_p": math.nan}
        if t.size and lv.size:
            ks = stats.ks_2samp(t, lv)
            row = {"psi": psi(t, lv, bins), "ks_stat": float(ks.statistic), "ks_p": float(ks.pvalue)}
        row.update(n_train=int(t.size), n_live=int(lv.size))
        row["drifted"] = bool(row["psi"] > psi_threshold and row["ks_p"] < ks_alpha)
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(DRIFT_COLUMNS))
    frame.index.name = "feature"
    frame = frame.sort_index(kind="stable").sort_values("psi", ascending=False, na_position="last", kind="stable")
    return frame.astype({"n_train": "int64", "n_live": "int64", "drifted": "bool"})


def _sessions(values: Any) -> pd.DatetimeIndex:
    """Session labels (dates, strings, timestamps) as naive midnight timestamps of the New York date."""
    # pandas would read integers as nanoseconds since 1970: a RangeIndex passed by mistake would
    # silently become one session in 1970 instead of an error.
    dtype = getattr(values, "dtype", None)
    numeric = dtype is not None and pd.api.types.is_numeric_dtype(dtype)
    if numeric or (len(values) and all(isinstance(v, int | float | np.number) for v in values)):
        raise InputError("sessions must be dates, strings or timestamps, not numbers (index the series by session)")
    index = pd.DatetimeIndex(pd.to_datetime(values))
    if index.tz is not None:
        index = index.tz_convert(NEW_YORK).tz_localize(None)
    return index.normalize().as_unit("ns")


def _session_series(values: pd.Series | Mapping[Any, Any], what: str) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=object)
    out = pd.Series(pd.to_numeric(series.to_numpy(), errors="raise"), index=_sessions(series.index), dtype=float)
    if out.index.has_duplicates:
        twice = sorted({d.date().isoformat() for d in out.index[out.index.duplicated()]})
        raise InputError(f"{what}: sessions appear more than once: {twice[:5]}")
    return out


@dataclass(frozen=True)
class CostRealisation:
    """Realised against modelled costs of the same fills. Money in the account currency.

    Slippage is measured against the reference (the bar's open) and is positive when worse for us:
    a buy above the open, a sell below it. Commission means everything booked outside the price, as
    the ledger records it (the sim broker books commission + SEC fee + FINRA TAF there), so the
    modelled side is `CostModel.commission` plus `sell_fees` on sales.
    """

    n_fills: int
    notional: float  # sum of qty x reference
    realised_slippage_bps_mean: float
    realised_slippage_bps_median: float
    modelled_slippage_bps_mean: float
    modelled_slippage_bps_median: float
    realised_slippage: float
    modelled_slippage: float
    realised_commission: float
    modelled_commission: float
    # One row per fill: session, side, qty, price, reference, realised_bps, modelled_bps,
    # realised_commission, modelled_commission.
    per_fill: pd.DataFrame = field(compare=False, repr=False)

    @property
    def realised_total(self) -> float:
        return self.realised_slippage + self.realised_commission

    @property
    def modelled_total(self) -> float:
        return self.modelled_slippage + self.modelled_commission

    @property
    def cost_ratio(self) -> float:
        """Realised / modelled total cost; inf when the model charges nothing and we paid, NaN when neither."""
        if self.modelled_total > 0:
            return self.realised_total / self.modelled_total
        return math.inf if self.realised_total > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "per_fill"}
        out.update(realised_total=self.realised_total, modelled_total=self.modelled_total, cost_ratio=self.cost_ratio)
        return to_jsonable(out)


def _fill_frame(fills: pd.DataFrame) -> pd.DataFrame:
    """session, side ("buy"/"sell"), qty (> 0), price, commission (+ volume when given), validated.

    A frame with a signed `shares` column instead of side/qty (ReplayResult.fills) is accepted too.
    """
    frame = fills.copy()
    if "shares" in frame.columns and not {"side", "qty"} <= set(frame.columns):
        signed = pd.to_numeric(frame["shares"]).to_numpy(dtype=float)
        frame["side"] = np.where(signed >= 0, "buy", "sell")
        frame["qty"] = np.abs(signed)
    missing = [c for c in FILL_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"cost realisation: fills lack columns {missing}")
    out = pd.DataFrame({"session": _sessions(frame["session"])})
    out["side"] = frame["side"].astype(str).str.lower().to_numpy()
    for column in ("qty", "price", "commission"):
        # float(Decimal) is exact enough here; the ledger hands qty, price and commission as Decimal.
        out[column] = np.asarray([float(v) for v in frame[column]], dtype=float)
    volume = frame["volume"] if "volume" in frame.columns else np.full(len(frame), np.nan)
    out["volume"] = np.asarray([float(v) for v in volume], dtype=float)
    bad_side = sorted(set(out["side"]) - {"buy", "sell"})
    if bad_side:
        raise InputError(f"cost realisation: side must be buy or sell, got {bad_side}")
    if not (np.isfinite(out["qty"]) & (out["qty"] > 0)).all():
        raise InputError("cost realisation: every fill needs a finite quantity > 0")
    if not (np.isfinite(out["price"]) & (out["price"] > 0)).all():
        raise InputError("cost realisation: every fill needs a finite price > 0")
    if not np.isfinite(out["commission"]).all():
        raise InputError("cost realisation: every fill needs a finite commission")
    return out


def cost_realisation(
    fills: pd.DataFrame, reference: pd.Series | Mapping[Any, float], cost_model: CostModel
) -> CostRealisation:
    """Compare what the fills cost with what `cost_model` charges for the same trades.

    `reference` maps each session to the modelled execution price, the bar's open (what the backtest
    and the sim broker fill at), in the same price terms as the fills (raw, not dividend-adjusted,
    for broker fills). The modelled fill is the one `sim.portfolio.rebalance` makes: the open moved
    by `price_impact` against us (with the day's volume when fills carry a `volume` column), charged
    `commission` at that price and, on sales, `sell_fees`.
    """
    if len(fills) == 0:
        empty = pd.DataFrame(columns=[*FILL_COLUMNS[:4], "reference", "realised_bps", "modelled_bps", *_COMMISSIONS])
        nan = math.nan
        return CostRealisation(0, 0.0, nan, nan, nan, nan, 0.0, 0.0, 0.0, 0.0, empty)
    frame = _fill_frame(fills)
    ref = _session_series(reference, "cost realisation reference")
    frame["reference"] = ref.reindex(frame["session"]).to_numpy()
    unpriced = ~(np.isfinite(frame["reference"]) & (frame["reference"] > 0))
    if unpriced.any():
        days = sorted({d.date().isoformat() for d in frame.loc[unpriced, "session"]})
        raise InputError(f"cost realisation: no positive reference price for the fills of {days[:5]}")
    buy = (frame["side"] == "buy").to_numpy()
    sign = np.where(buy, 1.0, -1.0)
    qty, price, reference_price = (frame[c].to_numpy(dtype=float) for c in ("qty", "price", "reference"))
    impact = np.array([cost_model.price_impact(q, v) for q, v in zip(qty, frame["volume"], strict=True)])
    modelled_price = reference_price * (1.0 + sign * impact)
    modelled_commission = np.array(
        [
            cost_model.commission(q, p) + (0.0 if is_buy else cost_model.sell_fees(q, p))
            for q, p, is_buy in zip(qty, modelled_price, buy, strict=True)
        ]
    )
    frame["realised_bps"] = sign * (price / reference_price - 1.0) * 1e4
    frame["modelled_bps"] = impact * 1e4
    frame["realised_commission"] = frame["commission"]
    frame["modelled_commission"] = modelled_commission
    per_fill = frame.loc[:, [*FILL_COLUMNS[:4], "reference", "realised_bps", "modelled_bps", *_COMMISSIONS]]
    return CostRealisation(
        n_fills=len(frame),
        notional=float(np.sum(qty * reference_price)),
        realised_slippage_bps_mean=float(frame["realised_bps"].mean()),
        realised_slippage_bps_median=float(frame["realised_bps"].median()),
        modelled_slippage_bps_mean=float(frame["modelled_bps"].mean()),
        modelled_slippage_bps_median=float(frame["modelled_bps"].median()),
        realised_slippage=float(np.sum(sign * (price - reference_price) * qty)),
        modelled_slippage=float(np.sum(impact * reference_price * qty)),
        realised_commission=float(frame["commission"].sum()),
        modelled_commission=float(modelled_commission.sum()),
        per_fill=per_fill.reset_index(drop=True),
    )


@dataclass(frozen=True)
class Agreement:
    """Live target weights against a replay's, over the sessions both decided (finite on both sides)."""

    n: int
    agreed: int
    disagreements: tuple[dt.date, ...]  # sessions where |live - replay| > tol, in order
    max_abs_diff: float  # NaN when n == 0
    only_live: int  # sessions the live loop decided and the replay did not (not judged)
    only_replay: int

    @property
    def rate(self) -> float:
        return self.agreed / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({**asdict(self), "rate": self.rate})


def decision_agreement(live: pd.Series, replay: pd.Series, tol: float = 1e-9) -> Agreement:
    """Share of common sessions where the live target and the replay's are within `tol` of each other.

    Both series are indexed by session. A NaN target (no decision that session) is left out as if
    the session were missing on that side; those sessions are counted in only_live / only_replay.
    """
    if not tol >= 0:
        raise InputError(f"decision agreement: tol must be >= 0, got {tol!r}")
    a = _session_series(live, "live targets").dropna()
    b = _session_series(replay, "replay targets").dropna()
    common = a.index.intersection(b.index).sort_values()
    diff = (a.reindex(common) - b.reindex(common)).abs()
    off = diff > tol
    return Agreement(
        n=len(common),
        agreed=int((~off).sum()),
        disagreements=tuple(d.date() for d in common[off.to_numpy()]),
        max_abs_diff=float(diff.max()) if len(common) else math.nan,
        only_live=len(a.index.difference(b.index)),
        only_replay=len(b.index.difference(a.index)),
    )


@dataclass(frozen=True)
class HealthThresholds:
    """Where a health figure becomes a breach; the module docstring gives the reasons for each default."""

    psi: float = 0.25  # PSI above which a feature's shift is "major"
    ks_alpha: float = 0.01  # ... and only when KS rejects "same distribution" at this level
    max_drifted_share: float = 0.3  # breach when more than this share of the features drifted
    cost_ratio: float = 2.0  # breach when realised / modelled total cost exceeds this
    min_agreement: float = 0.95  # breach when live/replay agreement falls below this
    agreement_tol: float = 1e-9  # target weights within this are the same decision
    min_fills: int = 10  # fewer fills: costs are insufficient evidence, never a breach
    min_sessions: int = 20  # fewer live sessions (drift) or common sessions (agreement): insufficient

    def __post_init__(self) -> None:
        checks = {
            "psi": self.psi > 0,
            "ks_alpha": 0 < self.ks_alpha <= 1,
            "max_drifted_share": 0 <= self.max_drifted_share < 1,
            "cost_ratio": self.cost_ratio > 0,
            "min_agreement": 0 < self.min_agreement <= 1,
            "agreement_tol": self.agreement_tol >= 0,
            "min_fills": isinstance(self.min_fills, int) and self.min_fills >= 1,
            "min_sessions": isinstance(self.min_sessions, int) and self.min_sessions >= 2,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"health thresholds out of range: {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_THRESHOLDS = HealthThresholds()


@dataclass(frozen=True)
class HealthReport:
    drift: pd.DataFrame = field(compare=False)  # feature_drift's table
    costs: CostRealisation | None  # None: not assessed (no fills given)
    agreement: Agreement | None  # None: not assessed (no targets given)
    breaches: tuple[str, ...]  # one human-readable reason per breached check, in check order
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS
    insufficient: tuple[str, ...] = ()  # checks skipped for too little evidence (never breaches)
    train_sessions: int = 0
    live_sessions: int = 0

    @property
    def healthy(self) -> bool:
        return not self.breaches

    def to_dict(self) -> dict[str, Any]:
        drift = [{"feature": name, **row} for name, row in self.drift.to_dict(orient="index").items()]
        return to_jsonable(
            {
                "healthy": self.healthy,
                "breaches": list(self.breaches),
                "insufficient": list(self.insufficient),
                "thresholds": self.thresholds.to_dict(),
                "train_sessions": self.train_sessions,
                "live_sessions": self.live_sessions,
                "drift": drift,
                "costs": None if self.costs is None else self.costs.to_dict(),
                "agreement": None if self.agreement is None else self.agreement.to_dict(),
            }
        )

    def to_markdown(self) -> str:
        lines = [f"# Model health: {'HEALTHY' if self.healthy else 'BREACHED'}", "", "## Breaches", ""]
        lines += [f"- {b}" for b in self.breaches] or ["None."]
        lines += ["", "## Feature drift", "", *self._drift_lines()]
        lines += ["", "## Costs", "", *self._cost_lines()]
        lines += ["", "## Decision agreement", "", *self._agreement_lines()]
        return "\n".join(lines) + "\n"

    def _drift_lines(self) -> list[str]:
        t = self.thresholds
        drifted = int(self.drift["drifted"].sum())
        lines = self._insufficient_lines("feature drift")
        lines.append(
            f"{drifted} of {len(self.drift)} features drifted (PSI > {t.psi:g} and KS p < {t.ks_alpha:g}); "
            f"{self.live_sessions} live against {self.train_sessions} training sessions."
        )
        lines += ["", "| feature | PSI | KS | KS p | drifted |", "|---|---:|---:|---:|:---:|"]
        for name, row in self.drift.iterrows():
            lines.append(
                f"| {name} | {row['psi']:.3f} | {row['ks_stat']:.3f} | {row['ks_p']:.2g} | "
                f"{'yes' if row['drifted'] else ''} |"
            )
        return lines

    def _cost_lines(self) -> list[str]:
        c = self.costs
        if c is None:
            return ["Not assessed (no fills given)."]
        lines = self._insufficient_lines("costs")
        lines += [
            f"{c.n_fills} fills, notional {c.notional:,.2f}; realised / modelled total cost "
            f"**{c.cost_ratio:.2f}** (limit {self.thresholds.cost_ratio:g}).",
            "",
            "| | realised | modelled |",
            "|---|---:|---:|",
            f"| slippage, mean (bps) | {c.realised_slippage_bps_mean:.2f} | {c.modelled_slippage_bps_mean:.2f} |",
            f"| slippage, median (bps) | {c.realised_slippage_bps_median:.2f} | {c.modelled_slippage_bps_median:.2f} |",
            f"| slippage | {c.realised_slippage:,.2f} | {c.modelled_slippage:,.2f} |",
            f"| commission and fees | {c.realised_commission:,.2f} | {c.modelled_commission:,.2f} |",
            f"| total | {c.realised_total:,.2f} | {c.modelled_total:,.2f} |",
        ]
        return lines

    def _agreement_lines(self) -> list[str]:
        a = self.agreement
        if a is None:
            return ["Not assessed (no live and replay targets given)."]
        lines = self._insufficient_lines("decision agreement")
        lines.append(
            f"{a.agreed} of {a.n} common sessions agree ({a.rate:.1%}; limit {self.thresholds.min_agreement:.0%}); "
            f"largest difference {a.max_abs_diff:.4g}; {a.only_live} sessions only live, {a.only_replay} only "
            "in the replay."
        )
        if a.disagreements:
            shown = ", ".join(d.isoformat() for d in a.disagreements[:MARKDOWN_DISAGREEMENTS])
            more = len(a.disagreements) - MARKDOWN_DISAGREEMENTS
            lines += ["", f"Disagreeing sessions: {shown}" + (f" (+{more} more)" if more > 0 else "")]
        return lines

    def _insufficient_lines(self, check: str) -> list[str]:
        prefix = f"{check}: "
        found = [n.removeprefix(prefix) for n in self.insufficient if n.startswith(prefix)]
        return [f"**Insufficient evidence** ({'; '.join(found)}): reported, not judged.", ""] if found else []


def _drift_breach(drift: pd.DataFrame, t: HealthThresholds) -> str | None:
    if drift.empty:
        return None
    names = list(drift.index[drift["drifted"].to_numpy()])
    share = len(names) / len(drift)
    if share <= t.max_drifted_share:
        return None
    return (
        f"feature drift: {len(names)} of {len(drift)} features drifted ({share:.0%} > {t.max_drifted_share:.0%}): "
        + ", ".join(map(str, names))
    )


def _cost_breach(c: CostRealisation, t: HealthThresholds) -> str | None:
    ratio = c.cost_ratio
    if not ratio > t.cost_ratio:  # NaN (nothing paid, nothing modelled) is no breach
        return None
    return (
        f"costs: realised / modelled total cost {ratio:.2f} > {t.cost_ratio:g} over {c.n_fills} fills "
        f"(slippage {c.realised_slippage_bps_mean:.2f} bps realised vs {c.modelled_slippage_bps_mean:.2f} modelled; "
        f"commission and fees {c.realised_commission:.2f} vs {c.modelled_commission:.2f})"
    )


def _agreement_breach(a: Agreement, t: HealthThresholds) -> str | None:
    if not a.rate < t.min_agreement:
        return None
    first = ", ".join(d.isoformat() for d in a.disagreements[:5])
    return (
        f"decision agreement: {a.rate:.1%} < {t.min_agreement:.0%} over {a.n} sessions "
        f"({len(a.disagreements)} disagreements, first {first})"
    )


def assess_health(
    *,
    train_features: pd.DataFrame,
    live_features: pd.DataFrame,
    fills: pd.DataFrame | None = None,
    reference: pd.Series | Mapping[Any, float] | None = None,
    cost_model: CostModel | None = None,
    live_targets: pd.Series | None = None,
    replay_targets: pd.Series | None = None,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> HealthReport:
    """Run the three checks and list the breaches; checks without enough evidence are reported, not judged.

    `train_features` is the champion's training window (feature rows of its train_range, which the
    registry's lineage names), `live_features` the rows it has traded on since. Costs are assessed
    when `fills` is given (then `reference` and `cost_model`, the model's own CostModel, are required);
    agreement when both target series are given.
    """
    t = thresholds
    insufficient: list[str] = []
    breaches: list[str] = []

    drift = feature_drift(train_features, live_features, psi_threshold=t.psi, ks_alpha=t.ks_alpha)
    n_train, n_live = len(train_features), len(live_features)
    if n_live < t.min_sessions or n_train < t.min_sessions:
        side, n = ("live", n_live) if n_live < t.min_sessions else ("training", n_train)
        insufficient.append(f"feature drift: {n} {side} sessions < {t.min_sessions} required")
    elif (reason := _drift_breach(drift, t)) is not None:
        breaches.append(reason)

    costs = None
    if fills is not None:
        if reference is None or cost_model is None:
            raise InputError("assess_health: fills need the reference prices and the champion's cost model")
        costs = cost_realisation(fills, reference, cost_model)
        if costs.n_fills < t.min_fills:
            insufficient.append(f"costs: {costs.n_fills} fills < {t.min_fills} required")
        elif (reason := _cost_breach(costs, t)) is not None:
            breaches.append(reason)

    agreement = None
    if (live_targets is None) != (replay_targets is None):
        raise InputError("assess_health: decision agreement needs both the live and the replay targets")
    if live_targets is not None and replay_targets is not None:
        agreement = decision_agreement(live_targets, replay_targets, t.agreement_tol)
        if agreement.n < t.min_sessions:
            insufficient.append(f"decision agreement: {agreement.n} common sessions < {t.min_sessions} required")
        elif (reason := _agreement_breach(agreement, t)) is not None:
            breaches.append(reason)

    return HealthReport(
        drift=drift,
        costs=costs,
        agreement=agreement,
        breaches=tuple(breaches),
        thresholds=t,
        insufficient=tuple(insufficient),
        train_sessions=n_train,
        live_sessions=n_live,
    )
