"""Walk-forward report: tables for every strategy and fold, correct mean ± std, valid PNG charts."""

from __future__ import annotations

import base64
import io
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from tradeflow.backtest.folds import make_folds
from tradeflow.backtest.report import (
    METRIC_KEYS,
    RunResult,
    WalkForwardResults,
    per_fold_table,
    render_walk_forward_report,
    summary_table,
)
from tradeflow.errors import InputError
from tradeflow.registry.promotion import PromotionDecision

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASELINES = ("buy_and_hold", "sma", "rsi", "macd", "mean_reversion")
SESSIONS = pd.bdate_range("2015-01-02", periods=130)
FOLDS = tuple(make_folds(SESSIONS, train_size=40, test_size=30, embargo=2))


def _metrics(**values: float) -> dict[str, float]:
    return dict.fromkeys(METRIC_KEYS, 0.0) | values


def _equity(fold: int, drift: float) -> pd.Series:
    f = FOLDS[fold]
    idx = SESSIONS[f.test_rows]
    rng = np.random.default_rng(fold)
    return pd.Series(1e5 * np.cumprod(1 + drift + rng.normal(0, 0.01, len(idx))), index=idx)


@pytest.fixture(scope="module")
def results() -> WalkForwardResults:
    runs = []
    for fold in range(len(FOLDS)):
        for seed in (0, 1, 2):
            runs.append(RunResult("ppo", fold, _metrics(sharpe=0.5 + seed + fold), _equity(fold, 0.001 * seed), seed))
        for i, name in enumerate(BASELINES):
            runs.append(RunResult(name, fold, _metrics(sharpe=0.1 * i, total_return=0.01 * fold), _equity(fold, 0.0)))
    return WalkForwardResults(tuple(runs), FOLDS)


def test_mean_and_std_across_seeds_match_a_hand_computed_example():
    idx = pd.bdate_range("2020-01-01", periods=3)
    eq = pd.Series([1.0, 1.1, 1.2], index=idx)
    sharpe = {(0, 0): 1.0, (1, 0): 3.0, (0, 1): 2.0, (1, 1): 6.0}  # (fold, seed)
    runs = [RunResult("ppo", f, _metrics(sharpe=v), eq, seed=s) for (f, s), v in sharpe.items()]
    runs += [RunResult("buy_and_hold", f, _metrics(sharpe=0.5 + f), eq) for f in (0, 1)]
    table = summary_table(WalkForwardResults(tuple(runs)))
    # seed 0 averages folds to 2.0, seed 1 to 4.0: mean 3.0, sample std sqrt(2)
    assert table.loc["ppo", ("sharpe", "mean")] == pytest.approx(3.0)
    assert table.loc["ppo", ("sharpe", "std")] == pytest.approx(np.sqrt(2.0))
    assert table.loc["ppo", ("seeds", "n")] == 2
    assert table.loc["buy_and_hold", ("sharpe", "mean")] == pytest.approx(1.0)
    assert np.isnan(table.loc["buy_and_hold", ("sharpe", "std")])
    folds = per_fold_table(WalkForwardResults(tuple(runs)))
    assert folds.loc[(1, "ppo"), ("sharpe", "mean")] == pytest.approx(4.5)
    assert folds.loc[(1, "ppo"), ("sharpe", "std")] == pytest.approx(np.std([3.0, 6.0], ddof=1))


def test_report_files_exist_and_pngs_are_valid(results, tmp_path):
    files = render_walk_forward_report(results, tmp_path / "reports")
    for png in (files.equity_png, files.drawdown_png):
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (560, 240), "7x3 in at 80 dpi"
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[:2] == (240, 560)
        assert pixels.std() > 0, "not a blank image"
    assert files.markdown.exists()
    assert files.artifact_markdown.exists()
    assert [p.name for p in files.markdown.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_tables_contain_every_strategy_and_fold(results, tmp_path):
    text = render_walk_forward_report(results, tmp_path).markdown.read_text()
    summary = text.split("## Summary")[1].split("## Per fold")[0]
    per_fold = text.split("## Per fold")[1].split("## Equity")[0]
    for name in ("ppo", *BASELINES):
        assert re.search(rf"^\| {name} \| ", summary, re.M), name
        for fold in FOLDS:
            window = f"{fold.test_start.date()} – {fold.test_end.date()}"
            assert re.search(rf"^\| {fold.index} \| {window} \| {name} \| ", per_fold, re.M), (name, fold.index)
    assert "| ppo | 3 | 0.0% ± 0.0% |" in summary
    assert "mean ± sample std (ddof=1) across seeds" in text


def test_artifact_variant_embeds_the_same_pngs_as_base64(results, tmp_path):
    files = render_walk_forward_report(results, tmp_path)
    linked = files.markdown.read_text()
    embedded = files.artifact_markdown.read_text()
    assert "![equity](equity.png)" in linked
    uris = re.findall(r"!\[(equity|drawdown)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", embedded)
    assert [k for k, _ in uris] == ["equity", "drawdown"]
    assert base64.b64decode(uris[0][1]) == files.equity_png.read_bytes()
    assert linked.split("## Equity")[0] == embedded.split("## Equity")[0]


def test_same_results_render_byte_identical_files(results, tmp_path):
    a = render_walk_forward_report(results, tmp_path / "a")
    b = render_walk_forward_report(results, tmp_path / "b")
    assert a.equity_png.read_bytes() == b.equity_png.read_bytes()
    assert a.artifact_markdown.read_text() == b.artifact_markdown.read_text()


def test_promotion_decision_section_lists_every_reason(results, tmp_path):
    decision = PromotionDecision(
        False,
        ("REJECT: 2/3 checks passed", "FAIL: challenger max drawdown -35.0% beyond the limit -20.0%"),
        {"challenger": {"sharpe": 1.4}},
    )
    text = render_walk_forward_report(results, tmp_path, decision=decision, context={"data": "ab12"}).markdown
    body = text.read_text()
    section = body.split("## Promotion decision")[1]
    assert "**REJECT**" in section
    assert "- FAIL: challenger max drawdown -35.0% beyond the limit -20.0%" in section
    assert '"sharpe": 1.4' in section
    assert "- **data**: ab12" in body


def test_runs_missing_a_fold_or_a_metric_are_refused():
    eq = pd.Series([1.0, 1.01], index=pd.bdate_range("2020-01-01", periods=2))
    with pytest.raises(InputError, match="lack \\['trades'\\]"):
        RunResult("sma", 0, {k: 0.0 for k in METRIC_KEYS if k != "trades"}, eq)
    runs = (
        RunResult("ppo", 0, _metrics(), eq, 0),
        RunResult("ppo", 1, _metrics(), eq, 0),
        RunResult("sma", 0, _metrics(), eq),
    )
    with pytest.raises(InputError, match="sma seed None covers folds \\[0\\]"):
        WalkForwardResults(runs)
    with pytest.raises(InputError, match="appears twice"):
        WalkForwardResults((runs[0], runs[0]))
    with pytest.raises(InputError, match="start positive"):
        RunResult("sma", 0, _metrics(), eq * 0)


def test_a_breaker_event_is_listed_in_the_report_and_marked_on_the_equity_chart(results, tmp_path):
    from dataclasses import replace

    from tradeflow.backtest.breakers import BreakerEvent

    at = SESSIONS[FOLDS[1].test_rows][5]
    event = BreakerEvent(at.date().isoformat(), "drawdown", "HALTED", "drawdown 21.00% from peak 1.00 >= 20%")
    runs = tuple(replace(r, breakers=(event,)) if (r.strategy, r.fold, r.seed) == ("ppo", 1, 2) else r
                 for r in results.runs)  # fmt: skip
    halted = render_walk_forward_report(WalkForwardResults(runs, FOLDS), tmp_path / "halted")
    quiet = render_walk_forward_report(results, tmp_path / "quiet")
    section = halted.markdown.read_text().split("## Risk breakers")[1].split("## Equity")[0]
    assert f"| ppo | 1 | 2 | {at.date()} | drawdown | HALTED | drawdown 21.00%" in section
    assert "None fired" in quiet.markdown.read_text().split("## Risk breakers")[1]
    assert halted.equity_png.read_bytes() != quiet.equity_png.read_bytes()  # the red mark is drawn
