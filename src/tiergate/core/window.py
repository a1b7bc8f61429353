"""Exact rolling-window accounting of distinct counted recipients.

Usage at time ``t`` is the number of distinct recipients with a counted send in ``(t - span, t]``.
A recipient counts from each counted send until ``span`` after their *latest* one, so the state
is one expiry per recipient (``_expiry``) plus a FIFO of ``(expiry, recipient)`` entries in
non-decreasing expiry order (``_queue``). Sends arrive in time order, so appending keeps the FIFO
sorted and expiring is a pop from its head: amortised O(1) per decision. A re-send appends a fresh
entry and leaves the old one stale (skipped when it reaches the head); when stale entries outnumber
live ones the FIFO is rebuilt, so memory stays proportional to the recipients in the window.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["DAY", "RollingWindow", "Slot"]

DAY = 86_400.0
_COMPACT_SLACK = 1024


@dataclass(frozen=True, slots=True)
class Slot:
    """What one counted admission did to the window, so a definite non-delivery can undo it.

    ``previous`` is the recipient's expiry before this send (``None``: they were not counted).
    """

    recipient: str
    expiry: float
    previous: float | None


class RollingWindow:
    """Distinct recipients with a counted send in the last ``span`` seconds."""

    __slots__ = ("_expiry", "_late", "_queue", "span")

    def __init__(self, span: float = DAY) -> None:
        self.span = span
        self._expiry: dict[str, float] = {}
        self._queue: deque[tuple[float, str]] = deque()
        # Entries recorded out of time order (rare: restored or back-dated sends) live in a heap.
        self._late: list[tuple[float, str]] = []

    # -- reading ---------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Drop every recipient whose latest counted send is ``span`` or more before ``now``."""
        queue, expiry = self._queue, self._expiry
        while queue and queue[0][0] <= now:
            exp, rcpt = queue.popleft()
            if expiry.get(rcpt) == exp:
                del expiry[rcpt]
        late = self._late
        while late and late[0][0] <= now:
            exp, rcpt = heapq.heappop(late)
            if expiry.get(rcpt) == exp:
                del expiry[rcpt]

    def usage(self, now: float) -> int:
        """Distinct counted recipients in ``(now - span, now]``."""
        self.expire(now)
        return len(self._expiry)

    def contains(self, recipient: str, now: float) -> bool:
        exp = self._expiry.get(recipient)
        return exp is not None and exp > now

    def expiry_of(self, recipient: str) -> float | None:
        return self._expiry.get(recipient)

    def next_release_at(self, now: float) -> float | None:
        """When the next counted recipient leaves the window (``None``: the window is empty)."""
        self.expire(now)
        queue, expiry = self._queue, self._expiry
        while queue and expiry.get(queue[0][1]) != queue[0][0]:
            queue.popleft()
        late = self._late
        while late and expiry.get(late[0][1]) != late[0][0]:
            heapq.heappop(late)
        heads = [q[0][0] for q in (queue, late) if q]
        return min(heads) if heads else None

    def releases(self, now: float) -> list[float]:
        """Every live expiry, sorted: when each slot frees over the next ``span``."""
        self.expire(now)
        return sorted(self._expiry.values())

    def items(self) -> Iterator[tuple[str, float]]:
        """(recipient, expiry) pairs of the live state, for persistence and inspection."""
        return iter(list(self._expiry.items()))

    def __len__(self) -> int:
        return len(self._expiry)

    # -- writing ---------------------------------------------------------------------------
    def record(self, recipient: str, sent_at: float) -> Slot:
        """Count a send to ``recipient`` at ``sent_at`` (no capacity check: see ``try_admit``)."""
        new = sent_at + self.span
        previous = self._expiry.get(recipient)
        if previous is not None and previous >= new:
            return Slot(recipient, previous, previous)
        self._expiry[recipient] = new
        queue = self._queue
        if not queue or queue[-1][0] <= new:
            queue.append((new, recipient))
        else:
            heapq.heappush(self._late, (new, recipient))
        if len(queue) + len(self._late) > 2 * len(self._expiry) + _COMPACT_SLACK:
            self._compact()
        return Slot(recipient, new, previous)

    def try_admit(self, recipient: str, now: float, capacity: float) -> Slot | float | None:
        """Admit a counted send if it fits in ``capacity`` distinct recipients.

        Returns the ``Slot`` taken when admitted, else the time capacity next frees (a float), or
        ``None`` when nothing in the window will ever free it (capacity 0).
        """
        self.expire(now)
        exp = self._expiry.get(recipient)
        if exp is not None or len(self._expiry) < capacity:
            return self.record(recipient, now)
        if capacity <= 0:
            return None
        return self._release_time_for(capacity)

    def _release_time_for(self, capacity: float) -> float | None:
        """Earliest time when usage drops below ``capacity`` (no new sends assumed)."""
        excess = len(self._expiry) - int(capacity) + 1
        if excess <= 1:
            return self.next_release_at(float("-inf"))
        live = sorted(self._expiry.values())
        return live[excess - 1] if excess <= len(live) else None

    def release(self, slot: Slot, now: float) -> bool:
        """Undo a counted admission the platform definitely did not deliver.

        Only a send that made the recipient count is undone; if they were already counted by an
        earlier send, or counted again since, the window is left as is (never under-count).
        """
        if slot.previous is not None and slot.previous > now:
            return False
        if self._expiry.get(slot.recipient) != slot.expiry:
            return False
        del self._expiry[slot.recipient]
        return True

    def load(self, entries: Iterable[tuple[str, float]], now: float) -> None:
        """Restore live state from persisted (recipient, expiry) pairs."""
        for rcpt, exp in sorted(entries, key=lambda e: e[1]):
            if exp > now:
                self.record(rcpt, exp - self.span)

    def _compact(self) -> None:
        live = sorted((exp, rcpt) for rcpt, exp in self._expiry.items())
        self._queue = deque(live)
        self._late = []


def admit_stream(window: RollingWindow, recipients: Sequence[str], times: Sequence[float],
                 capacity: float) -> list[bool]:
    """Admission of a stream of counted sends, hand-inlined for throughput (the hot path).

    Same decisions as calling ``try_admit`` for each pair in order, for time-ordered input.
    """
    out: list[bool] = []
    append = out.append
    expiry = window._expiry
    queue = window._queue
    span = window.span
    popleft = queue.popleft
    push = queue.append
    head = queue[0][0] if queue else float("inf")
    late = window._late
    limit_slack = 2 * _COMPACT_SLACK
    for rcpt, now in zip(recipients, times, strict=True):
        if head <= now or late:
            window.expire(now)
            head = queue[0][0] if queue else float("inf")
        if rcpt in expiry or len(expiry) < capacity:
            new = now + span
            expiry[rcpt] = new
            push((new, rcpt))
            if head == float("inf"):
                head = new
            append(True)
            if len(queue) > 2 * len(expiry) + limit_slack:
                window._compact()
                queue = window._queue
                popleft = queue.popleft
                push = queue.append
                head = queue[0][0] if queue else float("inf")
        else:
            append(False)
    del popleft
    return out
