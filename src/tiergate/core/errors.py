"""What to do about each platform error code: one pure table the dispatcher and webhook code share.

The Cloud API reports failures as error codes (synchronously in the send response, or later in a
``failed`` status webhook). The platform's advice differs per code: back off and retry, retry only
that recipient later, wait a day, pause the whole sender, or give up. Keeping that knowledge in one
table (``RULES``) means a synchronous error and the same code arriving in a webhook are handled
alike, and a new code is one line. Codes nobody listed are retried a bounded number of times, then
final, with the platform's code kept. Time is an argument; jitter is a number the caller draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "RULES",
    "TRANSPORT_RULE",
    "UNLISTED_RULE",
    "Action",
    "ErrorRule",
    "Verdict",
    "classify",
    "definitely_not_counted",
    "is_final",
    "verdict",
]

HOUR = 3_600.0
DAY = 86_400.0


class Action(StrEnum):
    RETRY = "retry"  # transient: retry the message after a backoff
    RETRY_RECIPIENT = "retry_recipient"  # pair rate limit: only this recipient waits (4^n s)
    RETRY_AFTER_24H = "retry_after_24h"  # per-user marketing limit: not before 24 h
    PAUSE_SENDER = "pause_sender"  # the sender must stop counted sending (spam limit, bad token)
    FINAL = "final"  # retrying cannot help: fail the message with the platform's code
    NOT_A_FAILURE = "not_a_failure"  # e.g. an experiment hold-out: treat as done


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """The platform's advice for one error code.

    Retry delays grow as ``base_delay * factor ** (attempt - 1)`` up to ``max_delay``; after
    ``max_attempts`` retries the message is failed for good. ``not_counted``: a failure with this
    code means the message certainly did not reach the recipient, so its window slot may be released.
    ``slow_sender``: the sender itself is over a rate (lower its pace, not only this message's).
    ``pause_sender_for``: a final code that also stops the sender this long (a restricted or locked
    account: the rest of its queue would only fail the same way). ``stops_marketing``: the
    recipient turned marketing off; record it, so no later marketing is sent to fail again.
    """

    action: Action
    reason: str
    base_delay: float = 0.0
    factor: float = 2.0
    max_delay: float = HOUR
    max_attempts: int = 0
    not_counted: bool = False
    slow_sender: bool = False
    pause_sender_for: float = 0.0
    stops_marketing: bool = False

    def delay_for(self, attempt: int) -> float:
        """The nominal wait before retry number ``attempt`` (1 = the first retry)."""
        n = max(1, attempt)
        return min(self.max_delay, self.base_delay * self.factor ** (n - 1))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do now with one failed attempt: the rule's action once the attempt bound is applied.

    ``delay`` is set for the retry actions (seconds from now, jitter included). ``exhausted`` says
    a retryable code became final because its retries ran out.
    """

    action: Action
    reason: str
    code: int | None
    delay: float | None = None
    exhausted: bool = False
    slow_sender: bool = False
    pause_sender_for: float = 0.0
    stops_marketing: bool = False

    @property
    def final(self) -> bool:
        return self.action is Action.FINAL


def _final(reason: str, *, not_counted: bool = True, pause_sender_for: float = 0.0,
           stops_marketing: bool = False) -> ErrorRule:
    return ErrorRule(Action.FINAL, reason, not_counted=not_counted, pause_sender_for=pause_sender_for,
                     stops_marketing=stops_marketing)


def _pause(reason: str) -> ErrorRule:
    return ErrorRule(Action.PAUSE_SENDER, reason, max_attempts=24)


def _retry(reason: str, base: float, *, max_delay: float = HOUR, attempts: int = 6,
           slow_sender: bool = False) -> ErrorRule:
    return ErrorRule(Action.RETRY, reason, base_delay=base, max_delay=max_delay, max_attempts=attempts,
                     slow_sender=slow_sender)


_RULES: dict[int, ErrorRule] = {
    # transient: back off and retry
    1: _retry("platform error (API unknown)", 10.0),
    2: _retry("platform temporarily unavailable (API service)", 10.0),
    4: _retry("application request limit reached", 60.0, max_delay=HOUR, attempts=8),
    80007: _retry("WhatsApp Business Account rate limit reached", 60.0, max_delay=HOUR, attempts=8),
    130429: _retry("throughput limit reached (messages per second)", 1.0, max_delay=60.0, attempts=10,
                   slow_sender=True),
    131000: _retry("something went wrong on the platform", 5.0, attempts=5),
    131016: _retry("service unavailable", 10.0, attempts=6),
    131057: _retry("business account in maintenance mode", 15.0, max_delay=600.0, attempts=8),
    133004: _retry("server temporarily unavailable", 10.0, attempts=6),
    # this recipient only
    131056: ErrorRule(Action.RETRY_RECIPIENT, "too many messages to this recipient (pair rate limit)",
                      base_delay=4.0, factor=4.0, max_delay=4.0**7, max_attempts=7, not_counted=True),
    131049: ErrorRule(Action.RETRY_AFTER_24H, "per-user marketing limit: not delivered to keep engagement healthy",
                      base_delay=DAY, factor=1.0, max_delay=DAY, max_attempts=3, not_counted=True),
    # the sender must stop (each message is tried again after the pause, up to a day of pauses)
    131048: _pause("spam rate limit hit: sending from this number is restricted"),
    0: _pause("authentication failed: check the access token"),
    190: _pause("access token expired or invalid"),
    10: _pause("permission denied for this phone number"),
    200: _pause("permission denied for this phone number"),
    # final: retrying cannot help
    131026: _final("message undeliverable to this recipient"),
    131050: _final("the user stopped marketing messages from this business", stops_marketing=True),
    131047: _final("more than 24 hours since the recipient last wrote: free-form not allowed"),
    368: _final("the account is temporarily blocked for policy violations", pause_sender_for=DAY),
    131031: _final("the business account is locked or restricted", pause_sender_for=DAY),
    131021: _final("recipient cannot be the sender"),
    131051: _final("unsupported message type"),
    131045: _final("phone number not registered on the platform"),
    133010: _final("phone number not registered on the platform"),
    131042: _final("business eligibility or payment issue"),
    130497: _final("messaging to this country is restricted for this business"),
    131064: _final("template classification violations"),
    131008: _final("a required parameter is missing"),
    131009: _final("a parameter value is not valid"),
    131005: _final("access denied"),
    131052: _final("media download error"),
    131053: _final("media upload error"),
    100: _final("invalid parameter"),
    135000: _final("generic user error"),
    # not a failure at all
    130472: ErrorRule(Action.NOT_A_FAILURE, "part of a platform experiment hold-out: not sent by design"),
}

RULES: Mapping[int, ErrorRule] = MappingProxyType(_RULES)
"""Every code with specific advice. Codes 132000-132999 (template problems) are final too."""

TEMPLATE_RULE = _final("template problem (missing, paused, disabled or bad parameters)")
UNLISTED_RULE = ErrorRule(Action.RETRY, "unrecognised platform error", base_delay=30.0, max_delay=HOUR,
                          max_attempts=3)
"""A code nobody listed: retried a few times, then final with the platform's code kept."""

TRANSPORT_RULE = ErrorRule(Action.RETRY, "no answer from the platform (timeout, reset, 5xx)",
                           base_delay=5.0, max_delay=600.0, max_attempts=5)
"""No error code at all: an HTTP 5xx without a body, a timeout, a refused connection."""

_CLIENT_ERROR_RULE = _final("request refused by the platform without an error code")
_RATE_LIMITED_RULE = _retry("rate limited without an error code (HTTP 429)", 5.0, attempts=8)


def classify(code: int | None, http_status: int | None = None) -> ErrorRule:
    """The rule for a platform error ``code``; with no code, decided by the HTTP status (if any)."""
    if code is not None:
        rule = _RULES.get(code)
        if rule is not None:
            return rule
        if 132000 <= code <= 132999:
            return TEMPLATE_RULE
        return UNLISTED_RULE
    if http_status == 429:
        return _RATE_LIMITED_RULE
    if http_status is not None and 400 <= http_status < 500:
        return _CLIENT_ERROR_RULE
    return TRANSPORT_RULE


def verdict(code: int | None, attempt: int, *, http_status: int | None = None,
            retry_after: float | None = None, jitter: float = 0.0, jitter_share: float = 0.25) -> Verdict:
    """Decide about failed attempt number ``attempt`` (1 = the first send) of one message.

    ``jitter`` in [0, 1) is drawn by the caller; it only ever lengthens the wait (by up to
    ``jitter_share``), so a retry never comes sooner than the platform advised. ``retry_after`` (the
    server's Retry-After) is a floor for the delay.
    """
    rule = classify(code, http_status)
    retrying = rule.action in (Action.RETRY, Action.RETRY_RECIPIENT, Action.RETRY_AFTER_24H)
    if rule.action is Action.PAUSE_SENDER and rule.max_attempts and attempt > rule.max_attempts:
        return Verdict(Action.FINAL, f"{rule.reason} (gave up after {rule.max_attempts} pauses)", code,
                       exhausted=True)
    if not retrying:
        return Verdict(rule.action, rule.reason, code, slow_sender=rule.slow_sender,
                       pause_sender_for=rule.pause_sender_for, stops_marketing=rule.stops_marketing)
    if attempt > rule.max_attempts:
        return Verdict(Action.FINAL, f"{rule.reason} (gave up after {rule.max_attempts} retries)", code,
                       exhausted=True)
    delay = rule.delay_for(attempt) * (1.0 + jitter_share * min(max(jitter, 0.0), 1.0))
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return Verdict(rule.action, rule.reason, code, delay=delay, slow_sender=rule.slow_sender)


def is_final(code: int | None, http_status: int | None = None) -> bool:
    """True when retrying this code can never help."""
    return classify(code, http_status).action is Action.FINAL


_AMBIGUOUS_SYNC = frozenset({None, 1, 2, 131000, 131016, 133004})


def definitely_not_counted(code: int | None, *, synchronous: bool = False) -> bool:
    """True when a failure with ``code`` means the recipient certainly got nothing.

    Then the window slot the send took may be released. Conservative by design: anything that
    might have been delivered (a failure the platform cannot explain, a spam-limit stop, an
    unknown code in a status webhook) keeps its slot, so the count can only err high.
    ``synchronous``: the error was the answer to the send request itself, i.e. the platform
    refused the request before accepting it, which is definite for every code that names a reason.
    """
    if synchronous:
        return code not in _AMBIGUOUS_SYNC
    if code is None:
        return False
    return classify(code).not_counted
