"""Event-loop housekeeping for adapters that run asyncio SDKs (ib_async) in their own threads."""

from __future__ import annotations

import asyncio


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
