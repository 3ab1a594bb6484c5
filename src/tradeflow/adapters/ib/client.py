"""The ib_async set-up the IB data source and the IB broker share: the client, the teardown of the
private event loop each runs it on, and a disconnect that never hides the real outcome."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("tradeflow.adapters.ib")


def new_ib() -> Any:
    """A fresh `ib_async.IB`, not connected. Imported here, late: the SDK loads only when an IB
    source or broker is really used (make_source and bootstrap import this package lazily too)."""
    from ib_async import IB

    return IB()


def disconnect_quietly(ib: Any) -> None:
    """Disconnect, logging a failure rather than raising it: a failed goodbye must not hide the
    answer already read or the error that ended the conversation."""
    try:
        ib.disconnect()
    except Exception as exc:
        log.warning("IB disconnect failed: %s", exc)


def close_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending, finish async generators, close: no 'Task was destroyed' noise
    and no leaked selector when a connection's thread ends."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
