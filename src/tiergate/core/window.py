"""Exact rolling-window accounting of distinct counted recipients.

Usage at time ``t`` is the number of distinct recipients with a counted send in ``(t - span, t]``.
A recipient counts from each counted send until ``span`` after their *latest* one, so the state is
one expiry per recipient (``_expiry``) plus a FIFO of expiries in non-decreasing order, kept as two
parallel deques (``_exp_q`` times, ``_rcpt_q`` recipients: no tuple per send). Sends arrive in time
order, so appending keeps the FIFO sorted and expiring is a pop from its head: amortised O(1) per
decision. A re-send appends a fresh entry and leaves the old one stale (skipped when it reaches the
head, because the recipient's expiry no longer matches); when the FIFO holds more than a few entries
per live recipient it is filtered in one pass, so memory stays proportional to the recipients in the
window. Sends recorded out of
time order (restored or back-dated, rare) go to a small heap instead.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["DAY", "RollingWindow", "Slot", "admit_stream"]

DAY = 86_400.0
_COMPACT_FACTOR = 4  # rebuild the FIFO when it holds more than this many entries per live recipient
_COMPACT_SLACK = 4096
_INF = math.inf


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

    __slots__ = ("_cache", "_exp_q", "_expiry", "_late", "_rcpt_q", "_shadow", "_version", "span")

    def __init__(self, span: float = DAY) -> None:
        self.span = float(span)
        self._expiry: dict[str, float] = {}
        self._exp_q: deque[float] = deque()
        self._rcpt_q: deque[str] = deque()
        self._late: list[tuple[float, str]] = []
        # Sends that did not move their recipient's expiry (same moment, or back-dated): the latest
        # such expiry per recipient, so releasing the send that did move it never under-counts.
        self._shadow: dict[str, float] = {}
        self._version = 0  # bumped on every change; keys the release-time cache
        self._cache: tuple[int, float, float | None] | None = None

    # -- reading ---------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Drop every recipient whose latest counted send is ``span`` or more before ``now``."""
        exp_q, expiry = self._exp_q, self._expiry
        if exp_q and exp_q[0] <= now:
            pop_exp, pop_rcpt, get = exp_q.popleft, self._rcpt_q.popleft, expiry.get
            while exp_q and exp_q[0] <= now:
                exp = pop_exp()
                rcpt = pop_rcpt()
                if get(rcpt) == exp:
                    del expiry[rcpt]
            self._version += 1
        late = self._late
        if late and late[0][0] <= now:
            while late and late[0][0] <= now:
                exp, rcpt = heapq.heappop(late)
                if expiry.get(rcpt) == exp:
                    del expiry[rcpt]
            self._version += 1

    def usage(self, now: float) -> int:
        """Distinct counted recipients in ``(now - span, now]``."""
        self.expire(now)
        return len(self._expiry)

    def contains(self, recipient: str, now: float) -> bool:
        exp = self._expiry.get(recipient)
        return exp is not None and exp > now

    def expiry_of(self, recipient: str) -> float | None:
        """When ``recipient`` stops counting (``None``: not counted; may be past until ``expire``)."""
        return self._expiry.get(recipient)

    def next_release_at(self, now: float) -> float | None:
        """When the next counted recipient leaves the window (``None``: the window is empty)."""
        self.expire(now)
        exp_q, rcpt_q, expiry = self._exp_q, self._rcpt_q, self._expiry
        while exp_q and expiry.get(rcpt_q[0]) != exp_q[0]:
            exp_q.popleft()
            rcpt_q.popleft()
        late = self._late
        while late and expiry.get(late[0][1]) != late[0][0]:
            heapq.heappop(late)
        heads = [h for h in (exp_q[0] if exp_q else None, late[0][0] if late else None) if h is not None]
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
        expiry = self._expiry
        previous = expiry.get(recipient)
        if previous is not None:
            if previous >= new:  # a same-moment or back-dated send inside a later one
                shadow = self._shadow
                if new > shadow.get(recipient, -_INF):
                    shadow[recipient] = new
                    if len(shadow) > len(expiry) + _COMPACT_SLACK:  # stale ones are harmless: bound them
                        self._shadow = {r: e for r, e in shadow.items() if r in expiry}
                return Slot(recipient, previous, previous)
            if previous <= sent_at:  # lapsed, not yet expired: the recipient was not counted
                previous = None
        self._put(recipient, new)
        return Slot(recipient, new, previous)

    def record_many(self, recipients: Iterable[str], sent_at: float) -> None:
        """Count sends to ``recipients`` all at ``sent_at`` (a batch decided at one instant)."""
        new = sent_at + self.span
        expiry, exp_q = self._expiry, self._exp_q
        if exp_q and exp_q[-1] > new:  # back-dated: the careful path
            for recipient in recipients:
                self.record(recipient, sent_at)
            return
        get, push_exp, push_rcpt = expiry.get, exp_q.append, self._rcpt_q.append
        for recipient in recipients:
            previous = get(recipient)
            if previous is not None and previous >= new:
                self.record(recipient, sent_at)  # a same-moment duplicate: keep its shadow
                continue
            expiry[recipient] = new
            push_exp(new)
            push_rcpt(recipient)
        self._version += 1
        if len(exp_q) + len(self._late) > _COMPACT_FACTOR * len(expiry) + _COMPACT_SLACK:
            self._compact()

    def _put(self, recipient: str, expiry: float) -> None:
        self._expiry[recipient] = expiry
        exp_q = self._exp_q
        if not exp_q or exp_q[-1] <= expiry:
            exp_q.append(expiry)
            self._rcpt_q.append(recipient)
        else:
            heapq.heappush(self._late, (expiry, recipient))
        self._version += 1
        if len(exp_q) + len(self._late) > _COMPACT_FACTOR * len(self._expiry) + _COMPACT_SLACK:
            self._compact()

    def try_admit(self, recipient: str, now: float, capacity: float) -> Slot | float | None:
        """Admit a counted send if it fits in ``capacity`` distinct recipients.

        Returns the ``Slot`` taken when admitted, else the time capacity next frees (a float), or
        ``None`` when nothing in the window will ever free it (capacity 0).
        """
        exp_q = self._exp_q
        if (exp_q and exp_q[0] <= now) or self._late:
            self.expire(now)
        expiry = self._expiry
        previous = expiry.get(recipient)  # after expire(): counted until later than now, or None
        if previous is None and len(expiry) >= capacity:
            return self.release_time_for(capacity, now)
        new = now + self.span
        if (previous is not None and previous >= new) or (exp_q and exp_q[-1] > new):
            return self.record(recipient, now)  # out of time order: the careful path
        expiry[recipient] = new  # the hot path, inlined: record() + _put() in time order
        exp_q.append(new)
        self._rcpt_q.append(recipient)
        self._version += 1
        if len(exp_q) + len(self._late) > _COMPACT_FACTOR * len(expiry) + _COMPACT_SLACK:
            self._compact()
        return Slot(recipient, new, previous)

    def release_time_for(self, capacity: float, now: float) -> float | None:
        """Earliest time a new recipient fits in ``capacity`` if nothing else is sent or released.

        ``now`` when it fits already; ``None`` when it never will (capacity below one).
        """
        self.expire(now)
        target = math.ceil(capacity) - 1  # the largest usage at which a new recipient still fits
        if target < 0:
            return None
        excess = len(self._expiry) - target
        if excess <= 0:
            return now
        if excess == 1:
            return self.next_release_at(now)
        cache = self._cache
        if cache is not None and cache[0] == self._version and cache[1] == capacity:
            return cache[2]
        at = heapq.nsmallest(excess, self._expiry.values())[-1]
        self._cache = (self._version, capacity, at)
        return at

    def release(self, slot: Slot, now: float) -> bool:
        """Undo a counted admission the platform definitely did not deliver.

        Only this send's effect is undone: if another send still counts the recipient (an earlier one
        still running, or one at the same moment), their expiry goes back to it; if they were counted
        again since, nothing changes (never under-count). Returns True when the recipient no longer
        counts at all (a persisted ledger row can go); False when they still do, possibly until an
        earlier time (``expiry_of`` says when; keeping the later row persisted is the safe side).
        """
        recipient = slot.recipient
        if self._expiry.get(recipient) != slot.expiry:
            return False
        previous = slot.previous
        if previous is not None and previous >= slot.expiry:
            return False  # this send moved nothing, so undoing it moves nothing
        shadow = self._shadow.get(recipient)
        if shadow is not None:  # a send that moved nothing still holds the recipient
            if shadow >= slot.expiry:
                del self._shadow[recipient]
                return False
            if previous is None or shadow > previous:
                del self._shadow[recipient]
                previous = shadow
        self._version += 1
        if previous is not None and previous > now:
            self._expiry[recipient] = previous
            heapq.heappush(self._late, (previous, recipient))
            return False
        del self._expiry[recipient]
        return True

    def load(self, entries: Iterable[tuple[str, float]], now: float) -> None:
        """Restore live state from persisted (recipient, expiry) pairs."""
        for rcpt, exp in sorted(entries, key=lambda e: e[1]):
            current = self._expiry.get(rcpt)
            if exp > now and (current is None or exp > current):
                self._put(rcpt, exp)

    def _compact(self) -> None:
        """Drop stale FIFO entries in one ordered pass (no sort) and fold the late heap back in."""
        get = self._expiry.get
        live = [(exp, rcpt) for exp, rcpt in zip(self._exp_q, self._rcpt_q, strict=True) if get(rcpt) == exp]
        if self._late:
            late = sorted(entry for entry in self._late if get(entry[1]) == entry[0])
            live = list(heapq.merge(live, late))
        self._exp_q = deque(exp for exp, _ in live)
        self._rcpt_q = deque(rcpt for _, rcpt in live)
        self._late = []
        expiry = self._expiry
        self._shadow = {r: e for r, e in self._shadow.items() if r in expiry}


def admit_stream(window: RollingWindow, recipients: Sequence[str], times: Sequence[float],
                 capacity: float) -> list[bool]:
    """Admission of a stream of counted sends, hand-inlined for throughput (the hot path).

    The same decisions as calling ``try_admit`` for each pair in order. ``times`` must not decrease
    (``ValueError`` otherwise, before anything is recorded). Checks that per-call admission makes on
    every send (order, stale-entry bound) are made once per stream here: a stream's stale entries are
    bounded by its own length until the compaction check at its end.
    """
    if len(recipients) != len(times):
        raise ValueError("recipients and times differ in length")
    ordered = times if isinstance(times, list) else list(times)
    if sorted(ordered) != ordered:
        raise ValueError("times must not decrease within a stream")
    exp_q = window._exp_q
    if window._late or (exp_q and ordered and ordered[0] + window.span < exp_q[-1]):
        return [isinstance(window.try_admit(r, t, capacity), Slot) for r, t in zip(recipients, ordered, strict=True)]
    out: list[bool] = []
    append = out.append
    expiry = window._expiry
    get = expiry.get
    pop_exp, pop_rcpt = exp_q.popleft, window._rcpt_q.popleft
    push_exp, push_rcpt = exp_q.append, window._rcpt_q.append
    span = window.span
    head = exp_q[0] if exp_q else _INF
    free = capacity - len(expiry)
    for rcpt, now in zip(recipients, ordered, strict=True):
        if head <= now:
            while head <= now:
                gone = pop_rcpt()
                if get(gone) == pop_exp():
                    del expiry[gone]
                    free += 1
                head = exp_q[0] if exp_q else _INF
        if rcpt in expiry:  # a re-send: free
            new = now + span
            expiry[rcpt] = new
            push_exp(new)
            push_rcpt(rcpt)
            append(True)
        elif free > 0:
            new = now + span
            expiry[rcpt] = new
            push_exp(new)
            push_rcpt(rcpt)
            append(True)
            free -= 1
            if head == _INF:
                head = new
        else:
            append(False)
    window._version += 1
    if len(exp_q) > _COMPACT_FACTOR * len(expiry) + _COMPACT_SLACK:
        window._compact()
    return out
