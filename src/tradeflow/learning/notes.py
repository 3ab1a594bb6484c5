"""Analyst notes for the daily learning review: what the statistics say, in plain sentences.

The notes are written by deterministic templates from figures the learning modules already computed
(trade summary, `detect_patterns`, experiment analyses, health breaches): the same input gives the same
text in the same order, so a note can be diffed day to day and no sentence states a figure that is not
in the input. Every recommendation is phrased as a hypothesis to test in a governed experiment, never
as an instruction to change a parameter: parameters change only through `experiments.review`.

An LLM may add commentary (`enrich`) when an API key is configured. It is optional and advisory: it
only explains the notes it is given, its text is rendered under its own heading, and no decision in
tradeflow ever reads it (nothing parses it, stores it as evidence or branches on it). Without a key, or
on any failure of the call, the review is exactly the same minus that commentary.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from tradeflow.errors import InputError

log = logging.getLogger("tradeflow.learning.notes")

KINDS = ("pattern", "experiment", "health", "activity", "caution")
SEVERITIES = ("info", "watch", "act")
# More pattern notes than this turns the review into a table read aloud; the rest are counted, and the
# pattern table itself lists them all.
MAX_PATTERN_NOTES = 5
MAX_ENRICHMENT_CHARS = 2000
NO_SIGNIFICANT_PATTERN = (
    "No pattern survives the false-discovery control (Benjamini–Hochberg, q ≤ 0.05) — no action suggested."
)
_PATTERN_NEEDED = (
    "dimension",
    "value",
    "n",
    "win_rate",
    "rest_win_rate",
    "mean_return",
    "rest_mean_return",
    "effect",
    "q_mean",
    "q_win",
    "significant",
)

SYSTEM_PROMPT = (
    "You are commenting on the daily learning review of an automated trading system. You are given "
    "analyst notes that were computed deterministically from the system's own trades. You may only "
    "explain and contextualise these notes for a human reader: what they mean, how they relate, and "
    "what an experiment could test. Do not invent figures: use only the numbers in the notes, and do "
    "not compute new statistics. Do not recommend changing any parameter or trading rule directly; "
    "any change may only be suggested as a hypothesis to test in a governed experiment. Do not give "
    "investment advice. Be brief: at most a few short paragraphs."
)


@dataclass(frozen=True)
class Note:
    """One sentence of the review. kind: pattern | experiment | health | activity | caution;
    severity: info | watch | act."""

    kind: str
    severity: str
    text: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"note kind must be one of {KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise InputError(f"note severity must be one of {SEVERITIES}, got {self.severity!r}")


# --- deterministic templates -----------------------------------------------------------------------


def _num(value: Any) -> float:
    """A float, NaN for None or anything that is not a number (a waiting experiment has no figures)."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _pct(x: Any) -> str:
    v = _num(x)
    if not math.isfinite(v):
        return "n/a"
    # Rounding to zero must not print "-0.00%", which reads as a loss.
    return f"{v * 100:+.2f}%" if round(v * 100, 2) != 0 else "+0.00%"


def _pp(x: Any) -> str:
    v = _num(x)
    if not math.isfinite(v):
        return "n/a"
    return f"{v * 100:+.2f} pp" if round(v * 100, 2) != 0 else "+0.00 pp"


def _rate(x: Any) -> str:
    v = _num(x)
    return f"{v * 100:.1f}%" if math.isfinite(v) else "n/a"


def _money(x: Any) -> str:
    v = _num(x)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:+,.2f}" if round(v, 2) != 0 else "+0.00"


def _prob(name: str, x: Any, digits: int) -> str:
    v = _num(x)
    if not math.isfinite(v):
        return f"{name} n/a"
    floor = 10.0**-digits
    return f"{name}<{floor:.{digits}f}" if v < floor else f"{name}={v:.{digits}f}"


def _g(x: Any) -> str:
    v = _num(x)
    return f"{v:g}" if math.isfinite(v) else "n/a"


def _count(x: Any) -> int:
    v = _num(x)
    return int(v) if math.isfinite(v) else 0


def _activity_notes(summary: Mapping[str, float | int], min_trades: int) -> list[Note]:
    count = _count(summary.get("count"))
    notes: list[Note] = []
    if count == 0:
        notes.append(Note("activity", "info", "No trades closed in this period."))
    else:
        wins = _count(summary.get("wins"))
        text = (
            f"{count} trade{'s' if count != 1 else ''} closed: {wins} won ({_rate(summary.get('win_rate'))} win rate), "
            f"mean net return {_pct(summary.get('mean_return'))}, median {_pct(summary.get('median_return'))}, "
            f"total P&L {_money(summary.get('total_pnl'))}"
        )
        holding = _num(summary.get("mean_holding_days"))
        if math.isfinite(holding):
            text += f", mean holding {holding:.1f} days"
        notes.append(Note("activity", "info", text + "."))
    if count < min_trades:
        notes.append(
            Note(
                "caution",
                "watch",
                f"{count} of {min_trades} trades: too few for the statistics to be meaningful yet; "
                "read the figures above as anecdotes, not evidence.",
            )
        )
    return notes


def _pattern_sentence(row: Mapping[Any, Any]) -> str:
    group = f"{row['dimension']}={row['value']}"
    q_mean, q_win = _num(row["q_mean"]), _num(row["q_win"])
    # The test that made the group significant sets the direction: a group can be significant on its
    # win rate alone, and then its mean is not the evidence.
    by_win = math.isfinite(q_win) and (not math.isfinite(q_mean) or q_win < q_mean)
    mean, rest_mean = _num(row["mean_return"]), _num(row["rest_mean_return"])
    effect = _num(row["effect"])
    win_diff = _num(row["win_rate"]) - _num(row["rest_win_rate"])
    n = _count(row["n"])
    if by_win:
        direction, other = win_diff, effect
        text = (
            f"Trades with {group} won {_rate(row['win_rate'])} of the time vs {_rate(row['rest_win_rate'])} for "
            f"the rest, mean {_pct(mean)} vs {_pct(rest_mean)} (n={n}, {_prob('q', q_win, 3)} on the win rate)"
        )
        other_name = "mean return"
    else:
        direction, other = effect, win_diff
        text = (
            f"Trades with {group} returned {_pct(mean)} on average vs {_pct(rest_mean)} for the rest "
            f"(n={n}, {_prob('q', q_mean, 3)})"
        )
        other_name = "win rate"
    if direction > 0:
        text += f": consider an experiment that favours trades when {group}"
    elif direction < 0:
        text += f": consider an experiment that reduces exposure when {group}"
    else:
        text += ": no direction to test yet; keep watching before proposing an experiment"
    if math.isfinite(other) and math.isfinite(direction) and other * direction < 0:
        text += f" (the {other_name} points the other way, so the experiment should decide)"
    return text + "."


def _pattern_notes(patterns: pd.DataFrame) -> list[Note]:
    if patterns.empty:
        # Nothing was tested (too few trades per group): the activity caution already says why.
        return []
    missing = [c for c in _PATTERN_NEEDED if c not in patterns.columns]
    if missing:
        raise InputError(f"patterns lack column(s) {missing}")
    significant = patterns[patterns["significant"].fillna(False).astype(bool)]
    if significant.empty:
        return [Note("caution", "info", NO_SIGNIFICANT_PATTERN)]
    best_q = significant[["q_mean", "q_win"]].astype(float).min(axis=1, skipna=True)
    # Sorted here rather than trusting the frame's order, so the notes do not depend on how the
    # caller filtered or concatenated the table.
    ordered = (
        significant.assign(_q=best_q, _d=significant["dimension"].astype(str), _v=significant["value"].astype(str))
        .sort_values(["_q", "_d", "_v"], kind="stable", na_position="last")
        .to_dict("records")
    )
    notes = [Note("pattern", "watch", _pattern_sentence(row)) for row in ordered[:MAX_PATTERN_NOTES]]
    rest = len(ordered) - MAX_PATTERN_NOTES
    if rest > 0:
        notes.append(
            Note(
                "pattern",
                "info",
                f"{rest} more significant pattern{'s' if rest != 1 else ''} not listed here; see the pattern table.",
            )
        )
    return notes


def _experiment_note(exp: Mapping[str, Any]) -> Note:
    if "id" not in exp:
        raise InputError("an experiment needs an id")
    status = str(exp.get("status", ""))
    verdict = str(exp.get("verdict", ""))
    m = _count(exp.get("min_trades"))
    control, test = _g(exp.get("control")), _g(exp.get("test"))
    head = f"Experiment {exp['id']} ({exp.get('strategy')}.{exp.get('param')}: control {control} vs test {test})"
    n_control, n_test = _count(exp.get("n_control")), _count(exp.get("n_test"))
    figures = (
        f"test mean {_pct(exp.get('mean_test'))} vs control {_pct(exp.get('mean_control'))} per trade, "
        f"effect {_pp(exp.get('effect'))}, {_prob('p', exp.get('p_value'), 4)}, "
        f"n={n_control} control / {n_test} test"
    )
    if status == "adopted":
        # Watch, not info: an adopted value is live now and the next reviews are its first real check.
        return Note("experiment", "watch", f"{head} concluded: adopted the test value {test}; {figures}.")
    if status == "rejected":
        return Note("experiment", "info", f"{head} concluded: rejected, control {control} kept; {figures}.")
    if status == "deferred":
        return Note(
            "experiment",
            "info",
            f"{head} met the adoption rule but adoption is deferred by the pacing rule; it keeps running; {figures}.",
        )
    if status == "running" and verdict == "waiting":
        return Note(
            "experiment",
            "info",
            f"{head} is running: control {n_control}/{m}, test {n_test}/{m} trades; no figures until both "
            f"arms reach the pre-registered {m}.",
        )
    return Note("experiment", "info", f"{head}: status {status or 'n/a'}, verdict {verdict or 'n/a'}; {figures}.")


def analyst_notes(
    *,
    summary: Mapping[str, float | int],
    patterns: pd.DataFrame,
    experiments: Sequence[Mapping[str, Any]],
    health_breaches: Sequence[str] = (),
    min_trades: int = 30,
) -> list[Note]:
    """The review's notes, in a fixed order: activity (and a caution while fewer than `min_trades`
    trades exist), health breaches (one "act" note each), significant patterns, experiments (by id).

    Patterns: only rows marked `significant` (after Benjamini–Hochberg) are narrated, lowest q first,
    at most MAX_PATTERN_NOTES and then a count of the rest. Groups that look large but did not survive
    the false-discovery control are deliberately NOT mentioned: with dozens of groups tested, a few
    always look striking by chance, and a sentence about them in a daily note would be read as a
    finding and invite acting on noise, which is exactly what the correction exists to prevent. When
    groups were tested and none is significant, a caution says so and suggests nothing.

    Every pattern note proposes an experiment to test the hypothesis; none tells anyone to change a
    parameter. Figures are formatted from the inputs only (returns as percentages), so the same input
    always gives the same notes.
    """
    if min_trades < 1:
        raise InputError(f"min_trades must be at least 1, got {min_trades}")
    notes = _activity_notes(summary, min_trades)
    notes.extend(Note("health", "act", f"Model health breach: {breach}") for breach in health_breaches)
    notes.extend(_pattern_notes(patterns))
    notes.extend(_experiment_note(exp) for exp in sorted(experiments, key=lambda e: str(e.get("id"))))
    return notes


def render_notes(notes: Sequence[Note], enrichment: str | None = None) -> str:
    """Markdown: "## Analyst notes" with one bullet per note, prefixed by its severity, then the LLM
    commentary (if any) under a heading that says it is advisory."""
    lines = ["## Analyst notes", ""]
    lines.extend(f"- **[{n.severity}]** {n.text}" for n in notes)
    if not notes:
        lines.append("- No notes.")
    if enrichment:
        lines += ["", "### Commentary (LLM, advisory — decides nothing)", "", enrichment.strip()]
    return "\n".join(lines) + "\n"


# --- optional LLM commentary -----------------------------------------------------------------------


class SecretLike(Protocol):
    """What pydantic's SecretStr offers: the value only on explicit request."""

    def get_secret_value(self) -> str: ...


@dataclass(frozen=True)
class LlmSettings:
    """An OpenAI-compatible chat-completions endpoint. `api_key` is a str or a SecretStr (anything with
    `get_secret_value`); it is left out of the repr so printing the settings cannot leak it."""

    api_key: str | SecretLike | None = field(default=None, repr=False)
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    timeout_s: float = 20.0


def _secret(settings: LlmSettings) -> str | None:
    key = settings.api_key
    value = key if isinstance(key, str) or key is None else key.get_secret_value()
    value = (value or "").strip()
    return value or None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib re-sends the headers, Authorization included, to wherever a redirect points; refusing
    # redirects keeps the key with the configured host (the 3xx then surfaces as an HTTPError).
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _urllib_post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> bytes:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        # urlopen also opens file:// and ftp:// URLs; a misconfigured base_url must not read local files.
        raise ValueError(f"base_url must be http(s), got scheme {scheme!r}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(request, timeout=timeout) as response:
        data: bytes = response.read()
    return data


def _redact(text: str, key: str) -> str:
    return text.replace(key, "[redacted]")


def enrich(
    notes: Sequence[Note],
    settings: LlmSettings,
    *,
    post: Callable[[str, dict[str, str], bytes, float], bytes] | None = None,
) -> str | None:
    """LLM commentary on `notes`, or None.

    None, with no call made, when no API key is configured or there are no notes. Otherwise one POST to
    {base_url}/chat/completions (Authorization: Bearer key) with SYSTEM_PROMPT and the notes; the
    assistant's text is returned, cut to MAX_ENRICHMENT_CHARS. Any failure (HTTP error, timeout,
    malformed answer) returns None and logs a warning; the key is never put in a log line, an error
    message or the returned text.

    Advisory only: no decision reads this text. It is for the human reading the review, and the
    review is complete without it. `post(url, headers, body, timeout_s) -> response body` is the
    transport (urllib by default), injectable for tests.
    """
    key = _secret(settings)
    if key is None or not notes:
        return None
    send = post or _urllib_post
    url = settings.base_url.rstrip("/") + "/chat/completions"
    listing = "\n".join(f"- [{n.severity}] ({n.kind}) {n.text}" for n in notes)
    body = json.dumps(
        {
            "model": settings.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Analyst notes for today's review:\n{listing}"},
            ],
            "temperature": 0,
        }
    ).encode("utf-8")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json"}
    try:
        raw = send(url, headers, body, settings.timeout_s)
        content = json.loads(raw)["choices"][0]["message"]["content"]
        if not isinstance(content, str) or not content.strip():
            raise ValueError("the answer has no assistant text")
    except Exception as exc:
        # Deliberately broad: the commentary is optional, so no failure of it may fail the review.
        # No exc_info: a traceback could carry the request; the message is redacted all the same.
        reason = _redact(f"{type(exc).__name__}: {exc}", key)[:300]
        log.warning("LLM commentary skipped, the notes stand on their own (%s)", reason)
        return None
    text = _redact(content.strip(), key)
    if len(text) > MAX_ENRICHMENT_CHARS:
        text = text[: MAX_ENRICHMENT_CHARS - 1].rstrip() + "…"
    return text
