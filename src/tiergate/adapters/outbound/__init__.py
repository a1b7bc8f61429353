"""Outbound HTTP to tenants' own endpoints (webhook forwarding): the ``WebhookSink`` port's adapter."""

from tiergate.adapters.outbound.aiohttp_sink import AiohttpSink, is_private_address

__all__ = ["AiohttpSink", "is_private_address"]
