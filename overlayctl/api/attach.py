"""Engine API: attach."""

from __future__ import annotations

from typing import Any


def routes() -> list[tuple[str, str, Any]]:
    return []
