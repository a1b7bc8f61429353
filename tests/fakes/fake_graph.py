"""A local fake of Meta's Graph API (Cloud API sends and phone-number reads), with fault injection.

Tests point ``CloudProvider`` at it to see exactly what reached the "platform" (``accepted``), and
make it misbehave the ways the real one does: 5xx pages, requests that hang past the client's
timeout, connection resets, rate-limit and spam error codes, slow and garbled answers. Without
faults it does nothing but answer correctly and fast (no access log, no extra output), so the
benchmark can measure clients against it. Optionally (``webhook_url``) it also plays Meta's
webhook sender: for each accepted message it POSTs signed ``statuses`` webhooks (sent, delivered)
to tiergate, and ``emit_webhook(body)`` delivers any body a test builds (inbound messages, tier
updates), so the cloud path can be tested end to end, reconciliation of unknown outcomes included.

In-process (on the running event loop)::

    async with FakeGraph(token="t") as fake:
        provider = CloudProvider(fake.base_url, "t")
        fake.add_fault(131056, share=0.2, sender="1001")
        ...
        assert [m.to for m in fake.accepted["1001"]] == [...]

As a separate process (benchmarks, end-to-end runs)::

    python -m tests.fakes.fake_graph --port 0 --token t      # prints FAKE_GRAPH_LISTENING <base_url>
    with FakeGraphProcess(token="t") as proc: proc.base_url; proc.stats(); proc.set_faults([...])

With ``limits`` (``--enforce-limits``) it also plays the platform's messaging limit: a
``PlatformLimits`` counts distinct template recipients per number over a rolling 24 h on the fake's
clock (``--clock-file``: a ``FileClock`` shared with the processes under test), refuses sends over
the number's tier (131048), counts violations and how often each message was accepted
(``/_fake/limits``), and reports status webhooks for chosen messages on request
(``/_fake/report_statuses``): the independent judge of multi-process tests.

Fault decisions are deterministic for a seed: each is a hash of (seed, rule, sender, recipient,
how many times this pair was seen), so concurrency does not change which request fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import orjson
from aiohttp import web

from tests.fakes.platform_limits import PlatformLimits
from tests.fakes.processes import stop_processes
from tests.fakes.shared_clock import FileClock
from tiergate.adapters.provider.graph_nodes import GraphNodes
from tiergate.core import shapes
from tiergate.core.signature import sign

__all__ = ["AcceptedMessage", "FakeGraph", "FakeGraphProcess", "Fault"]

FAULT_KINDS = ("5xx", "timeout", "reset", "slow", "malformed")
_REACHED_BY_DEFAULT = {"5xx": False, "timeout": False, "reset": False, "slow": True, "malformed": True}
_READY_LINE = "FAKE_GRAPH_LISTENING"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class AcceptedMessage(NamedTuple):
    """One message that reached the fake platform: ``to`` as the platform's wa_id (digits), the body
    as sent, ``time`` from the fake's clock."""

    to: str
    body: dict[str, Any]
    time: float


@dataclass
class Fault:
    """A way to misbehave on a share of requests.

    ``kind``: an error code (int: answered with Meta's error JSON) or one of ``FAULT_KINDS``:
    ``5xx`` (an HTML error page with ``status``), ``timeout`` (hold the request ``delay`` s, longer
    than the client waits), ``reset`` (TCP RST instead of an answer), ``slow`` (answer normally
    after ``delay`` s), ``malformed`` (HTTP 200 with truncated JSON). ``sender``: only this
    phone_number_id (None: all). ``on``: ``send`` or ``get``. ``reached``: whether the message
    counts as accepted by the platform before the fault (None: the kind's default: slow and
    malformed yes, the others no). ``count``: stop after this many hits (None: no limit).
    """

    kind: int | str
    share: float = 1.0
    sender: str | None = None
    on: str = "send"
    delay: float = 30.0
    reached: bool | None = None
    count: int | None = None
    status: int = 500  # an error page; 503 (unavailable: not served) is retried, any other 5xx is unknown
    retry_after: float | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.kind, str) and self.kind.lstrip("-").isdigit():
            self.kind = int(self.kind)
        if not isinstance(self.kind, int) and self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: an error code or one of {FAULT_KINDS}")
        if self.on not in ("send", "get"):
            raise ValueError("a fault applies on 'send' or 'get'")

    @property
    def accepts(self) -> bool:
        if isinstance(self.kind, int):
            return False
        return _REACHED_BY_DEFAULT[self.kind] if self.reached is None else self.reached


class FakeGraph:
    """The fake Graph API server; see the module docstring."""

    def __init__(self, *, token: str = "fake-token", seed: int = 0, version: str = "v24.0",
                 host: str = "127.0.0.1", port: int = 0, record: bool = True, strict_numbers: bool = False,
                 clock: Callable[[], float] = time.time, webhook_url: str | None = None,
                 app_secret: str = "fake-app-secret", webhook_statuses: tuple[str, ...] = ("sent", "delivered"),
                 waba_id: str = "fake-waba", webhook_retries: int = 0, webhook_delay: float = 0.0,
                 limits: PlatformLimits | None = None) -> None:
        self.token = token
        self.seed = seed
        self.version = version
        self.host = host
        self.port = port
        self.record = record
        self.strict_numbers = strict_numbers
        self.clock = clock
        self.faults: list[Fault] = []
        self.accepted: dict[str, list[AcceptedMessage]] = defaultdict(list)
        self.wamids: dict[str, tuple[str, int]] = {}  # wamid -> (phone_number_id, index in accepted[...])
        self.phone_numbers: dict[str, dict[str, Any]] = {}
        self.stats: Counter[str] = Counter()
        self.read_receipts: list[tuple[str, str]] = []  # (number, message id)
        self.uploads: list[tuple[str, str, bytes]] = []  # (number, media id, the multipart body)
        self.media: dict[str, tuple[bytes, str]] = {}  # media id -> (file, MIME type)
        self._seen: Counter[tuple[str, str]] = Counter()
        self._serial = 0
        self._auth = f"Bearer {token}"
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.webhook_url = webhook_url
        self.app_secret = app_secret
        self.webhook_statuses = webhook_statuses
        self.waba_id = waba_id
        self.webhook_retries = webhook_retries
        self.webhook_delay = webhook_delay  # seconds between accepting a message and its first status
        self.limits = limits
        self.nodes = GraphNodes(lambda node: self._number(node, create=False),  # profiles, templates
                                lambda waba: sorted(self.phone_numbers) if waba == self.waba_id else [])
        self.relayed: list[tuple[str, str, str]] = []  # (method, path, query) of the account's nodes
        self._deliveries: set[asyncio.Task[None]] = set()
        self._hook_session: aiohttp.ClientSession | None = None
        self.app = self._build_app()

    # -- configuration -----------------------------------------------------------------------
    def add_fault(self, kind: int | str, share: float = 1.0, **options: Any) -> Fault:
        fault = Fault(kind, share, **options)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_phone_number(self, phone_number_id: str, **fields: Any) -> dict[str, Any]:
        """Set fields of a number's Graph state (tier strings, quality_rating, status, throughput...)."""
        state = self._number(phone_number_id, create=True)
        assert state is not None
        if "quality_rating" in fields and "quality_score" not in fields:
            fields["quality_score"] = {"score": fields["quality_rating"]}
        if isinstance(fields.get("throughput"), str):
            fields["throughput"] = {"level": fields["throughput"]}
        state.update(fields)
        return state

    def reset(self) -> None:
        """Forget every accepted message and counter (faults and numbers stay)."""
        self.accepted.clear()
        self.wamids.clear()
        self.stats.clear()
        self._seen.clear()

    def accepted_count(self, phone_number_id: str | None = None) -> int:
        if phone_number_id is not None:
            return len(self.accepted.get(phone_number_id, ()))
        return sum(len(v) for v in self.accepted.values())

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.version}"

    async def start(self) -> FakeGraph:
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()  # requests held for a "timeout" fault end now
        await self.flush_webhooks()
        if self._hook_session is not None:
            await self._hook_session.close()
            self._hook_session = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeGraph:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the platform ------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/_fake/stats", self._ctl_stats)
        app.router.add_get("/_fake/accepted", self._ctl_accepted)
        app.router.add_put("/_fake/faults", self._ctl_faults)
        app.router.add_put("/_fake/phone_numbers/{node}", self._ctl_number)
        app.router.add_post("/_fake/reset", self._ctl_reset)
        app.router.add_post("/_fake/webhooks", self._ctl_webhook)
        app.router.add_get("/_fake/limits", self._ctl_limits)
        app.router.add_post("/_fake/report_statuses", self._ctl_report_statuses)
        app.router.add_post("/{version}/{node}/messages", self._send)
        app.router.add_post("/{version}/{node}/media", self._upload)
        app.router.add_get("/{version}/{node}", self._get_node)
        app.router.add_delete("/{version}/{node}", self._delete_media)
        app.router.add_route("*", "/{version}/{node}/{edge}", self._node_edge)
        app.router.add_get("/_media/{node}", self._download)  # where the platform's media URLs point
        return app

    def _number(self, phone_number_id: str, *, create: bool) -> dict[str, Any] | None:
        state = self.phone_numbers.get(phone_number_id)
        if state is None and (create or not self.strict_numbers):
            state = shapes.phone_number_state(phone_number_id, phone_number_id, tier="TIER_250")
            self.phone_numbers[phone_number_id] = state
        return state

    def _error(self, code: int, details: str | None = None, *, retry_after: float | None = None) -> web.Response:
        self.stats[f"error:{code}"] += 1
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        body = shapes.error_payload(code, details=details, fbtrace_id=f"Afake{self._serial:08d}")
        return web.Response(body=orjson.dumps(body), status=shapes.http_status_for(code),
                            content_type="application/json", headers=headers)

    def _unauthorized(self) -> web.Response:
        self.stats["unauthorized"] += 1
        body = {"error": {"message": "Invalid OAuth access token - Cannot parse access token",
                          "type": "OAuthException", "code": 190, "fbtrace_id": "Afakeauth"}}
        return web.Response(body=orjson.dumps(body), status=401, content_type="application/json")

    def _pick_fault(self, on: str, sender: str, key: str) -> Fault | None:
        if not self.faults:
            return None
        n = self._seen[(sender, key)]
        for index, fault in enumerate(self.faults):
            if fault.on != on or (fault.sender is not None and fault.sender != sender):
                continue
            if fault.count is not None and fault.hits >= fault.count:
                continue
            if fault.share < 1.0 and _draw(self.seed, index, sender, key, n) >= fault.share:
                continue
            fault.hits += 1
            self.stats[f"fault:{fault.kind}"] += 1
            return fault
        return None

    def _accept(self, sender: str, to: str, body: dict[str, Any]) -> str:
        self._serial += 1
        wamid = shapes.make_wamid(to, self._serial, self.seed)
        self.stats["accepted"] += 1
        if self.record:
            bucket = self.accepted[sender]
            self.wamids[wamid] = (sender, len(bucket))
            bucket.append(AcceptedMessage(shapes.wa_id(to), body, self.clock()))
        if self.limits is not None:
            self.limits.accept(self.limits.key_of(body), wamid, sender, shapes.wa_id(to), self.clock())
        if self.webhook_url and self.webhook_statuses:
            self._deliver_later(self._status_webhooks(sender, shapes.wa_id(to), wamid, body))
        return wamid

    # -- webhooks (optional: only with a webhook_url) ------------------------------------------
    def _status_webhooks(self, sender: str, to: str, wamid: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._number(sender, create=True)
        assert state is not None
        meta = shapes.metadata(shapes.wa_id(state["display_phone_number"]), sender)
        billable = body.get("type") == "template"
        callback = body.get("biz_opaque_callback_data")
        return [shapes.webhook(self.waba_id, [("messages", {
            "messaging_product": "whatsapp", "metadata": meta,
            "statuses": [shapes.status_item(wamid, status, self.clock(), to, billable=billable,
                                            callback_data=callback if isinstance(callback, str) else None)]})])
            for status in self.webhook_statuses]

    def emit_webhook(self, body: dict[str, Any]) -> asyncio.Task[None]:
        """POST ``body`` to the webhook URL, signed like Meta (X-Hub-Signature-256); returns the task."""
        if not self.webhook_url:
            raise RuntimeError("this fake has no webhook_url")
        return self._deliver_later([body])

    async def flush_webhooks(self) -> None:
        """Wait until every webhook scheduled so far has been delivered (or failed)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    def _deliver_later(self, bodies: list[dict[str, Any]]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._deliver(bodies))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return task

    async def _deliver(self, bodies: list[dict[str, Any]]) -> None:
        """Deliver in order (sent before delivered), like the platform usually does.

        With ``webhook_retries`` a delivery that finds no one listening (or a 5xx) is tried again
        after a growing pause, as Meta retries for days: a test can restart the receiver meanwhile.
        """
        assert self.webhook_url is not None
        if self.webhook_delay:
            await self._hold(self.webhook_delay)
        if self._hook_session is None:
            self._hook_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for body in bodies:
            raw = orjson.dumps(body)
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(self.app_secret, raw)}
            for attempt in range(self.webhook_retries + 1):
                if attempt:
                    self.stats["webhooks_retried"] += 1
                    await self._hold(min(5.0, 0.1 * 2 ** attempt))
                    if self._stopping.is_set():
                        break
                try:
                    async with self._hook_session.post(self.webhook_url, data=raw, headers=headers) as resp:
                        await resp.read()
                        self.stats["webhooks_delivered" if resp.status < 300 else "webhooks_refused"] += 1
                        if resp.status < 500:
                            break
                except (aiohttp.ClientError, OSError, TimeoutError):
                    self.stats["webhooks_failed"] += 1

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        if request.headers.get("Authorization") != self._auth:
            return self._unauthorized()
        sender = request.match_info["node"]
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._error(100, "The request body is not valid JSON.")
        if self._number(sender, create=False) is None:
            return self._error(100, f"Unsupported post request. Object with ID '{sender}' does not exist.")
        if shapes.is_status_request(body):  # a read receipt: answered, recorded, nothing sent
            invalid = shapes.validate_status_request(body)
            if invalid is not None:
                return self._error(invalid[0], invalid[1])
            self.read_receipts.append((sender, body["message_id"]))
            return _json(shapes.STATUS_ACCEPTED)
        invalid = shapes.validate_send_body(body)
        if invalid is not None:
            return self._error(invalid[0], invalid[1])
        to = body["to"]
        if self.limits is not None and not self._within_limit(sender, to, body):
            return self._error(131048, "Message failed to send because there were too many messages sent from this "
                                       "phone number (over its messaging limit, as counted by the fake platform).")
        fault = self._pick_fault("send", sender, to)
        self._seen[(sender, to)] += 1
        if fault is None:
            return _json(shapes.accepted_payload(to, self._accept(sender, to, body)))
        wamid = self._accept(sender, to, body) if fault.accepts else None
        return await self._misbehave(request, fault, lambda: shapes.accepted_payload(to, wamid or ""))

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """``POST /{number}/media``: a multipart upload, checked as the platform checks it."""
        self.stats["requests"] += 1
        if request.headers.get("Authorization") != self._auth:
            return self._unauthorized()
        sender = request.match_info["node"]
        if self._number(sender, create=False) is None:
            return self._error(100, f"Unsupported post request. Object with ID '{sender}' does not exist.")
        raw = await request.read()
        fields = shapes.read_media_upload(request.headers.get("Content-Type", ""), raw)
        if isinstance(fields, tuple):
            return self._error(fields[0], fields[1])
        self._serial += 1
        media_id = str(2_000_000_000_000_000 + self._serial)
        self.uploads.append((sender, media_id, raw))
        self.add_media(media_id, fields.get("file", b""), fields.get("type", b"").decode() or "image/png")
        return _json({"id": media_id})

    def add_media(self, media_id: str, data: bytes, mime_type: str) -> None:
        """A media object the platform holds (an upload, or what a user sent to a number)."""
        self.media[media_id] = (data, mime_type)

    async def _delete_media(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != self._auth:
            return self._unauthorized()
        node = request.match_info["node"]
        if self.media.pop(node, None) is None:
            return self._error(100, f"Unsupported delete request. Object with ID '{node}' does not exist.")
        return _json(shapes.STATUS_ACCEPTED)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """The platform's media URL: the file, for a request that carries the token."""
        if request.headers.get("Authorization") != self._auth:
            return self._unauthorized()
        kept = self.media.get(request.match_info["node"])
        if kept is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=kept[0], content_type=kept[1])

    def _within_limit(self, sender: str, to: str, body: dict[str, Any]) -> bool:
        assert self.limits is not None
        state = self._number(sender, create=True)
        assert state is not None
        return self.limits.check(sender, shapes.wa_id(to), body, self.clock(), state.get("messaging_limit_tier"))

    async def _misbehave(self, request: web.Request, fault: Fault,
                         answer: Callable[[], dict[str, Any]]) -> web.StreamResponse:
        kind = fault.kind
        if isinstance(kind, int):
            return self._error(kind, retry_after=fault.retry_after)
        if kind == "slow":
            await self._hold(fault.delay)
            return _json(answer())
        if kind == "timeout":
            await self._hold(fault.delay)
            return web.Response(status=504, text="Gateway Timeout")
        if kind == "5xx":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            return web.Response(status=fault.status, headers=headers, content_type="text/html",
                                text=f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>")
        if kind == "malformed":
            text = orjson.dumps(answer())
            return web.Response(body=text[: max(1, len(text) // 2)], status=200, content_type="application/json")
        # reset: a TCP RST instead of any answer
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise asyncio.CancelledError  # nothing more to say on this connection

    async def _node_edge(self, request: web.Request) -> web.StreamResponse:
        """A number's business profile, a WABA's templates and phone numbers (``GraphNodes``)."""
        self.stats["requests"] += 1
        if request.headers.get("Authorization") != self._auth:
            return self._unauthorized()
        path = f"{request.match_info['node']}/{request.match_info['edge']}"
        self.relayed.append((request.method, path, request.query_string))
        answered = self.nodes.handle(request.method, path, request.query_string, await request.read())
        if answered is None:
            return self._error(100, f"Unsupported {request.method.lower()} request.")
        return _json(answered[1], answered[0])

    async def _get_node(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        self.stats["get"] += 1
        if request.headers.get("Authorization") != self._auth:
            return self._unauthorized()
        node = request.match_info["node"]
        if node in self.media:
            data, mime = self.media[node]
            return _json(shapes.media_object(node, f"http://{self.host}:{self.port}/_media/{node}", mime, data))
        state = self._number(node, create=False)
        if state is None and node == self.waba_id:
            self.relayed.append(("GET", node, request.query_string))
            waba = self.nodes.handle("GET", node, request.query_string)
            assert waba is not None  # the WABA's own node
            return _json(waba[1], waba[0])
        if state is None:
            return self._error(100, f"Unsupported get request. Object with ID '{node}' does not exist, cannot be "
                                    "loaded due to missing permissions, or does not support this operation.")
        fault = self._pick_fault("get", node, "get")
        self._seen[(node, "get")] += 1
        fields = request.query.get("fields", "id").split(",")
        answer = shapes.phone_number_payload(state, fields)
        if isinstance(answer, tuple):
            return self._error(answer[0], answer[1])
        if fault is not None:
            return await self._misbehave(request, fault, lambda: answer)
        return _json(answer)

    # -- control (for tests driving a separate process) --------------------------------------
    async def _ctl_stats(self, request: web.Request) -> web.Response:
        per_sender = {k: len(v) for k, v in self.accepted.items()}
        return _json({"stats": dict(self.stats), "accepted": per_sender,
                      "faults": [asdict(f) for f in self.faults], "webhooks_pending": len(self._deliveries)})

    async def _ctl_accepted(self, request: web.Request) -> web.Response:
        sender = request.query.get("phone_number_id")
        senders = [sender] if sender else list(self.accepted)
        return _json({s: [m._asdict() for m in self.accepted.get(s, ())] for s in senders})

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        specs = await request.json()
        try:
            self.faults = [Fault(**spec) for spec in specs]
        except (TypeError, ValueError) as exc:
            return web.Response(status=400, text=str(exc))
        return _json({"faults": len(self.faults)})

    async def _ctl_number(self, request: web.Request) -> web.Response:
        return _json(self.set_phone_number(request.match_info["node"], **await request.json()))

    async def _ctl_webhook(self, request: web.Request) -> web.Response:
        if not self.webhook_url:
            return web.Response(status=409, text="this fake has no webhook_url")
        self.emit_webhook(await request.json())
        return _json({"queued": True})

    async def _ctl_limits(self, request: web.Request) -> web.Response:
        if self.limits is None:
            return web.Response(status=409, text="this fake does not enforce limits (--enforce-limits)")
        return _json(self.limits.report())

    async def _ctl_report_statuses(self, request: web.Request) -> web.Response:
        """``{"keys": [...]}``: a ``sent`` status webhook (with the callback data) for each accepted one."""
        if self.limits is None or not self.webhook_url:
            return web.Response(status=409, text="needs --enforce-limits and a webhook_url")
        keys = (await request.json()).get("keys", [])
        found = [(key, send) for key in keys for send in self.limits.accepted.get(key, [])[:1]]
        for key, (wamid, number, to, at) in found:
            state = self._number(number, create=True)
            assert state is not None
            self.emit_webhook(shapes.webhook(self.waba_id, [("messages", {
                "messaging_product": "whatsapp",
                "metadata": shapes.metadata(shapes.wa_id(state["display_phone_number"]), number),
                "statuses": [shapes.status_item(wamid, "sent", at, to, billable=True, callback_data=key)]})]))
        await self.flush_webhooks()
        return _json({"reported": len(found)})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _draw(seed: int, rule: int, sender: str, key: str, n: int) -> float:
    """A uniform number in [0, 1) fixed by its inputs (not by arrival order)."""
    digest = hashlib.blake2b(f"{seed}|{rule}|{sender}|{key}|{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# ------------------------------------------------------------------------------------------------
# As a separate process
# ------------------------------------------------------------------------------------------------
class FakeGraphProcess:
    """Run the fake in a child process (``python -m tests.fakes.fake_graph``) and control it over HTTP."""

    def __init__(self, *, token: str = "fake-token", seed: int = 0, port: int = 0, record: bool = True,
                 uvloop: bool = False, webhook_url: str | None = None, app_secret: str = "fake-app-secret",
                 webhook_retries: int = 0, startup_timeout: float = 20.0, clock_file: str | None = None,
                 enforce_limits: bool = False, webhook_statuses: tuple[str, ...] | None = None,
                 webhook_delay: float = 0.0) -> None:
        self.token = token
        self._args = [sys.executable, "-m", "tests.fakes.fake_graph", "--port", str(port), "--token", token,
                      "--seed", str(seed)]
        if not record:
            self._args.append("--no-record")
        if webhook_url:
            self._args += ["--webhook-url", webhook_url, "--app-secret", app_secret,
                           "--webhook-retries", str(webhook_retries), "--webhook-delay", str(webhook_delay)]
        if uvloop:
            self._args.append("--uvloop")
        if clock_file:
            self._args += ["--clock-file", str(clock_file)]
        if enforce_limits:
            self._args.append("--enforce-limits")
        if webhook_statuses is not None:
            self._args += ["--webhook-statuses", ",".join(webhook_statuses)]
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> FakeGraphProcess:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO_ROOT),
                                                                         os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen(self._args, cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        self._proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith(_READY_LINE):
                self.base_url = line.split()[1]
                return self
            if not line and proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("the fake Graph API process did not start")

    @property
    def root(self) -> str:
        return self.base_url.rsplit("/", 1)[0]

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.root + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_fake/stats"))

    def accepted(self, phone_number_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
        query = f"?phone_number_id={phone_number_id}" if phone_number_id else ""
        return dict(self._call("GET", "/_fake/accepted" + query))

    def set_faults(self, faults: list[dict[str, Any]]) -> None:
        self._call("PUT", "/_fake/faults", faults)

    def set_phone_number(self, phone_number_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self._call("PUT", f"/_fake/phone_numbers/{phone_number_id}", fields))

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def emit_webhook(self, body: dict[str, Any]) -> None:
        self._call("POST", "/_fake/webhooks", body)

    def limits(self) -> dict[str, Any]:
        """What the platform counted (``PlatformLimits.report``): violations, peaks, duplicates."""
        return dict(self._call("GET", "/_fake/limits"))

    def report_statuses(self, keys: list[str]) -> int:
        """Have the platform send a ``sent`` status webhook for each of these accepted messages."""
        return int(self._call("POST", "/_fake/report_statuses", {"keys": keys})["reported"])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_processes([proc], timeout=10)

    def __enter__(self) -> FakeGraphProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeGraph(token=args.token, seed=args.seed, host=args.host, port=args.port, record=not args.no_record,
                     webhook_url=args.webhook_url, app_secret=args.app_secret, webhook_retries=args.webhook_retries,
                     webhook_delay=args.webhook_delay,
                     clock=FileClock(args.clock_file).now if args.clock_file else time.time,
                     limits=PlatformLimits() if args.enforce_limits else None,
                     webhook_statuses=tuple(filter(None, args.webhook_statuses.split(","))))
    for spec in args.fault:
        kind, _, share = spec.partition(":")
        fake.add_fault(kind, float(share or 1.0))
    await fake.start()
    print(_READY_LINE, fake.base_url, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake Graph API (Cloud API) for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed on the ready line)")
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="count accepted messages without keeping them")
    parser.add_argument("--uvloop", action="store_true", help="run the server on uvloop")
    parser.add_argument("--webhook-url", help="POST signed status webhooks for accepted messages here")
    parser.add_argument("--app-secret", default="fake-app-secret", help="signs the webhooks (X-Hub-Signature-256)")
    parser.add_argument("--webhook-retries", type=int, default=0,
                        help="retry a webhook nobody took (connection error or 5xx) this many times")
    parser.add_argument("--webhook-delay", type=float, default=0.0,
                        help="seconds between accepting a message and posting its statuses")
    parser.add_argument("--webhook-statuses", default="sent,delivered",
                        help="statuses to report for every accepted message ('' for none)")
    parser.add_argument("--clock-file", help="read the time from this file (a FileClock shared with a test)")
    parser.add_argument("--enforce-limits", action="store_true",
                        help="count each number's distinct recipients per rolling 24 h and refuse sends over its tier")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[:SHARE]",
                        help="inject a fault from the start, e.g. 131056:0.1 or timeout:0.01")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(_serve(args))
    else:
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
