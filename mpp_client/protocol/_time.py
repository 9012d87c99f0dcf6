"""RFC 3339 timestamps, accepted in every form the reference servers emit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["format_rfc3339", "parse_rfc3339"]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # RFC 3339 digits are ASCII; \d would also match e.g. Arabic-Indic digits
)


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime.

    Accepts ``Z`` or a numeric offset, and any fraction of a second (truncated
    to microseconds). A missing offset is refused: a validity window in an
    unknown time zone is not a validity window. Raises ``ValueError``.
    """
    if not isinstance(value, str):
        raise ValueError(f"not an RFC 3339 date-time: got {type(value).__name__}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value[:64]!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    micro = int((fraction + "000000")[:6]) if fraction else 0
    # RFC 3339 allows a leap second; datetime cannot hold one.
    second = min(second, 59)
    if match.group(8):
        tz = UTC
    else:
        sign = -1 if match.group(9) == "-" else 1
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad UTC offset in {value[:64]!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    parsed = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+01:00 lies before datetime.min in UTC.
        raise ValueError(f"date-time out of range in UTC: {value[:64]!r}") from None


def format_rfc3339(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")
