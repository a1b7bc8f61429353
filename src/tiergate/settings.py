"""Settings from ``TIERGATE_*`` environment variables, overridable by command-line flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Settings"]

DEFAULT_GRAPH_URL = "https://graph.facebook.com/v24.0"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "./tiergate.db"
    provider: str = "sandbox"  # sandbox | cloud
    graph_url: str = DEFAULT_GRAPH_URL
    access_token: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)  # the admin key to create/accept at start
    verify_token: str = field(default="", repr=False)
    app_secret: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    sync_interval: float = 900.0  # seconds between Graph API syncs of every sender (0: none)
    worker_id: str = ""
    batch_size: int = 500
    max_scopes: int = 10_000  # scope leases one worker holds at most (spread S scopes over N workers)
    lease_ttl: float = 30.0  # seconds a worker's scope leases outlive it: how soon another takes over
    # Requests to the platform in flight per process (Little's law: msg/s x latency; 256 covers
    # 1,000 msg/s at ~250 ms). Against a fast local endpoint fewer go faster (BENCHMARKS.md).
    max_in_flight: int = 256
    # Webhooks forwarded to tenants' apps may go to private and loopback addresses (an app beside
    # tiergate). 0 on a shared deployment: a tenant's URL must not reach the operator's network.
    forward_private_urls: bool = True
    # PostgreSQL: claim the next batch while a batch's write runs (README, scale-out). 0 turns it off.
    write_behind: bool = True
    max_body_bytes: int = 2_000_000
    max_webhook_bytes: int = 8_000_000
    max_campaign_recipients: int = 200_000
    rate_limit_per_minute: int = 6000  # requests per API key per minute (0: no limit)
    sandbox_seed: int = 0
    sandbox_reply_share: float = 0.0
    sandbox_undeliverable_share: float = 0.0
    # Days an ended message is kept (then deleted; a finished campaign's figures are archived first).
    # 0 keeps every message. At least MIN_MESSAGE_RETENTION_DAYS: forecasts read 30 days of sends.
    message_retention_days: float = 0.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``TIERGATE_<FIELD>`` variables; explicit ``overrides`` (not None) win."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TIERGATE_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls(), f.name))
            try:
                values[f.name] = kind(raw) if kind is not bool else raw.lower() in ("1", "true", "yes")
            except ValueError:
                raise ValueError(f"TIERGATE_{f.name.upper()}={raw!r}: expected {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.provider not in ("sandbox", "cloud"):
            raise ValueError(f"provider {settings.provider!r}: use 'sandbox' or 'cloud'")
        if settings.provider == "cloud" and not settings.access_token:
            raise ValueError("provider 'cloud' needs TIERGATE_ACCESS_TOKEN (a system user access token)")
        for name, (low, high) in _BOUNDS.items():
            value = getattr(settings, name)
            if not low <= value <= high:
                raise ValueError(f"{name} (TIERGATE_{name.upper()}) must be {low:g} to {high:g}, not {value!r}")
        if 0 < settings.message_retention_days < MIN_MESSAGE_RETENTION_DAYS:
            raise ValueError(f"message_retention_days (TIERGATE_MESSAGE_RETENTION_DAYS) must be 0 (keep every message) "
                             f"or at least {MIN_MESSAGE_RETENTION_DAYS}, not {settings.message_retention_days!r}")
        if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level {settings.log_level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return replace(settings, log_level=settings.log_level.upper())

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# The 30 days of counted sends tier forecasts read off the messages (service.forecast.HISTORY_DAYS), and a day.
MIN_MESSAGE_RETENTION_DAYS = 31

# What a number among the settings may be: a value outside fails at start, with its name, instead
# of a traceback (a port) or a worker that never claims anything (a batch of 0).
_BOUNDS: dict[str, tuple[float, float]] = {
    "port": (1, 65_535),
    "sync_interval": (0.0, 7 * 86_400.0),  # 0: no periodic Graph sync
    "batch_size": (1, 100_000),
    "max_scopes": (1, 10_000_000),
    "lease_ttl": (1.0, 86_400.0),
    "max_in_flight": (1, 100_000),
    "max_body_bytes": (1_024, 1 << 30),
    "max_webhook_bytes": (1_024, 1 << 30),
    "max_campaign_recipients": (1, 100_000_000),
    "rate_limit_per_minute": (0, 1e15),  # 0: no limit
    "sandbox_reply_share": (0.0, 1.0),
    "sandbox_undeliverable_share": (0.0, 1.0),
    "message_retention_days": (0.0, 36_500.0),
}
