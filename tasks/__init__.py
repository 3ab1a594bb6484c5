"""Prefect tasks: short adapters around one tradeflow library call each (retries, artifacts, events).

Importing this package routes the library's `tradeflow.*` log records into Prefect's run logs
(ECOSYSTEM §1.13): PREFECT_LOGGING_EXTRA_LOGGERS=tradeflow only attaches Prefect's handlers when it
is set before Prefect configures logging, and even then INFO records are dropped unless the
`tradeflow` logger itself is at INFO.
"""

from __future__ import annotations

import logging

LIBRARY_LOGGER = "tradeflow"


def wire_library_logging() -> None:
    """Give the `tradeflow` logger Prefect's API handler (once) and let INFO through."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    lib = logging.getLogger(LIBRARY_LOGGER)
    if lib.level == logging.NOTSET or lib.level > logging.INFO:
        lib.setLevel(logging.INFO)
    # Prefect attaches these itself when PREFECT_LOGGING_EXTRA_LOGGERS names tradeflow; a worker or
    # a test started without that variable still gets the records into the run's logs.
    for handler in logging.getLogger("prefect.extra").handlers:
        if handler not in lib.handlers:
            lib.addHandler(handler)


wire_library_logging()
