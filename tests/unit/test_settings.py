"""Settings from TIERGATE_* variables: every number has bounds, and a value outside them is refused
at start with the variable's name (not a traceback later, nor a worker that claims nothing)."""

from __future__ import annotations

import pytest

from tiergate.settings import _BOUNDS, Settings


def test_the_defaults_are_within_their_bounds() -> None:
    settings = Settings.from_env({})
    for name, (low, high) in _BOUNDS.items():
        assert low <= getattr(settings, name) <= high, name


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("TIERGATE_PORT", "99999", "port (TIERGATE_PORT) must be 1 to 65535"),
    ("TIERGATE_PORT", "0", "port (TIERGATE_PORT)"),
    ("TIERGATE_BATCH_SIZE", "0", "batch_size (TIERGATE_BATCH_SIZE) must be 1"),
    ("TIERGATE_LEASE_TTL", "-5", "lease_ttl"),
    ("TIERGATE_MAX_IN_FLIGHT", "0", "max_in_flight"),
    ("TIERGATE_SANDBOX_REPLY_SHARE", "1.5", "sandbox_reply_share"),
    ("TIERGATE_PORT", "http", "TIERGATE_PORT='http': expected int"),
    ("TIERGATE_LOG_LEVEL", "loud", "log_level 'loud'"),
    ("TIERGATE_MESSAGE_RETENTION_DAYS", "7", "message_retention_days (TIERGATE_MESSAGE_RETENTION_DAYS) must be 0"),
    ("TIERGATE_MESSAGE_RETENTION_DAYS", "-1", "message_retention_days"),
])
def test_a_value_out_of_bounds_is_refused_with_its_variable(variable: str, value: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({variable: value})


def test_an_explicit_flag_is_checked_like_a_variable() -> None:
    with pytest.raises(ValueError, match="port"):
        Settings.from_env({}, port=70_000)


def test_log_level_in_any_case_and_a_zero_rate_limit_mean_what_they_say() -> None:
    settings = Settings.from_env({"TIERGATE_LOG_LEVEL": "debug", "TIERGATE_RATE_LIMIT_PER_MINUTE": "0"})
    assert settings.log_level == "DEBUG" and settings.rate_limit_per_minute == 0


def test_no_rate_limit_when_it_is_zero() -> None:
    from tiergate.api.app import RateLimiter

    unlimited, one = RateLimiter(0), RateLimiter(1)
    assert all(unlimited.check("k") is None for _ in range(1000))
    assert one.check("k") is None and one.check("k") is not None


def test_message_retention_keeps_what_forecasts_read() -> None:
    from tiergate.service.forecast import HISTORY_DAYS
    from tiergate.settings import MIN_MESSAGE_RETENTION_DAYS

    assert MIN_MESSAGE_RETENTION_DAYS > HISTORY_DAYS
    assert Settings.from_env({"TIERGATE_MESSAGE_RETENTION_DAYS": "90"}).message_retention_days == 90
    assert Settings.from_env({}).message_retention_days == 0  # keeps every message unless asked
