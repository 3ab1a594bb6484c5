"""The tradeflow CLI: exit codes, --json shapes, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tradeflow.cli import EXIT_GATE, EXIT_INPUT, EXIT_OK, main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_passes_untouched_real_spy_with_as_of(capsys, real_data, data_dir):
    code, out, _ = run(capsys, "validate", str(real_data / "SPY.csv"), "--as-of", "2024-01-24", "--json")
    payload = json.loads(out)
    assert code == EXIT_OK
    assert payload["passed"] is True
    assert payload["rows"] == 7802
    assert payload["failures"] == []


def test_validate_without_as_of_judges_freshness_now_and_fails_a_historical_file(capsys, real_data, data_dir):
    code, out, _ = run(capsys, "validate", str(real_data / "SPY.csv"), "--json")
    assert code == EXIT_GATE
    failures = json.loads(out)["failures"]
    assert any(f["check"] == "stale" and f["symbol"] == "SPY" for f in failures)


def test_validate_json_names_check_symbol_and_session_of_a_split_jump(capsys, real_data, tmp_path, data_dir):
    raw = pd.read_csv(real_data / "AAPL.csv")
    raw.loc[raw["Date"] < "2010-06-01", "Close"] /= 10
    path = tmp_path / "AAPL.csv"
    raw.to_csv(path, index=False)
    code, out, _ = run(capsys, "validate", str(path), "--as-of", "2023-05-23", "--json")
    payload = json.loads(out)
    assert code == EXIT_GATE
    assert payload["passed"] is False
    assert set(payload["failures"][0]) >= {"check", "symbol", "session", "detail"}
    assert any(f["session"] == "2010-06-01" and f["symbol"] == "AAPL" for f in payload["failures"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("validate", "/nonexistent/SPY.csv"), "not found"),
        (("validate", "{real}/SPY.csv", "--as-of", "2024-13-45"), "not a date"),
        (("validate", "{real}/SPY.csv", "--symbol", "SP;Y"), "not a valid symbol"),
        (("ingest", "--source", "nope"), "unknown source"),
        (("ingest", "--source", "csv", "--symbols", "SPY"), "needs --path"),
        (("ingest", "--source", "csv", "--path", "{real}", "--symbols", "ZZZZ", "--end", "2024-01-24"), "no csv file"),
        (("ingest", "--source", "sample", "--symbols", "AAPL"), "sample source has no"),
        (("ingest", "--start", "yesterday-ish"), "not a date"),
        (("calendar", "--start", "2026-12-31", "--end", "2026-01-01"), "before --start"),
    ],
)
def test_bad_input_gets_one_line_error_and_nonzero_exit(capsys, real_data, data_dir, args, message):
    args = tuple(a.replace("{real}", str(real_data)) for a in args)
    code, out, err = run(capsys, *args)
    assert code == EXIT_INPUT
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out
    assert not (data_dir / "snapshots").exists(), "nothing half-written"


def test_malformed_csv_is_rejected_without_writing_anything(capsys, tmp_path, data_dir):
    bad = tmp_path / "SPY.csv"
    bad.write_text("Date,Open,High\n2024-01-02,1\n2024-01-03,1,2,3,4,5\n")
    code, _, err = run(
        capsys, "ingest", "--source", "csv", "--path", str(bad), "--symbols", "SPY", "--end", "2024-01-03"
    )
    assert code == EXIT_INPUT
    assert err.startswith("error:")
    assert not (data_dir / "snapshots").exists()


def test_calendar_json_lists_sessions_with_utc_times_and_early_closes(capsys):
    code, out, _ = run(capsys, "calendar", "--start", "2026-11-25", "--end", "2026-11-30", "--json")
    payload = json.loads(out)
    assert code == EXIT_OK
    assert [s["session"] for s in payload["sessions"]] == ["2026-11-25", "2026-11-27", "2026-11-30"]
    friday = payload["sessions"][1]
    assert friday["early_close"] is True
    assert friday["close"] == "2026-11-27T18:00:00+00:00"
    assert payload["closed_weekdays"] == ["2026-11-26"]


def test_ingest_sample_prints_a_summary_that_says_it_is_a_proxy(capsys, data_dir):
    code, out, err = run(
        capsys, "ingest", "--symbols", "SPY,^VIX", "--start", "2016-01-01", "--now", "2026-11-21T12:00Z"
    )
    assert code == EXIT_OK, err
    assert "proxy for SPY" in out
    assert "2018-12-31" in out
    assert (data_dir / "snapshots" / "manifest.json").exists()


def test_ingest_gate_failure_exits_3_with_json_report(capsys, real_data, data_dir):
    code, out, _ = run(capsys, "ingest", "--source", "csv", "--path", str(real_data), "--symbols", "SPY", "--json")
    payload = json.loads(out)
    assert code == EXIT_GATE
    assert payload["status"] == "DATA_STALE"
    assert payload["passed"] is False


def test_installed_entry_point_runs_without_traceback(tmp_path):
    exe = Path(sys.executable).parent / "tradeflow"
    proc = subprocess.run(
        [str(exe), "validate", str(tmp_path / "missing.csv")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == EXIT_INPUT
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")


def test_usage_errors_show_usage_and_exit_2_without_traceback(capsys):
    code, _, err = run(capsys, "backtest", "--strategy", "sma", "--no-such-option")
    assert code == EXIT_INPUT
    assert "No such option" in err
    assert "internal error" not in err


METRIC_KEYS = {
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "calmar", "win_rate", "turnover", "exposure", "trades",
}  # fmt: skip


def test_backtest_json_prints_the_documented_metric_keys(capsys, real_data, data_dir):
    code, out, err = run(
        capsys, "backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data),
        "--end", "2024-01-24", "--start", "2005-01-03", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    metrics = json.loads(out)
    assert set(metrics) >= METRIC_KEYS
    assert metrics["max_drawdown"] < 0
    assert metrics["trades"] > 0


def test_backtest_of_a_bad_file_is_stopped_by_the_gate_with_exit_3(capsys, real_data, tmp_path, data_dir):
    raw = pd.read_csv(real_data / "SPY.csv")
    raw.loc[raw["Date"] < "2015-06-01", "Close"] *= 10
    raw.to_csv(tmp_path / "SPY.csv", index=False)
    code, _, _ = run(
        capsys, "backtest", "--strategy", "buy_and_hold", "--source", "csv", "--path", str(tmp_path),
        "--vix", "", "--end", "2024-01-24",
    )  # fmt: skip
    assert code == EXIT_GATE


def test_features_writes_a_parquet_of_the_spec_columns(capsys, real_data, data_dir, tmp_path):
    out_file = tmp_path / "spy_features.parquet"
    code, out, err = run(
        capsys, "features", "--out", str(out_file), "--source", "csv", "--path", str(real_data),
        "--end", "2024-01-24", "--start", "2020-01-02", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    info = json.loads(out)
    frame = pd.read_parquet(out_file)
    assert list(frame.columns) == ["session", *info["features"]]
    assert info["first_session"] == "2020-01-02"
    assert len(frame) == info["rows"]


def test_train_then_models_list_and_show_the_registered_version(capsys, data_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "ppo: {total_timesteps: 512, n_envs: 8, n_steps: 64, batch_size: 256, n_epochs: 1}\n"
        "seeds: [0]\nfolds: {train_size: 378, test_size: 63, max_folds: 3}\n"
    )
    code, out, err = run(capsys, "train", "--config", str(config), "--now", "2026-11-21T12:00Z", "--json")
    assert code == EXIT_OK, err
    result = json.loads(out)
    assert result["decision"]["reasons"]
    code, out, _ = run(capsys, "models", "list", "--json")
    listing = json.loads(out)
    assert [v["version"] for v in listing["versions"]] == [result["challenger"]]
    code, out, _ = run(capsys, "models", "show", result["challenger"], "--json")
    assert json.loads(out)["lineage"]["data_hash"] == result["data_hash"]


def test_a_bad_train_config_is_a_one_line_error(capsys, data_dir, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("ppo: {total_timesteps: -5}\n")
    code, _, err = run(capsys, "train", "--config", str(config))
    assert code == EXIT_INPUT
    assert "ppo.total_timesteps" in err
    assert len(err.strip().splitlines()) == 1


def test_e1_stop_halts_status_shows_it_and_resume_is_audited(capsys, data_dir):
    from tradeflow.ledger import Ledger

    code, out, _ = run(capsys, "stop", "--reason", "market turmoil", "--now", "2024-01-25T15:00Z")
    assert code == EXIT_OK
    code, out, _ = run(capsys, "status", "--json")
    status = json.loads(out)
    assert status["trading_state"] == "HALTED"
    assert status["reason"].startswith("kill switch")
    code, out, _ = run(capsys, "resume", "--operator", "alice", "--now", "2024-01-25T15:05Z")
    assert code == EXIT_OK
    with Ledger(data_dir / "ledger" / "ledger.sqlite") as ledger:
        assert ledger.trading_state().state.value == "ACTIVE"
        resumes = [r for r in ledger.audit_rows() if r.kind == "resume"]
        assert resumes[0].payload["operator"] == "alice"


def test_tick_on_a_weekend_is_skipped_from_the_cli(capsys, data_dir):
    code, out, _ = run(capsys, "tick", "--strategy", "sma", "--now", "2024-01-27T15:00Z", "--json")
    assert code == EXIT_OK
    assert json.loads(out)["status"] == "SKIPPED_MARKET_CLOSED"


# --- issue 9: input validated before any side effect, and damaged state (G8) ---------------------


def assert_one_line_input_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == EXIT_INPUT, (out, err)
    assert err.startswith("error:"), err
    assert len(err.strip().splitlines()) == 1, err
    assert "internal error" not in err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("ingest", "--start", "-1"), "--start"),
        (("ingest", "--end", "-5"), "--end"),
        (("features", "--out", "{tmp}/f.parquet", "--start", "-1"), "--start"),
        (("features", "--out", "{tmp}/f.parquet", "--end", "-5"), "--end"),
        (("backtest", "--strategy", "sma", "--start", "-1"), "--start"),
        (("backtest", "--strategy", "sma", "--end", "-5"), "--end"),
        (("calendar", "--start", "-1", "--end", "2020-01-01"), "--start"),
        (("calendar", "--start", "2020-01-01", "--end", "-5"), "--end"),
        (("validate", "{real}/SPY.csv", "--as-of", "-1"), "--as-of"),
        (("review", "--session", "-1"), "--session"),
        (("review", "--session", "1500-01-02"), "--session"),
        (("train", "--config", "{tmp}/end.yaml"), "data.end"),
    ],
)
def test_a_bad_date_in_any_date_option_is_one_line_naming_the_option(
    capsys, real_data, data_dir, tmp_path, args, option
):
    (tmp_path / "end.yaml").write_text("data: {end: '-5'}\n")
    args = tuple(a.replace("{real}", str(real_data)).replace("{tmp}", str(tmp_path)) for a in args)
    code, out, err = run(capsys, *args)
    assert_one_line_input_error(code, out, err, option, "not a date", "YYYY-MM-DD")
    assert not data_dir.exists(), "refused before anything was written"


@pytest.mark.parametrize(("start", "end"), [("1980-01-01", "1980-02-01"), ("2040-01-01", "2040-02-01")])
def test_calendar_outside_the_covered_range_says_which_range_it_covers(capsys, start, end):
    code, out, err = run(capsys, "calendar", "--start", start, "--end", end)
    assert_one_line_input_error(code, out, err, "covers 1990-01-02 .. 2035-12-31")
    assert out == ""


@pytest.mark.parametrize("where", ["dir", "under_a_file"])
def test_features_with_an_unwritable_out_is_refused_before_ingesting(capsys, data_dir, tmp_path, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out_path = tmp_path if where == "dir" else blocker / "f.parquet"
    code, out, err = run(capsys, "features", "--out", str(out_path), "--end", "2018-12-28")
    assert_one_line_input_error(code, out, err, "--out", str(out_path))
    assert not data_dir.exists(), "nothing ingested for an output that cannot be written"


@pytest.mark.parametrize(
    "args",
    [
        ("ingest",),
        ("status",),
        ("stop",),
        ("review",),
        ("models", "list"),
        ("tick", "--strategy", "sma", "--now", "2024-01-25T15:00Z"),
    ],
)
def test_a_data_dir_that_is_a_file_is_one_line_naming_it(capsys, tmp_path, monkeypatch, args):
    from tradeflow.config import get_settings

    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(blocker))
    get_settings.cache_clear()
    try:
        code, out, err = run(capsys, *args)
    finally:
        get_settings.cache_clear()
    assert_one_line_input_error(code, out, err, str(blocker), "not a directory")
    assert blocker.read_text() == "not a directory"


def test_tick_with_an_unknown_strategy_is_refused_before_ingesting_or_touching_the_ledger(capsys, data_dir):
    code, out, err = run(capsys, "tick", "--strategy", "nope", "--now", "2024-01-25T15:00Z", "--json")
    assert_one_line_input_error(code, out, err, "unknown strategy 'nope'", "sma", "champion")
    assert not data_dir.exists(), "no snapshot, no ledger, not even the lock directory"


def test_tick_with_an_unknown_trading_source_is_refused_before_ingesting_or_touching_the_ledger(
    capsys, data_dir, monkeypatch
):
    from tradeflow.config import get_settings

    monkeypatch.setenv("TRADEFLOW_TRADING__SOURCE", "nope")
    get_settings.cache_clear()
    code, out, err = run(capsys, "tick", "--strategy", "sma", "--now", "2024-01-25T15:00Z", "--json")
    assert_one_line_input_error(code, out, err, "unknown trading source 'nope'", "TRADEFLOW_TRADING__SOURCE", "csv")
    assert not data_dir.exists(), "no snapshot, no ledger, not even the lock directory"


OPEN_TICK = "2024-01-25T15:00Z"  # 10:00 New York; the real files end on 2024-01-24


def test_tick_over_a_corrupt_snapshot_ends_with_its_report_data_rejected_naming_the_file(capsys, csv_trading):
    code, out, err = run(
        capsys, "ingest", "--source", "csv", "--path", os.environ["TRADEFLOW_TRADING__PATH"],
        "--symbols", "SPY,^VIX", "--end", "2024-01-24", "--now", OPEN_TICK,
    )  # fmt: skip
    assert code == EXIT_OK, err
    (snapshot,) = (csv_trading / "snapshots" / "SPY").glob("*.parquet")
    snapshot.write_bytes(b"garbage, not parquet")

    code, out, err = run(capsys, "tick", "--strategy", "sma", "--now", OPEN_TICK, "--json")
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert report["status"] == "DATA_REJECTED"
    assert report["orders_sent"] == []
    assert any(snapshot.name in a for a in report["alerts"]), report["alerts"]


def test_review_of_a_session_that_has_not_completed_is_refused(capsys, data_dir):
    for session in ("2026-01-05", "2030-01-02"):  # the session of --now (still open), and a later one
        code, out, err = run(capsys, "review", "--session", session, "--now", "2026-01-05T17:00Z")
        assert_one_line_input_error(code, out, err, f"--session {session}", "last completed session is 2026-01-02")
    code, out, err = run(capsys, "review", "--session", "2026-01-03", "--now", "2026-01-05T17:00Z")
    assert_one_line_input_error(code, out, err, "2026-01-03 is not an NYSE session")
    assert not (data_dir / "reports").exists(), "no report for a session that cannot be reviewed"


SIM_STATE_DAMAGE = {
    "not_json": "{not json",
    "null": "null",
    "a_list": "[1, 2]",
    "missing_fields": '{"version": 1, "cash": "100000"}',
    "cash_nan": "NaN",
    "cash_inf": "Infinity",
    "cash_1e400_string": "1e400",
    "cash_1e400_number": "<raw 1e400>",
    "qty_nan": "qty",
}


def damaged_sim_state(kind: str) -> str:
    value = SIM_STATE_DAMAGE[kind]
    if kind in ("not_json", "null", "a_list", "missing_fields"):
        return str(value)
    state = {
        "version": 1, "cash": "100000", "next_order": 1, "next_execution": 1,
        "orders": [], "positions": {}, "executions": [], "prices": {},
    }  # fmt: skip
    if kind == "qty_nan":
        state["positions"] = {"SPY": {"qty": "NaN", "avg_price": "400"}}
        return json.dumps(state)
    state["cash"] = value
    # A bare number 1e400 is valid JSON that Python reads as inf: written by hand, as damage would.
    return json.dumps(state).replace('"<raw 1e400>"', "1e400")


@pytest.mark.parametrize("kind", list(SIM_STATE_DAMAGE))
def test_g8_damaged_sim_broker_state_is_one_line_naming_the_file_and_no_order(capsys, data_dir, kind):
    from tradeflow.ledger import Ledger

    state = data_dir / "broker" / "sim-state.json"
    state.parent.mkdir(parents=True)
    state.write_text(damaged_sim_state(kind))
    code, out, err = run(capsys, "tick", "--strategy", "sma", "--now", OPEN_TICK, "--json")
    assert_one_line_input_error(code, out, err, str(state))
    ledger_path = data_dir / "ledger" / "ledger.sqlite"
    if ledger_path.exists():
        with Ledger(ledger_path) as ledger:
            assert ledger.orders() == []


def test_g8_damaged_sim_state_error_does_not_echo_the_file(capsys, data_dir):
    state = data_dir / "broker" / "sim-state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"version": 1, "cash": "SECRET-CANARY-1234"}))
    code, out, err = run(capsys, "tick", "--strategy", "sma", "--now", OPEN_TICK)
    assert_one_line_input_error(code, out, err, str(state), "cash")
    assert "SECRET-CANARY" not in err


@pytest.mark.parametrize("damage", ["null", "list", "truncated", "missing_version"])
def test_g8_damaged_champion_pointer_is_one_line_naming_the_file(capsys, data_dir, damage):
    pointer = data_dir / "models" / "champion.json"
    pointer.parent.mkdir(parents=True)
    good = {"format": 1, "current": "v0001-0123abcd", "stack": ["v0001-0123abcd"], "history": []}
    pointer.write_text(
        {"null": "null", "list": "[]", "truncated": json.dumps(good)[:20], "missing_version": json.dumps(good)}[damage]
    )
    for args in (("models", "list"), ("models", "show")):
        code, out, err = run(capsys, *args)
        assert_one_line_input_error(code, out, err, str(pointer))


def test_backtest_json_reports_the_drawdown_breaker_beside_the_metric_keys(capsys, real_data, data_dir, monkeypatch):
    from tradeflow.config import get_settings

    monkeypatch.setenv("TRADEFLOW_RISK__MAX_DRAWDOWN", "0.2")
    get_settings.cache_clear()
    code, out, err = run(
        capsys, "backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data),
        "--start", "2007-01-03", "--end", "2010-12-31", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    payload = json.loads(out)
    assert set(payload) >= METRIC_KEYS
    assert [(b["session"], b["breaker"], b["state"]) for b in payload["breakers"]] == [
        ("2008-09-17", "drawdown", "HALTED")
    ]


def test_backtest_engines_vector_and_replay_agree_from_the_cli(capsys, real_data, data_dir):
    """`--engine replay` runs the real tick day by day on the sim broker; `--engine vector` sizes by the
    same rules: their total returns agree within 10 bps (sma, SPY, 2019)."""
    results = {}
    for engine in ("vector", "replay"):
        code, out, err = run(
            capsys, "backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data),
            "--start", "2019-01-02", "--end", "2019-12-31", "--engine", engine, "--json",
        )  # fmt: skip
        assert code == EXIT_OK, err
        results[engine] = json.loads(out)
        assert set(results[engine]) >= METRIC_KEYS
    assert abs(results["vector"]["total_return"] - results["replay"]["total_return"]) < 0.001
    assert results["vector"]["trades"] == results["replay"]["trades"]


def test_backtest_replay_json_reports_the_breaker_the_ticks_governor_fired(capsys, real_data, data_dir, monkeypatch):
    """The replay's ticks run the real governor: its drawdown breaker is reported from the tick that
    fired it. The tick marks equity at the open, the vector engine at the close, so the two fire
    within a session or two of each other (vector: the close of 2008-09-17; replay: the 09-16 open)."""
    from tradeflow.config import get_settings

    monkeypatch.setenv("TRADEFLOW_RISK__MAX_DRAWDOWN", "0.2")
    get_settings.cache_clear()
    code, out, err = run(
        capsys, "backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data),
        "--start", "2007-01-03", "--end", "2010-12-31", "--engine", "replay", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    [breaker] = json.loads(out)["breakers"]
    assert (breaker["breaker"], breaker["state"]) == ("drawdown", "HALTED")
    assert "2008-09-12" <= breaker["session"] <= "2008-09-19"
