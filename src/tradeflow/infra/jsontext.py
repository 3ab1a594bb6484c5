"""Canonical JSON: one text per value, so equal values give equal strings and equal digests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def canonical_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Sorted keys and no whitespace: what a digest is taken of and what a database row stores.
    `default` converts the values json does not know (it must raise TypeError for the rest)."""
    return json.dumps(value, default=default, sort_keys=True, separators=(",", ":"))
