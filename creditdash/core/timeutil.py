"""UTC time. Every stored datetime is timezone-aware UTC (SQLModel's UTCDateTime columns)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
