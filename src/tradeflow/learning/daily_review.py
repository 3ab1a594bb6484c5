"""The daily learning review: the ledger's trades, their patterns, the experiments and their
governed decisions, model health and analyst notes, in one result and one readable report.

It runs after the close of every NYSE session (flow `learning-review`, CLI `tradeflow review`):

1. rebuild round-trip trades from the ledger's fills, each joined to the decision that opened it
   (its parameters, experiment arm, VIX regime and trend);
2. detect patterns over those trades (Welch / Fisher, Benjamini-Hochberg, nothing under 30 trades)
   and store them with their p- and q-values;
3. review every running experiment (fixed-horizon analysis, adoption only on p < 0.05 and an
   effect > 0.5 pp, pacing: one change per 30 days, at most a 20% shift), every step written to the
   learning history with its reasoning;
4. attach the champion's health report when one was assessed, and the analyst notes.

Nothing here reads the wall clock: `session` (and `now` for the history timestamps) are passed in.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.learning.experiments import DEFAULT_GOVERNANCE, Governance, ReviewAction, analyse, review
from tradeflow.learning.health import HealthReport
from tradeflow.learning.notes import LlmSettings, Note, analyst_notes, enrich, render_notes
from tradeflow.learning.patterns import detect_patterns
from tradeflow.learning.store import HistoryRow, LearningStore
from tradeflow.learning.trades import DECISION_COLUMNS, FILL_COLUMNS, round_trips, summarize
from tradeflow.ledger import Ledger

NEW_YORK = "America/New_York"


def fills_frame(ledger: Ledger) -> pd.DataFrame:
    """The ledger's fills with the strategy and session of the order each belongs to."""
    orders = {o.client_order_id: o for o in ledger.orders()}
    rows = []
    for e in ledger.fills():
        order = orders.get(e.client_order_id)
        ts = pd.Timestamp(e.timestamp).tz_convert("UTC")
        session = order.session if order is not None and order.session else ts.tz_convert(NEW_YORK).date()
        strategy = order.strategy if order is not None and order.strategy else "adopted"
        rows.append(
            (
                e.execution_id,
                e.client_order_id,
                e.symbol,
                e.side.value,
                float(e.qty),
                float(e.price),
                float(e.commission),
                ts,
                session,
                strategy,
            )
        )
    return pd.DataFrame(rows, columns=list(FILL_COLUMNS))


def decisions_frame(ledger: Ledger) -> pd.DataFrame:
    rows = [
        (
            d.session,
            d.strategy,
            d.symbol,
            json.dumps(d.params, sort_keys=True),
            d.arm,
            d.experiment_id,
            d.target,
            math.nan if d.vix is None else d.vix,
            d.trend,
        )
        for d in ledger.decisions()
    ]
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, dt.date | pd.Timestamp):
        return value.isoformat()
    return value


def _records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict[str, Any]]:
    cols = columns or list(frame.columns)
    return [{c: _clean(v) for c, v in zip(cols, row, strict=True)} for row in frame[cols].itertuples(index=False)]


@dataclass
class ReviewResult:
    session: dt.date
    trades: pd.DataFrame  # every round trip closed by the session's end
    day_trades: pd.DataFrame  # those that closed in this session
    summary: dict[str, float | int]
    day_summary: dict[str, float | int]
    patterns: pd.DataFrame
    actions: list[ReviewAction]
    experiments: list[dict[str, Any]]  # every experiment with its current analysis
    history: list[HistoryRow]  # the learning history, newest last
    params: dict[str, dict[str, float]]  # adopted parameters per strategy
    daily_pnl: dict[str, Any] | None
    health: HealthReport | None = None
    notes: list[Note] = field(default_factory=list)
    enrichment: str | None = None
    alerts: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[ReviewAction]:
        return [a for a in self.actions if str(a.kind) == "adopted"]

    def to_dict(self) -> dict[str, Any]:
        trade_cols = ["trade_id", "strategy", "direction", "entry_session", "exit_session", "holding_days"]
        trade_cols += ["pnl", "return_net", "arm", "vix_regime", "trend", "weekday"]
        return {
            "session": self.session.isoformat(),
            "summary": {k: _clean(v) for k, v in self.summary.items()},
            "day": {k: _clean(v) for k, v in self.day_summary.items()},
            "daily_pnl": self.daily_pnl,
            "day_trades": _records(self.day_trades, trade_cols) if len(self.day_trades) else [],
            "patterns": _records(self.patterns),
            "actions": [
                {
                    "kind": str(a.kind),
                    "experiment_id": a.experiment_id,
                    "strategy": a.strategy,
                    "param": a.param,
                    "old_value": a.old_value,
                    "new_value": a.new_value,
                    "capped": a.capped,
                    "reasoning": a.reasoning,
                }
                for a in self.actions
            ],
            "experiments": self.experiments,
            "params": self.params,
            "health": None if self.health is None else self.health.to_dict(),
            "notes": [{"kind": n.kind, "severity": n.severity, "text": n.text} for n in self.notes],
            "alerts": self.alerts,
        }

    def to_markdown(self, charts: dict[str, str] | None = None) -> str:
        s = self.summary
        lines = [f"# Learning review — {self.session.isoformat()}", ""]
        lines += [
            "## The day",
            "",
            f"- trades closed today: {self.day_summary.get('count', 0)}, "
            f"P&L {_money(self.day_summary.get('total_pnl'))}",
        ]
        if self.daily_pnl:
            lines.append(
                f"- equity: start {self.daily_pnl.get('start_equity')} → end {self.daily_pnl.get('end_equity')}"
            )
        lines += [
            f"- all trades so far: {s.get('count', 0)}, win rate {_pct(s.get('win_rate'))}, "
            f"mean {_pct(s.get('mean_return'))}, median {_pct(s.get('median_return'))}, "
            f"total P&L {_money(s.get('total_pnl'))}",
            "",
        ]
        if len(self.day_trades):
            lines += ["| trade | dir | entry | exit | days | return | P&L | arm |", "|---|---|---|---|---|---|---|---|"]
            for t in _records(self.day_trades):
                lines.append(
                    f"| {t['trade_id']} | {t['direction']} | {t['entry_session']} | {t['exit_session']} "
                    f"| {t['holding_days']} | {_pct(t['return_net'])} | {_money(t['pnl'])} | {t['arm'] or '-'} |"
                )
            lines.append("")
        for title, name in (("Equity", "equity"), ("Trade returns by arm", "arms")):
            if charts and name in charts:
                lines += [f"![{title}]({charts[name]})", ""]
        lines += ["## Patterns (Benjamini–Hochberg across every group tested; groups under 30 trades untested)", ""]
        if len(self.patterns):
            lines += [
                "| dimension | value | n | win rate | mean | rest mean | effect | q (mean) | q (win) | significant |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for p in _records(self.patterns):
                lines.append(
                    f"| {p['dimension']} | {p['value']} | {p['n']} | {_pct(p['win_rate'])} | {_pct(p['mean_return'])} "
                    f"| {_pct(p['rest_mean_return'])} | {_pct(p['effect'])} | {_num(p['q_mean'])} "
                    f"| {_num(p['q_win'])} | {'yes' if p['significant'] else 'no'} |"
                )
        else:
            lines.append("No group has 30 trades on each side yet: nothing tested.")
        lines += ["", "## Experiments", ""]
        if self.experiments:
            lines += [
                "| id | parameter | control | test | status | trades (control/test) | effect | p | verdict |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for e in self.experiments:
                lines.append(
                    f"| {e['id']} | {e['strategy']}.{e['param']} | {e['control']:g} | {e['test']:g} | {e['status']} "
                    f"| {e['seen_control']}/{e['seen_test']} (of {e['min_trades']}) | {_pct(e['effect'])} "
                    f"| {_num(e['p_value'])} | {e['verdict']} |"
                )
        else:
            lines.append("No experiments.")
        lines += ["", "## Decisions today", ""]
        if self.actions:
            lines += [f"- **{a.kind}** {a.strategy}.{a.param}: {a.reasoning}" for a in self.actions]
        else:
            lines.append("- none: no experiment reached its pre-registered sample size today")
        if self.params:
            lines += ["", "Adopted parameters: " + "; ".join(f"{k}: {v}" for k, v in sorted(self.params.items()))]
        lines += ["", "## Learning history (latest 10)", ""]
        if self.history:
            lines += ["| session | kind | change | reasoning |", "|---|---|---|---|"]
            for h in self.history[-10:]:
                change = f"{h.param}: {_num(h.old_value)} → {_num(h.new_value)}" if h.new_value is not None else ""
                lines.append(f"| {h.session} | {h.kind} | {change} | {h.reasoning} |")
        else:
            lines.append("Empty.")
        lines += ["", "## Model health", ""]
        lines.append(self.health.to_markdown() if self.health is not None else "No champion model to assess.")
        lines += ["", render_notes(self.notes, self.enrichment)]
        if self.alerts:
            lines += ["", "## Alerts", ""] + [f"- {a}" for a in self.alerts]
        return "\n".join(lines) + "\n"


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:+.2%}"


def _num(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3g}"


def _money(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:,.2f}"


def _exited_by(trades: pd.DataFrame, session: dt.date) -> pd.DataFrame:
    if trades.empty:
        return trades
    exits = pd.to_datetime(trades["exit_session"]).dt.date
    return trades[exits <= session].reset_index(drop=True)


def run_review(
    ledger: Ledger,
    store: LearningStore,
    session: dt.date,
    *,
    governance: Governance = DEFAULT_GOVERNANCE,
    health: HealthReport | None = None,
    llm: LlmSettings | None = None,
    min_trades: int = 30,
    now: dt.datetime,
) -> ReviewResult:
    """Review `session` (after its close): trades, patterns, experiments (which may adopt a change),
    health and notes. Re-running it for the same session writes no second adoption: a concluded
    experiment is no longer running."""
    trades = _exited_by(round_trips(fills_frame(ledger), decisions_frame(ledger)), session)
    exits = pd.to_datetime(trades["exit_session"]).dt.date if len(trades) else pd.Series(dtype=object)
    day_trades = trades[exits == session].reset_index(drop=True) if len(trades) else trades
    patterns = detect_patterns(trades, min_trades=min_trades) if len(trades) else detect_patterns(trades)
    store.record_patterns(session, patterns)
    actions = review(store, trades, session, governance=governance, now=now)
    experiments = []
    for exp in store.experiments():
        a = analyse(exp, trades)
        experiments.append(
            {
                "id": exp.id,
                "strategy": exp.strategy,
                "param": exp.param,
                "control": exp.control,
                "test": exp.test,
                "status": str(exp.status),
                "min_trades": exp.min_trades,
                "seen_control": a.control.seen,
                "seen_test": a.test.seen,
                "n_control": a.control.n,
                "n_test": a.test.n,
                "mean_control": _clean(a.control.mean),
                "mean_test": _clean(a.test.mean),
                "effect": _clean(a.effect),
                "p_value": _clean(a.p_value),
                "verdict": str(a.verdict),
                "reasoning": a.reasoning,
            }
        )
    strategies = sorted({str(s) for s in trades["strategy"]}) if len(trades) else []
    strategies = sorted(set(strategies) | {e["strategy"] for e in experiments})
    params = {s: p for s in strategies if (p := store.params(s))}
    pnl = ledger.daily_pnl(session)
    daily = None
    if pnl is not None:
        end = None if pnl.end_equity is None else str(pnl.end_equity)
        daily = {"start_equity": str(pnl.start_equity), "end_equity": end, "realized": str(pnl.realized)}
    summary = summarize(trades)
    notes = analyst_notes(
        summary=summary,
        patterns=patterns,
        experiments=[{**e, "n_control": e["seen_control"], "n_test": e["seen_test"]} for e in experiments],
        health_breaches=health.breaches if health is not None else (),
        min_trades=min_trades,
    )
    alerts = [f"model health: {b}" for b in (health.breaches if health is not None else ())]
    return ReviewResult(
        session=session,
        trades=trades,
        day_trades=day_trades,
        summary=summary,
        day_summary=summarize(day_trades),
        patterns=patterns,
        actions=actions,
        experiments=experiments,
        history=store.history(),
        params=params,
        daily_pnl=daily,
        health=health,
        notes=notes,
        enrichment=enrich(notes, llm) if llm is not None else None,
        alerts=alerts,
    )


def write_report(result: ReviewResult, reports_dir: Path) -> Path:
    """The markdown report and its charts under reports_dir/learning/<session>/; returns the .md path."""
    out = Path(reports_dir) / "learning" / result.session.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    charts = _charts(result, out)
    path = out / "review.md"
    path.write_text(result.to_markdown(charts), encoding="utf-8")
    (out / "review.json").write_text(json.dumps(result.to_dict(), indent=2, default=str), encoding="utf-8")
    return path


def _charts(result: ReviewResult, out: Path) -> dict[str, str]:
    """Cumulative trade P&L and per-arm return distributions, as PNGs beside the report."""
    if result.trades.empty:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: dict[str, str] = {}
    trades = result.trades.sort_values("exit_ts")
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(pd.to_datetime(trades["exit_session"]), trades["pnl"].cumsum().to_numpy())
    ax.set_title("Cumulative P&L of closed trades")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "equity.png", dpi=100)
    plt.close(fig)
    charts["equity"] = "equity.png"
    arms = [a for a in ("control", "test") if (trades["arm"] == a).any()]
    if arms:
        fig, ax = plt.subplots(figsize=(8, 3))
        for arm in arms:
            ax.hist(trades.loc[trades["arm"] == arm, "return_net"] * 100, bins=30, alpha=0.5, label=arm)
        ax.set_xlabel("net return per trade (%)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "arms.png", dpi=100)
        plt.close(fig)
        charts["arms"] = "arms.png"
    return charts
