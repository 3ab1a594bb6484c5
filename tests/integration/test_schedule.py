"""The after-close schedules in prefect.yaml (ingest/daily, train-spy/nightly): generated from the NYSE
calendar, honoured by Prefect."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.server.schemas.schedules import RRuleSchedule

from deployments import nyse_schedule
from tradeflow.calendar import NEW_YORK, default_calendar

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
NY = ZoneInfo(NEW_YORK)


def _daily(name: str = "daily") -> dict[str, Any]:
    project = yaml.safe_load(PREFECT_YAML.read_text())
    [deployment] = [d for d in project["deployments"] if d["name"] == name]
    return deployment


def _daily_schedule(name: str = "daily") -> dict[str, Any]:
    [schedule] = _daily(name)["schedules"]
    return schedule


def _runs_from(start: dt.datetime, n: int, name: str = "daily") -> list[dt.datetime]:
    s = _daily_schedule(name)
    # The server's schema is what the scheduler service uses to create runs.
    sched = RRuleSchedule(rrule=s["rrule"], timezone=s["timezone"])
    return [d.astimezone(NY) for d in asyncio.run(sched.get_dates(n=n, start=start))]


def _write_args(target: Path, end: str) -> list[str]:
    return ["--time", "17:15", "--start", "2026-11-20", "--end", end, "--deployment", "daily", "--write", str(target)]


def test_daily_deployment_is_ingest_flow_with_sample_parameters_and_single_concurrency() -> None:
    project = yaml.safe_load(PREFECT_YAML.read_text())
    d = _daily()
    assert project["name"] == "tradeflow"
    assert project["prefect-version"] == "3.8.8"
    assert d["entrypoint"] == "flows/ingest.py:ingest"
    assert d["parameters"] == {"source": "sample", "symbols": ["SPY", "^VIX"]}
    assert d["work_pool"]["name"] == "local-process"
    assert d["concurrency_limit"] == 1
    assert _daily_schedule()["timezone"] == NEW_YORK  # omitted, Prefect would read the rule as UTC


@pytest.mark.parametrize("name", ["daily", "nightly"])
def test_daily_runs_skip_thanksgiving_and_christmas_but_run_after_the_early_close(name: str) -> None:
    days = [d.date() for d in _runs_from(dt.datetime(2026, 11, 21, tzinfo=NY), 25, name)]
    assert dt.date(2026, 11, 26) not in days
    assert dt.date(2026, 12, 25) not in days
    assert dt.date(2026, 11, 27) in days  # half day, 13:00 close: the bar is final by 17:15
    assert dt.date(2026, 11, 25) in days


def test_daily_runs_are_exactly_the_nyse_sessions_at_1715_new_york_across_dst() -> None:
    runs = _runs_from(dt.datetime(2026, 11, 21, tzinfo=NY), 120)  # to mid-May 2027, past the March DST change
    sessions = default_calendar().sessions("2026-11-21", runs[-1].date())
    assert [r.date() for r in runs] == [s.date() for s in sessions]
    assert {(r.hour, r.minute) for r in runs} == {(17, 15)}
    assert {r.utcoffset() for r in runs} == {dt.timedelta(hours=-5), dt.timedelta(hours=-4)}


def test_every_exdate_is_local_wall_clock_at_the_rule_time() -> None:
    rrule = _daily_schedule()["rrule"]
    values = [v for line in rrule.splitlines() if line.startswith("EXDATE:") for v in line[7:].split(",")]
    assert values, "the generated rule excludes no holidays"
    assert all(re.fullmatch(r"\d{8}T171500", v) for v in values), values  # no Z, no UTC 22:15, no date-only
    assert len(rrule) <= nyse_schedule.MAX_RRULE_LENGTH


@pytest.mark.parametrize("name", ["daily", "nightly", "after-close"])
def test_committed_rrule_is_what_the_generator_makes_from_the_marker_arguments(name: str) -> None:
    text = PREFECT_YAML.read_text()
    spec = nyse_schedule.find_spec(text, name)
    assert nyse_schedule.rewrite_block(text, spec) == text, (
        "prefect.yaml's schedule differs from the generated one; regenerate it with "
        f"python deployments/nyse_schedule.py --time {spec.time} --start {spec.start} --end {spec.end} "
        f"--write prefect.yaml --deployment {name}"
    )
    expected = nyse_schedule.nyse_session_rrule(spec.time, spec.start, spec.end)
    assert _daily_schedule(name)["rrule"] == expected


def test_write_rewrites_only_the_marked_block_and_keeps_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "prefect.yaml"
    shutil.copy(PREFECT_YAML, target)
    before = target.read_text()
    rc = nyse_schedule.main(_write_args(target, end="2028-12-31"))
    after = target.read_text()
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(",20281225T171500")
    assert "20281225T171500" in after
    assert "# >>> nyse-schedule deployment=daily time=17:15 start=2026-11-20 end=2028-12-31" in after

    def outside(text: str) -> tuple[str, str]:
        head, _, rest = text.partition("# >>> nyse-schedule deployment=daily")
        _, _, tail = rest.partition("# <<< nyse-schedule deployment=daily")
        return head, tail

    assert outside(after) == outside(before)
    assert before.count("#") <= after.count("#")
    [schedule] = next(d for d in yaml.safe_load(after)["deployments"] if d["name"] == "daily")["schedules"]
    assert schedule["rrule"].endswith("20281225T171500")


def test_write_refuses_a_file_without_the_deployment_marker(tmp_path: Path) -> None:
    target = tmp_path / "prefect.yaml"
    target.write_text("deployments:\n  - name: daily\n")
    rc = nyse_schedule.main(_write_args(target, end="2027-12-31"))
    assert rc == 2
    assert target.read_text() == "deployments:\n  - name: daily\n"


def test_rrule_over_prefects_length_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="6500"):
        nyse_schedule.nyse_session_rrule("17:15", "1990-01-02", "2035-12-31")


def test_serve_builds_the_daily_deployment_with_the_yaml_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments import serve

    monkeypatch.chdir(REPO_ROOT)
    deployments = serve.build_deployments(serve.load_project(PREFECT_YAML))
    assert sorted((d.flow_name, d.name) for d in deployments) == [
        ("ingest", "daily"),
        ("learning-review", "after-close"),
        ("trading-tick", "market-hours"),
        ("train-spy", "nightly"),
    ]
    [nightly] = [d for d in deployments if d.name == "nightly"]
    assert [t.expect for t in nightly.triggers] == [{"tradeflow.model.degraded"}]
    [ticks] = [d for d in deployments if d.name == "market-hours"]
    assert ticks.concurrency_options is not None
    assert str(ticks.concurrency_options.collision_strategy).endswith("CANCEL_NEW")
    [deployment] = [d for d in deployments if d.name == "daily"]
    yaml_schedule = _daily_schedule()
    assert (deployment.flow_name, deployment.name) == ("ingest", "daily")
    assert deployment.entrypoint == "flows/ingest.py:ingest"
    assert deployment.parameters == {"source": "sample", "symbols": ["SPY", "^VIX"]}
    [schedule] = deployment.schedules
    assert schedule.schedule.rrule == yaml_schedule["rrule"]
    assert schedule.schedule.timezone == NEW_YORK


def test_nightly_deployment_is_the_train_spy_flow_with_its_config_file() -> None:
    from tradeflow.research.config import TrainSpyConfig

    d = _daily("nightly")
    assert d["entrypoint"] == "flows/train_spy.py:train_spy"
    assert d["concurrency_limit"] == 1
    config = TrainSpyConfig.load(REPO_ROOT / d["parameters"]["config_path"])
    assert config.ppo.total_timesteps >= 100_000  # the nightly run trains longer than `make run`


def test_learning_review_runs_after_ingest_and_train_spy_retrains_on_a_degraded_champion_event() -> None:
    project = yaml.safe_load(PREFECT_YAML.read_text())
    by_name = {d["name"]: d for d in project["deployments"]}
    review = by_name["after-close"]
    assert review["entrypoint"] == "flows/learning_review.py:learning_review"
    assert review["schedules"][0]["rrule"].startswith("DTSTART:20261120T174500")  # 17:45, after ingest's 17:15
    [trigger] = by_name["nightly"]["triggers"]
    from tasks.learning import CHAMPION_RESOURCE, DEGRADED_EVENT

    assert trigger["expect"] == [DEGRADED_EVENT]
    assert trigger["match"] == {"prefect.resource.id": CHAMPION_RESOURCE}
