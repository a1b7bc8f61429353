"""Exact distinct counted recipients over whole local days and over rolling windows, in memory.

"Distinct over 7 days" means distinct across the whole 7 days, not a sum of daily distincts, so the
history keeps each recipient's latest counted send: a recipient is reached in days ``a..b`` exactly
when their latest send falls in them (while nothing after day ``b`` is recorded), and in a rolling
window exactly when a ``RollingWindow`` of that span still counts them. For the simulator, the sandbox
platform and tests; the service counts the same thing in storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tiergate.core.policy.days import day_index
from tiergate.core.window import DAY, RollingWindow

__all__ = ["SendHistory"]


class SendHistory:
    """Counted sends of one scope, kept for the longest window asked for (``windows``, in days)."""

    def __init__(self, windows: Iterable[int] = (7, 30), utc_offset: float = 0.0) -> None:
        self.windows = tuple(sorted(set(windows)))
        if not self.windows or self.windows[0] < 1:
            raise ValueError("windows are whole days, at least 1")
        self.utc_offset = utc_offset
        self._keep_days = self.windows[-1]
        self._latest: dict[str, float] = {}
        self._by_day: dict[int, set[str]] = {}
        self._rolling = {days: RollingWindow(days * DAY) for days in self.windows}
        self._last_day: int | None = None

    def record(self, recipient: str, at: float) -> None:
        """A counted send to ``recipient`` at ``at``."""
        self.record_many((recipient,), at)

    def record_many(self, recipients: Iterable[str], at: float) -> None:
        """Counted sends to ``recipients``, all at ``at``."""
        latest = self._latest
        fresh = []
        for recipient in recipients:
            previous = latest.get(recipient)
            if previous is not None:
                if previous >= at:
                    continue  # an older send of someone already reached later changes no count
                self._forget_day_of(recipient, previous)
            latest[recipient] = at
            fresh.append(recipient)
        if not fresh:
            return
        day = day_index(at, self.utc_offset)
        self._by_day.setdefault(day, set()).update(fresh)
        for window in self._rolling.values():
            window.record_many(fresh, at)
        if self._last_day is None or day > self._last_day:
            self._last_day = day
            self._prune(day - self._keep_days)

    def distinct_days(self, last_day: int, days: int) -> int:
        """Distinct recipients reached in the local days ``last_day - days + 1 .. last_day``.

        Exact only while nothing after ``last_day`` is recorded (a later send hides an earlier one),
        so asking earlier than that is an error.
        """
        if days > self._keep_days:
            raise ValueError(f"this history keeps {self._keep_days} days, not {days}")
        if self._last_day is not None and self._last_day > last_day:
            raise ValueError(f"sends after day {last_day} are recorded: its reach is no longer known")
        return sum(len(self._by_day.get(day, ())) for day in range(last_day - days + 1, last_day + 1))

    def day_reach(self, boundary: float) -> dict[int, int]:
        """``reach`` for ``Policy.end_of_day`` at the day boundary ``boundary``."""
        last_day = day_index(boundary, self.utc_offset) - 1
        return {days: self.distinct_days(last_day, days) for days in self.windows}

    def distinct_rolling(self, days: int, now: float) -> int:
        """Distinct recipients with a counted send in ``(now - days, now]``."""
        window = self._rolling.get(days)
        if window is None:
            raise ValueError(f"this history counts rolling windows of {self.windows} days, not {days}")
        return window.usage(now)

    def rolling_reach(self, now: float) -> dict[int, int]:
        """``reach`` for ``Policy.observe`` at ``now``."""
        return {days: window.usage(now) for days, window in self._rolling.items()}

    def batches(self) -> list[tuple[float, int]]:
        """(time, recipients whose latest counted send was then), oldest first: the planner's history."""
        return sorted(Counter(self._latest.values()).items())

    def __len__(self) -> int:
        return len(self._latest)

    def _forget_day_of(self, recipient: str, at: float) -> None:
        day = day_index(at, self.utc_offset)
        bucket = self._by_day.get(day)
        if bucket is not None:
            bucket.discard(recipient)
            if not bucket:
                del self._by_day[day]

    def _prune(self, oldest_dropped_day: int) -> None:
        for day in [d for d in self._by_day if d <= oldest_dropped_day]:
            for recipient in self._by_day.pop(day):
                del self._latest[recipient]
