"""Outbound HTTP to tenants' own endpoints (webhook forwarding): the ``WebhookSink`` port's adapter."""

from tiergate.adapters.outbound.aiohttp_sink import AiohttpSink

__all__ = ["AiohttpSink"]
