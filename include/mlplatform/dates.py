"""Days as the platform names them: ISO ``YYYY-MM-DD`` strings, one per logical date.

Every day that enters a job, a lake path or a query goes through ``checked_ds`` first, so a
string that is not a real calendar day (``2013-02-05/../..``, ``2013-02-30``) never reaches a path.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

DS_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DS = re.compile(DS_PATTERN)


def is_ds(value) -> bool:
    if not isinstance(value, str) or not _DS.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def checked_ds(value) -> str:
    """``value`` if it is a real calendar day written YYYY-MM-DD, else ValueError."""
    if not is_ds(value):
        raise ValueError(f"not a day written YYYY-MM-DD: {value!r}")
    return value


def day(ds: str) -> date:
    return date.fromisoformat(ds)


def shift(ds: str, days: int) -> str:
    return (day(ds) + timedelta(days=days)).isoformat()


def days_between(first: str, last: str) -> int:
    return (day(last) - day(first)).days


def day_range(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last``, both included."""
    return [shift(first, i) for i in range(days_between(first, last) + 1)]
