"""Local time of recipients: time zones from phone numbers, and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as pn_timezone

__all__ = ["quiet_until", "recipient_timezone"]


def recipient_timezone(wa_id: str) -> str:
    """The recipient's likely time zone, from the number (the first the numbering plan gives)."""
    try:
        zones = pn_timezone.time_zones_for_number(phonenumbers.parse("+" + wa_id, None))
    except phonenumbers.NumberParseException:
        return "UTC"
    zone = zones[0] if zones else "UTC"
    return "UTC" if zone == "Etc/Unknown" else zone


def quiet_until(at: float, quiet: tuple[int, int], tz_name: str) -> float | None:
    """If ``at`` falls in the quiet hours [start, end) local time, when they end; else None."""
    start, end = quiet
    if start == end:
        return None
    try:
        tz = ZoneInfo(tz_name)
    except Exception:
        tz = ZoneInfo("UTC")
    local = datetime.fromtimestamp(at, UTC).astimezone(tz)
    hour = local.hour + local.minute / 60
    inside = (start <= hour < end) if start < end else (hour >= start or hour < end)
    if not inside:
        return None
    end_local = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if end_local <= local:
        end_local += timedelta(days=1)
    return end_local.timestamp()
