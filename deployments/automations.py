"""Server-side automations that watch tradeflow's runs (RELIABILITY F1).

Two things no flow can do for itself, because when they happen no flow of ours is running:

1. **Zombie runs.** A worker killed mid-tick leaves its run RUNNING forever, and with the
   deployment's `concurrency_limit: 1` that run keeps the slot: every later tick is cancelled by
   CANCEL_NEW. Flow runs emit `prefect.flow-run.heartbeat` events (PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
   set to 30 s for the tick in prefect.yaml); a proactive trigger expects the next heartbeat (or a
   final state) within `zombie_after_s` of the last one, and when it does not come marks the run
   CRASHED. The move to a final state releases the deployment's concurrency slot (Prefect's
   ReleaseFlowConcurrencySlots rule), so the next tick runs. SLA: the slot is free at most
   `zombie_after_s` (+ the trigger service's few-second evaluation loop) after the last heartbeat,
   90 s by default: before the next 5-minute tick.
2. **Starved ticks.** Repeated CANCEL_NEW cancellations mean ticks are being dropped, whatever the
   cause (a zombie, a slow tick, a stuck lease). Three cancelled trading-tick runs within 30 minutes
   fire an alert through a notification block (Slack, e-mail, a custom webhook: any Prefect
   notification block, named with --alert-block) instead of failing silently (infrahub#9856).
   Without a block the automation still fires and shows in the UI's event feed, and `apply` says
   that nobody will be paged.

Both are upserted by name, so running this again after a change replaces them:

    python deployments/automations.py [--alert-block custom-webhook/tradeflow-alerts]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

from prefect.automations import Automation
from prefect.blocks.core import Block
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ActionTypes, ChangeFlowRunState, DoNothing, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

# Every flow tradeflow deploys: a zombie of any of them holds its deployment's slot or its data.
TRADEFLOW_FLOWS = ["trading-tick", "ingest", "train-spy", "learning-review"]
ZOMBIE_AUTOMATION = "tradeflow: crash zombie runs"
STARVED_AUTOMATION = "tradeflow: trading ticks starved by the concurrency limit"
DEFAULT_ZOMBIE_AFTER_S = 90  # three missed 30-second heartbeats
DEFAULT_STARVED_COUNT = 3
DEFAULT_STARVED_WINDOW_S = 1800
FINAL_EVENTS = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}


def zombie_automation(
    flows: Sequence[str] = TRADEFLOW_FLOWS, zombie_after_s: int = DEFAULT_ZOMBIE_AFTER_S
) -> Automation:
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description=(
            f"A run of {', '.join(flows)} that sends no heartbeat for {zombie_after_s} s is marked Crashed, "
            "which frees its deployment's concurrency slot."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "flow", "prefect.resource.name": list(flows)}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=zombie_after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {zombie_after_s} s: the worker or the run's process died (zombie run)",
            )
        ],
    )


def starved_automation(
    block_document_id: str | None,
    count: int = DEFAULT_STARVED_COUNT,
    window_s: int = DEFAULT_STARVED_WINDOW_S,
    flow: str = "trading-tick",
) -> Automation:
    body = (
        f"{count} or more {flow} runs were cancelled by the deployment's concurrency limit (CANCEL_NEW) within "
        f"{window_s // 60} minutes: ticks are being dropped. Latest: {{{{ event.resource.name }}}} at "
        "{{ event.occurred }}. Look for a slow or stuck tick holding the slot (Runs page, state Running)."
    )
    action: ActionTypes = (
        DoNothing()
        if block_document_id is None
        else SendNotification(block_document_id=block_document_id, subject=f"tradeflow: {flow} starved", body=body)
    )
    return Automation(
        name=STARVED_AUTOMATION,
        description=body.split(" Latest:")[0],
        trigger=EventTrigger(
            expect={"prefect.flow-run.Cancelled"},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification({"prefect.resource.role": "flow", "prefect.resource.name": flow}),
            posture=Posture.Reactive,
            threshold=count,
            within=dt.timedelta(seconds=window_s),
        ),
        actions=[action],
    )


def upsert(automation: Automation) -> Automation:
    """Replace an automation of the same name, so `apply` can run after every change."""
    while True:
        try:
            Automation.read(name=automation.name).delete()
        except ValueError:  # Automation.read raises ValueError once no automation has that name
            return automation.create()


def apply(
    alert_block: str | None = None,
    zombie_after_s: int = DEFAULT_ZOMBIE_AFTER_S,
    starved_count: int = DEFAULT_STARVED_COUNT,
    starved_window_s: int = DEFAULT_STARVED_WINDOW_S,
) -> list[Automation]:
    """Create (or replace) both automations on the server PREFECT_API_URL points at.

    `alert_block` is a notification block's slug, "block-type/name" (e.g. "slack-webhook/ops")."""
    block_id = None if alert_block is None else str(Block.load(alert_block)._block_document_id)
    return [
        upsert(zombie_automation(zombie_after_s=zombie_after_s)),
        upsert(starved_automation(block_id, starved_count, starved_window_s)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alert-block", help='notification block slug, "block-type/name"')
    parser.add_argument("--zombie-after-s", type=int, default=DEFAULT_ZOMBIE_AFTER_S)
    parser.add_argument("--starved-count", type=int, default=DEFAULT_STARVED_COUNT)
    parser.add_argument("--starved-window-s", type=int, default=DEFAULT_STARVED_WINDOW_S)
    args = parser.parse_args(argv)
    for automation in apply(args.alert_block, args.zombie_after_s, args.starved_count, args.starved_window_s):
        print(f"automation {automation.name!r}: {automation.id}")
    if args.alert_block is None:
        print(
            "warning: no --alert-block: the starvation automation fires (see the UI's event feed) but pages nobody",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
