"""What a platform answer means for a message: its next state, a retry time, a released slot.

One function serves both the synchronous answer to a send and an asynchronous ``failed`` status
webhook, so an error code means the same thing whichever way it arrives (the per-code advice
itself is the table in ``core.errors``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.core.errors import Action, definitely_not_counted, verdict
from tiergate.core.model import MessageState

__all__ = ["OutcomePlan", "plan_failure", "plan_outcome"]


@dataclass(frozen=True, slots=True)
class OutcomePlan:
    state: MessageState
    reason: str
    next_attempt_at: float | None = None
    release_slot: bool = False  # the platform definitely did not count this send
    recipient_wait_until: float | None = None  # 131056/131049: only this recipient waits
    pause_sender: str | None = None  # 131048 and token problems: pause counted sending (and alert)
    pause_for: float | None = None  # how long (None: the dispatcher's default for a spam-limit pause)
    slow_sender: bool = False  # 130429: the sender is over the platform's pace, lower it
    opt_out: str | None = None  # 131050: record that the recipient stopped marketing (the reason)


def _describe(code: int | None, title: str, details: str) -> str:
    text = f"({code}) {title}" if code is not None else title or "no error code"
    return f"{text}: {details}" if details and details != title else text


def plan_failure(code: int | None, title: str, details: str, *, attempts: int, now: float, jitter: float,
                 http_status: int | None = None, retry_after: float | None = None,
                 synchronous: bool = False, expires_at: float | None = None) -> OutcomePlan:
    """A definite failure answer (a synchronous error, or an async ``failed`` status).

    A retry that would come at or after the message's ``expires_at`` is not planned: the message
    ends ``expired`` now, with the failure in its reason, instead of waiting queued past its time.
    """
    v = verdict(code, attempts, http_status=http_status, retry_after=retry_after, jitter=jitter)
    text = _describe(code, title, details)
    release = definitely_not_counted(code, synchronous=synchronous)
    if v.action is Action.NOT_A_FAILURE:
        return OutcomePlan(MessageState.SENT, f"held back by the platform, not a failure: {text}")
    if v.action is Action.FINAL:
        note = " (gave up retrying)" if v.exhausted else ""
        stop = v.pause_sender_for > 0
        return OutcomePlan(MessageState.FAILED, f"failed{note}: {text}", release_slot=release,
                           pause_sender=f"{v.reason} ({code})" if stop else None,
                           pause_for=v.pause_sender_for if stop else None,
                           opt_out=f"platform: {v.reason} ({code})" if v.stops_marketing else None)
    delay = v.delay if v.delay is not None else 60.0
    if v.action is Action.PAUSE_SENDER:
        plan = OutcomePlan(MessageState.QUEUED, f"sender paused, will retry after the pause: {text}",
                           next_attempt_at=now + 60.0, pause_sender=f"{v.reason} ({code})", release_slot=release)
    elif v.action in (Action.RETRY_RECIPIENT, Action.RETRY_AFTER_24H):
        plan = OutcomePlan(MessageState.QUEUED, f"{v.reason}; retrying this recipient later: {text}",
                           next_attempt_at=now + delay, recipient_wait_until=now + delay, release_slot=release)
    else:
        plan = OutcomePlan(MessageState.QUEUED, f"retrying (attempt {attempts}): {text}",
                           next_attempt_at=now + delay, release_slot=release, slow_sender=v.slow_sender)
    if expires_at is not None and plan.next_attempt_at is not None and plan.next_attempt_at >= expires_at:
        return OutcomePlan(MessageState.EXPIRED, f"expired: {text}; the retry would come after expires_at",
                           release_slot=release, pause_sender=plan.pause_sender, slow_sender=plan.slow_sender,
                           recipient_wait_until=plan.recipient_wait_until)
    return plan


def plan_outcome(status: str, code: int | None, title: str, details: str, *, attempts: int, now: float,
                 jitter: float, http_status: int | None = None, retry_after: float | None = None,
                 message_status: str | None = None, expires_at: float | None = None) -> OutcomePlan:
    """Plan for the answer to one send request (``accepted`` / ``failed`` / ``unknown``)."""
    if status == "accepted":
        note = f" ({message_status})" if message_status and message_status != "accepted" else ""
        return OutcomePlan(MessageState.SENT, "accepted by the platform" + note)
    if status == "unknown":
        return OutcomePlan(
            MessageState.UNKNOWN,
            f"no definite answer from the platform ({title or 'timeout'}); it may have been sent, so it "
            "is not re-sent: a status webhook will settle it",
        )
    return plan_failure(code, title, details, attempts=attempts, now=now, jitter=jitter,
                        http_status=http_status, retry_after=retry_after, synchronous=True, expires_at=expires_at)
