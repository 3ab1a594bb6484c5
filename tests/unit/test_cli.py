"""The tradeflow CLI: exit codes, --json shapes, and one-line errors for bad input."""

from __future__ import annotations

import json
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
