"""Prometheus metrics, defined once per process and rendered by ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.admitted = Counter("tiergate_admitted", "Messages admitted for sending", ["counted"], registry=r)
        self.deferred = Counter("tiergate_deferred", "Admission deferrals (capacity, pauses, pacing)",
                                registry=r)
        self.sent = Counter("tiergate_sent", "Messages the platform accepted", registry=r)
        self.failed = Counter("tiergate_failed", "Send failures by platform error code", ["code"], registry=r)
        self.enqueued = Counter("tiergate_enqueued", "Messages accepted for queueing", registry=r)
        self.statuses = Counter("tiergate_statuses", "Status webhooks applied, by status (delivery and read rates)",
                                ["status"], registry=r)
        self.webhook_events = Counter("tiergate_webhook_changes", "Webhook changes applied", ["kind"],
                                      registry=r)
        self.webhook_latency = Histogram("tiergate_webhook_seconds", "Webhook request handling time",
                                         registry=r)
        self.window_usage = Gauge("tiergate_window_usage_ratio", "Rolling 24 h usage / limit per scope",
                                  ["scope"], registry=r)
        self.window_used = Gauge("tiergate_window_used", "Distinct counted recipients in the rolling 24 h",
                                 ["scope"], registry=r)
        self.forwards = Counter("tiergate_forwards", "Webhooks forwarded to tenants' apps, by outcome",
                                ["outcome"], registry=r)
        self.queue_depth = Gauge("tiergate_queue_depth", "Messages not ended yet, by state (queued, held, sending)",
                                 ["state"], registry=r)
        self.database_bytes = Gauge("tiergate_database_bytes",
                                    "Room the database takes (SQLite: file and WAL; PostgreSQL: tiergate's tables)",
                                    registry=r)
        self.pruned = Counter("tiergate_messages_pruned", "Ended messages deleted by message retention",
                              registry=r)
        self.archived = Counter("tiergate_campaigns_archived",
                                "Finished campaigns archived by message retention (their messages then deleted)",
                                registry=r)
        self.scopes_held = Gauge("tiergate_scopes_held", "Scopes this process's dispatcher holds the lease of",
                                 registry=r)
        self.scope_share = Gauge("tiergate_scope_share", "Scopes one worker should hold: all over the live workers",
                                 registry=r)


METRICS = Metrics()
