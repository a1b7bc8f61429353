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
    sync_interval: float = 900.0
    worker_id: str = ""
    batch_size: int = 500
    max_scopes: int = 10_000  # scope leases one worker holds at most (spread S scopes over N workers)
    lease_ttl: float = 30.0  # seconds a worker's scope leases outlive it: how soon another takes over
    # Requests to the platform in flight per process (Little's law: msg/s x latency; 256 covers
    # 1,000 msg/s at ~250 ms). Against a fast local endpoint fewer go faster (BENCHMARKS.md).
    max_in_flight: int = 256
    # PostgreSQL: claim the next batch while a batch's write runs (README, scale-out). 0 turns it off.
    write_behind: bool = True
    max_body_bytes: int = 2_000_000
    max_webhook_bytes: int = 8_000_000
    max_campaign_recipients: int = 200_000
    rate_limit_per_minute: int = 6000  # requests per API key per minute
    sandbox_seed: int = 0
    sandbox_reply_share: float = 0.0
    sandbox_undeliverable_share: float = 0.0
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
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
