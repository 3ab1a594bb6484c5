"""Analyst notes: deterministic templates from the statistics, and the optional, advisory LLM commentary
(tested against a local http.server, never the network)."""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr

from tradeflow.errors import InputError
from tradeflow.learning.notes import (
    MAX_ENRICHMENT_CHARS,
    NO_SIGNIFICANT_PATTERN,
    SYSTEM_PROMPT,
    LlmSettings,
    Note,
    analyst_notes,
    enrich,
    render_notes,
)

KEY = "sk-test-0123456789abcdef-SECRET"

SUMMARY: dict[str, float | int] = {
    "count": 120,
    "wins": 66,
    "win_rate": 0.55,
    "mean_return": 0.0042,
    "median_return": 0.0031,
    "total_pnl": 1234.5,
    "mean_holding_days": 3.25,
}


def pattern(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dimension": "vix_regime",
        "value": "high",
        "n": 42,
        "n_rest": 78,
        "wins": 20,
        "win_rate": 0.48,
        "rest_win_rate": 0.58,
        "mean_return": -0.012,
        "rest_mean_return": 0.001,
        "median_return": -0.008,
        "effect": -0.013,
        "p_mean": 0.001,
        "p_win": 0.3,
        "q_mean": 0.012,
        "q_win": 0.4,
        "significant": True,
        "confidence": 0.988,
    }
    row.update(kw)
    return row


def patterns(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(pattern().keys()))


def experiment(**kw: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "rsi-lower-2025-01-02",
        "strategy": "rsi",
        "param": "lower",
        "control": 45.0,
        "test": 50.0,
        "status": "running",
        "n_control": 12,
        "n_test": 8,
        "min_trades": 30,
        "mean_control": None,
        "mean_test": None,
        "effect": None,
        "p_value": None,
        "verdict": "waiting",
        "reasoning": "waiting for the pre-registered 30 trades per arm",
    }
    item.update(kw)
    return item


def notes_of(kind: str, notes: list[Note]) -> list[Note]:
    return [n for n in notes if n.kind == kind]


# --- templates ---------------------------------------------------------------------------------------


def test_same_input_gives_identical_notes_and_pattern_row_order_does_not_matter() -> None:
    rows = [pattern(value=v, q_mean=q) for v, q in (("high", 0.03), ("low", 0.01), ("mid", 0.02))]
    exps = [experiment(id="b"), experiment(id="a", status="rejected", verdict="reject", p_value=0.4)]
    kw: dict[str, Any] = {"summary": SUMMARY, "experiments": exps, "health_breaches": ["PSI drift on 6/15 features"]}
    first = analyst_notes(patterns=patterns(*rows), **kw)
    second = analyst_notes(patterns=patterns(*rows), **kw)
    shuffled = analyst_notes(patterns=patterns(*reversed(rows)), **{**kw, "experiments": list(reversed(exps))})
    assert first == second == shuffled
    assert [n.kind for n in first] == [
        "activity",
        "health",
        "pattern",
        "pattern",
        "pattern",
        "experiment",
        "experiment",
    ]


def test_activity_note_states_count_win_rate_returns_in_percent_and_pnl() -> None:
    (note,) = analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[])
    assert note == Note(
        "activity",
        "info",
        "120 trades closed: 66 won (55.0% win rate), mean net return +0.42%, median +0.31%, total P&L +1,234.50, "
        "mean holding 3.2 days.",
    )


def test_too_few_trades_adds_a_caution_with_the_count_against_the_minimum() -> None:
    notes = analyst_notes(summary={**SUMMARY, "count": 12, "wins": 7}, patterns=patterns(), experiments=[])
    (caution,) = notes_of("caution", notes)
    assert caution.text.startswith("12 of 30 trades")
    assert "not yet meaningful" in caution.text or "too few" in caution.text
    enough = analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[], min_trades=120)
    assert notes_of("caution", enough) == []


def test_no_trades_with_nan_figures_reads_plainly_and_cautions() -> None:
    empty = {"count": 0, "wins": 0, "win_rate": math.nan, "mean_return": math.nan, "median_return": math.nan}
    notes = analyst_notes(
        summary={**empty, "total_pnl": 0.0, "mean_holding_days": math.nan}, patterns=patterns(), experiments=[]
    )
    assert notes[0] == Note("activity", "info", "No trades closed in this period.")
    assert notes[1].kind == "caution"
    assert notes[1].text.startswith("0 of 30 trades")
    assert "nan" not in " ".join(n.text for n in notes).lower()


def test_negative_pattern_reads_as_an_experiment_that_reduces_exposure_with_its_figures() -> None:
    notes = analyst_notes(summary=SUMMARY, patterns=patterns(pattern()), experiments=[])
    (note,) = notes_of("pattern", notes)
    assert note.text == (
        "Trades with vix_regime=high returned -1.20% on average vs +0.10% for the rest (n=42, q=0.012): "
        "consider an experiment that reduces exposure when vix_regime=high."
    )
    assert note.severity == "watch"


def test_positive_pattern_reads_as_an_experiment_that_favours_the_group_never_a_parameter_change() -> None:
    row = pattern(value="low", mean_return=0.012, rest_mean_return=-0.001, effect=0.013, win_rate=0.6)
    (note,) = notes_of("pattern", analyst_notes(summary=SUMMARY, patterns=patterns(row), experiments=[]))
    assert "returned +1.20% on average vs -0.10% for the rest (n=42, q=0.012)" in note.text
    assert "consider an experiment that favours trades when vix_regime=low" in note.text
    assert "reduce" not in note.text
    for instruction in ("set ", "change ", "increase the", "lower the"):
        assert instruction not in note.text.lower()


def test_pattern_significant_on_win_rate_takes_its_direction_and_flags_a_contradicting_mean() -> None:
    row = pattern(win_rate=0.70, rest_win_rate=0.50, mean_return=-0.002, effect=-0.003, q_mean=0.5, q_win=0.004)
    (note,) = notes_of("pattern", analyst_notes(summary=SUMMARY, patterns=patterns(row), experiments=[]))
    assert "won 70.0% of the time vs 50.0% for the rest" in note.text
    assert "q=0.004 on the win rate" in note.text
    assert "favours trades when vix_regime=high" in note.text
    assert "the mean return points the other way" in note.text


def test_non_significant_groups_are_not_narrated_however_large_their_effect() -> None:
    loud = pattern(value="extreme", mean_return=-0.09, effect=-0.091, q_mean=0.2, q_win=0.3, significant=False)
    notes = analyst_notes(summary=SUMMARY, patterns=patterns(pattern(), loud), experiments=[])
    assert len(notes_of("pattern", notes)) == 1
    assert "extreme" not in render_notes(notes)


def test_pattern_notes_are_capped_at_five_lowest_q_then_a_count_of_the_rest() -> None:
    rows = [pattern(value=f"v{i}", q_mean=0.001 * (i + 1)) for i in range(8)]
    notes = notes_of("pattern", analyst_notes(summary=SUMMARY, patterns=patterns(*reversed(rows)), experiments=[]))
    assert len(notes) == 6
    for i, note in enumerate(notes[:5]):
        assert f"vix_regime=v{i} " in note.text
    assert notes[5] == Note("pattern", "info", "3 more significant patterns not listed here; see the pattern table.")


def test_tested_patterns_with_none_significant_give_the_fdr_caution_and_no_suggestion() -> None:
    quiet = patterns(pattern(significant=False, q_mean=0.3), pattern(value="low", significant=False, q_mean=0.6))
    notes = analyst_notes(summary=SUMMARY, patterns=quiet, experiments=[])
    assert notes_of("caution", notes) == [Note("caution", "info", NO_SIGNIFICANT_PATTERN)]
    assert "Benjamini–Hochberg, q ≤ 0.05" in NO_SIGNIFICANT_PATTERN
    assert notes_of("pattern", notes) == []
    untested = analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[])
    assert notes_of("caution", untested) == []


def test_patterns_missing_a_needed_column_are_refused() -> None:
    with pytest.raises(InputError, match="q_win"):
        analyst_notes(summary=SUMMARY, patterns=patterns(pattern()).drop(columns="q_win"), experiments=[])


def test_waiting_experiment_reports_progress_per_arm_and_no_figures() -> None:
    (note,) = notes_of("experiment", analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[experiment()]))
    assert note == Note(
        "experiment",
        "info",
        "Experiment rsi-lower-2025-01-02 (rsi.lower: control 45 vs test 50) is running: control 12/30, test 8/30 "
        "trades; no figures until both arms reach the pre-registered 30.",
    )
    assert "p=" not in note.text


def test_adopted_experiment_reports_the_outcome_with_its_figures() -> None:
    done = experiment(
        status="adopted",
        verdict="adopt",
        n_control=30,
        n_test=30,
        mean_control=0.001,
        mean_test=0.006,
        effect=0.005,
        p_value=0.0123,
    )
    (note,) = notes_of("experiment", analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[done]))
    assert note.severity == "watch"
    assert note.text == (
        "Experiment rsi-lower-2025-01-02 (rsi.lower: control 45 vs test 50) concluded: adopted the test value 50; "
        "test mean +0.60% vs control +0.10% per trade, effect +0.50 pp, p=0.0123, n=30 control / 30 test."
    )


def test_rejected_experiment_says_the_control_is_kept_with_its_figures() -> None:
    done = experiment(
        status="rejected",
        verdict="reject",
        n_control=30,
        n_test=30,
        mean_control=0.002,
        mean_test=0.001,
        effect=-0.001,
        p_value=0.61,
    )
    (note,) = notes_of("experiment", analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[done]))
    assert note.severity == "info"
    assert "concluded: rejected, control 45 kept" in note.text
    assert "test mean +0.10% vs control +0.20% per trade, effect -0.10 pp, p=0.6100" in note.text


def test_each_health_breach_is_one_act_note() -> None:
    breaches = ["feature drift: 40% of features", "realised costs 2.4x the model"]
    notes = notes_of(
        "health", analyst_notes(summary=SUMMARY, patterns=patterns(), experiments=[], health_breaches=breaches)
    )
    assert [n.severity for n in notes] == ["act", "act"]
    assert [n.text for n in notes] == [f"Model health breach: {b}" for b in breaches]


def test_note_refuses_an_unknown_severity() -> None:
    with pytest.raises(InputError):
        Note("pattern", "urgent", "x")


def test_render_prefixes_severity_and_adds_commentary_only_when_given() -> None:
    notes = [Note("health", "act", "breach A"), Note("activity", "info", "5 trades")]
    plain = render_notes(notes)
    assert plain.startswith("## Analyst notes\n")
    assert "- **[act]** breach A\n" in plain
    assert "- **[info]** 5 trades\n" in plain
    assert "Commentary" not in plain
    enriched = render_notes(notes, "The breach matters more than the count.")
    assert "### Commentary (LLM, advisory — decides nothing)" in enriched
    assert enriched.rstrip().endswith("The breach matters more than the count.")


# --- LLM commentary ----------------------------------------------------------------------------------


NOTES = [
    Note("activity", "info", "120 trades closed"),
    Note("pattern", "watch", "Trades with vix_regime=high returned -1.20% on average"),
]


def test_enrich_without_a_key_returns_none_and_makes_no_call() -> None:
    calls: list[str] = []

    def post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> bytes:
        calls.append(url)
        return b"{}"

    assert enrich(NOTES, LlmSettings(), post=post) is None
    assert enrich(NOTES, LlmSettings(api_key="  "), post=post) is None
    assert calls == []


def test_settings_repr_does_not_show_the_key() -> None:
    assert KEY not in repr(LlmSettings(api_key=KEY))


@dataclass
class FakeLlm:
    """A local OpenAI-compatible endpoint: records each request and answers as configured."""

    status: int = 200
    body: bytes = b""
    delay_s: float = 0.0
    location: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def llm() -> Iterator[tuple[FakeLlm, str]]:
    fake = FakeLlm()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)})
            if fake.delay_s and fake.release.wait(fake.delay_s):
                return  # the test is over; the client gave up long ago
            redirect = fake.location is not None and self.path != urllib.parse.urlsplit(fake.location).path
            self.send_response(fake.status if redirect or fake.location is None else 200)
            if redirect:
                self.send_header("Location", str(fake.location))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(fake.body)))
            self.end_headers()
            self.wfile.write(fake.body)

        # A client that follows a redirect comes back with a GET: recorded like any request.
        def do_GET(self) -> None:
            self.do_POST()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        }
    ).encode()


def test_enrich_posts_a_chat_completion_with_the_notes_and_returns_the_assistant_text(
    llm: tuple[FakeLlm, str],
) -> None:
    fake, url = llm
    fake.body = completion("  The high-VIX result is the one worth an experiment.  ")
    out = enrich(NOTES, LlmSettings(api_key=KEY, base_url=url + "/", model="tiny-model", timeout_s=5))
    assert out == "The high-VIX result is the one worth an experiment."
    (request,) = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    payload = json.loads(request["body"])
    assert payload["model"] == "tiny-model"
    system, user = payload["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    for note in NOTES:
        assert note.text in user["content"]


def test_system_prompt_forbids_invented_figures_and_parameter_changes_outside_experiments() -> None:
    prompt = SYSTEM_PROMPT.lower()
    assert "only explain and contextualise" in prompt
    assert "do not invent figures" in prompt
    assert "do not recommend changing any parameter" in prompt
    assert "experiment" in prompt


def test_enrich_accepts_a_pydantic_secret_str_key(llm: tuple[FakeLlm, str]) -> None:
    fake, url = llm
    fake.body = completion("ok")
    assert enrich(NOTES, LlmSettings(api_key=SecretStr(KEY), base_url=url, timeout_s=5)) == "ok"
    assert fake.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_enrich_truncates_a_long_answer(llm: tuple[FakeLlm, str]) -> None:
    fake, url = llm
    fake.body = completion("word " * 2000)
    out = enrich(NOTES, LlmSettings(api_key=KEY, base_url=url, timeout_s=5))
    assert out is not None
    assert len(out) <= MAX_ENRICHMENT_CHARS
    assert out.endswith("…")


def test_enrich_returns_none_on_http_500_without_logging_the_key(
    llm: tuple[FakeLlm, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = llm
    fake.status, fake.body = 500, b'{"error": "boom"}'
    with caplog.at_level(logging.WARNING, logger="tradeflow.learning.notes"):
        assert enrich(NOTES, LlmSettings(api_key=KEY, base_url=url, timeout_s=5)) is None
    assert len(fake.requests) == 1
    assert "500" in caplog.text
    assert KEY not in caplog.text


def test_enrich_returns_none_on_timeout_without_logging_the_key(
    llm: tuple[FakeLlm, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = llm
    fake.body, fake.delay_s = completion("too late"), 10.0
    with caplog.at_level(logging.WARNING, logger="tradeflow.learning.notes"):
        assert enrich(NOTES, LlmSettings(api_key=KEY, base_url=url, timeout_s=0.3)) is None
    assert "timed out" in caplog.text.lower()
    assert KEY not in caplog.text


@pytest.mark.parametrize("body", [b"not json", b'{"choices": []}', completion("   ")])
def test_enrich_returns_none_on_a_malformed_answer(
    llm: tuple[FakeLlm, str], caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    fake, url = llm
    fake.body = body
    with caplog.at_level(logging.WARNING, logger="tradeflow.learning.notes"):
        assert enrich(NOTES, LlmSettings(api_key=KEY, base_url=url, timeout_s=5)) is None
    assert "skipped" in caplog.text
    assert KEY not in caplog.text


def test_enrich_does_not_follow_a_redirect_so_the_key_stays_with_the_configured_host(
    llm: tuple[FakeLlm, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = llm
    fake.status, fake.location = 302, url + "/elsewhere"
    with caplog.at_level(logging.WARNING, logger="tradeflow.learning.notes"):
        assert enrich(NOTES, LlmSettings(api_key=KEY, base_url=url, timeout_s=5)) is None
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions"]
    assert KEY not in caplog.text


def test_a_transport_error_quoting_the_key_is_redacted_from_the_log(caplog: pytest.LogCaptureFixture) -> None:
    def post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> bytes:
        raise RuntimeError(f"refused header {headers['Authorization']}")

    with caplog.at_level(logging.WARNING, logger="tradeflow.learning.notes"):
        assert enrich(NOTES, LlmSettings(api_key=KEY), post=post) is None
    assert "RuntimeError" in caplog.text
    assert KEY not in caplog.text


def test_an_answer_echoing_the_key_is_redacted_from_the_returned_text() -> None:
    def post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> bytes:
        return completion(f"your key is {KEY}")

    out = enrich(NOTES, LlmSettings(api_key=KEY), post=post)
    assert out is not None
    assert KEY not in out


def test_a_non_http_base_url_is_refused_before_any_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tradeflow.learning.notes"):
        assert enrich(NOTES, LlmSettings(api_key=KEY, base_url="file:///etc")) is None
    assert "http(s)" in caplog.text
