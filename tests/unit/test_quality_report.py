"""QualityReport: the JSON shape, the round trip, the markdown a person reads, the one-line summary."""

from __future__ import annotations

import json

import pytest

from tradeflow.data.quality.report import MARKDOWN_FAILURE_ROWS, Failure, QualityReport
from tradeflow.errors import DataQualityError


def failure(check: str = "split_like", session: str | None = "2015-06-01", **kw: object) -> Failure:
    base: dict[str, object] = {
        "check": check,
        "layer": "consistency",
        "symbol": "SPY",
        "session": session,
        "detail": "ratio 0.1000",
        "value": 0.1,
    }
    base.update(kw)
    return Failure(**base)  # type: ignore[arg-type]


def report(failures: list[Failure], **kw: object) -> QualityReport:
    base: dict[str, object] = {
        "passed": not failures,
        "rows": 7802,
        "symbols": ("SPY",),
        "as_of": "2024-01-24",
        "failures": tuple(failures),
        "notes": ["warning large_move: 1 bar"],
        "timings": {"schema": 0.01, "statistics": 0.05, "checks": 0.02},
    }
    base.update(kw)
    return QualityReport(**base)  # type: ignore[arg-type]


def test_to_dict_has_the_documented_json_shape():
    data = report([failure()]).to_dict()
    assert data["passed"] is False
    assert data["rows"] == 7802
    assert set(data["failures"][0]) >= {"check", "symbol", "session", "detail"}
    assert data["failures"][0]["session"] == "2015-06-01"
    assert data["counts"] == {"split_like": 1}


def test_json_round_trip_preserves_the_report():
    allowed = failure(session="2000-09-29", symbol="AAPL", allowed_by="profit warning")
    original = report([failure(), failure("stale", layer="calendar", value=None)], allowed=(allowed,))
    again = QualityReport.from_dict(json.loads(original.to_json()))
    assert again == original


def test_non_finite_values_become_strict_json():
    text = report([failure(value=float("nan")), failure(value=float("-inf"), session="2015-06-02")]).to_json()
    values = [f["value"] for f in json.loads(text)["failures"]]
    assert values == [None, "-inf"]


def test_unknown_layer_is_refused_on_load():
    with pytest.raises(ValueError, match="layer"):
        Failure.from_dict({"check": "x", "layer": "vibes", "detail": ""})


def test_markdown_has_verdict_counts_failures_allowed_notes_and_timings():
    allowed = failure(session="2000-09-29", symbol="AAPL", allowed_by="profit warning, -51.9%")
    md = report([failure(), failure("stale", layer="calendar")], allowed=(allowed,)).to_markdown()
    assert md.startswith("# Data quality gate: FAILED")
    assert "| consistency | split_like | 1 | 1 |" in md
    assert "| calendar | stale | 1 | 0 |" in md
    assert "## Allowed known events" in md
    assert "profit warning, -51.9%" in md
    assert "## Notes" in md
    assert "large_move" in md
    assert "| statistics | 0.050 |" in md


def test_markdown_caps_the_failure_table_and_says_how_many_more():
    many = [failure("high_below_open_close", session=f"2001-01-{1 + i % 28:02d}") for i in range(200)]
    md = report([*many, failure()]).to_markdown()
    table = [
        line
        for line in md.splitlines()
        if line.startswith("| high_below_open_close") or line.startswith("| split_like |")
    ]
    assert len(table) == MARKDOWN_FAILURE_ROWS
    assert f"+{201 - MARKDOWN_FAILURE_ROWS} more" in md
    # The one rare finding is not buried under 200 rows of another check.
    assert any(line.startswith("| split_like | SPY | 2015-06-01") for line in table)


def test_markdown_escapes_pipes_in_details():
    md = report([failure(detail="a | b")]).to_markdown()
    assert "a \\| b" in md


def test_passed_report_says_so_and_has_no_failure_table():
    md = report([]).to_markdown()
    assert md.startswith("# Data quality gate: PASSED")
    assert "No failures." in md
    assert "## Failures" not in md


def test_summary_line_names_counts_and_the_first_failure():
    line = report([failure(), failure(), failure("stale", layer="calendar")]).summary_line()
    assert line.startswith("quality gate FAILED")
    assert "split_like x2" in line
    assert "stale x1" in line
    assert "SPY 2015-06-01" in line


def test_data_quality_error_message_is_the_summary_line():
    r = report([failure()])
    assert str(DataQualityError(r)) == r.summary_line()


def test_stale_is_the_freshness_failure():
    assert report([failure("stale", layer="calendar")]).is_stale
    assert not report([failure()]).is_stale


def test_notes_can_be_added_by_callers_without_touching_the_verdict():
    r = report([])
    r.notes.append("fetched 3 new sessions")
    assert r.passed
    assert "fetched 3 new sessions" in r.to_markdown()
