"""Forwarding's pure parts: the retry schedule, the signature, and splitting a delivery by tenant
(any JSON at all: never an exception, only a tenant's own ``messages`` changes)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.clock import VirtualClock
from tiergate.core.model import Message, MessageState, Sender, Tenant
from tiergate.ports import NotFound
from tiergate.service.forwarding import TOLD_CODES, Forwarder, inbound_media_ids, retry_delay, signature, told_status


class Senders:
    """Just the three reads ``Forwarder.shares`` makes."""

    def __init__(self) -> None:
        self.tenants = {"t1": Tenant("t1", "one", webhook_url="http://127.0.0.1:1/h", webhook_secret="s" * 16),
                        "t2": Tenant("t2", "two")}  # t2 has no webhook: nothing is forwarded to it
        self.senders = {"111": Sender("111", "t1", "+1", "sender:111"), "222": Sender("222", "t2", "+2", "sender:222")}

    async def get_sender(self, sender_id: str) -> Sender:
        if sender_id not in self.senders:
            raise NotFound(sender_id)
        return self.senders[sender_id]

    async def get_tenant(self, tenant_id: str) -> Tenant:
        return self.tenants[tenant_id]

    async def get_message_by_wamid(self, wamid: str) -> None:
        return None


def forwarder() -> Forwarder:
    return Forwarder(Senders(), VirtualClock(0.0), sink=None)  # type: ignore[arg-type]


@given(attempts=st.integers(min_value=1, max_value=10_000), jitter=st.floats(min_value=0, max_value=1))
def test_the_retry_delay_grows_and_is_bounded(attempts: int, jitter: float) -> None:
    delay = retry_delay(attempts, jitter)
    assert 10.0 <= delay <= 3600.0 * 1.2
    assert retry_delay(attempts + 1, jitter) >= delay


def test_the_signature_is_metas() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


# what load_body (orjson) can hand over: integers within 64 bits (larger ones arrive as floats)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
                           | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=25)
changes = st.fixed_dictionaries({"field": st.sampled_from(["messages", "account_update", 7]),
                                 "value": st.one_of(json_values, st.fixed_dictionaries({
                                     "metadata": st.fixed_dictionaries({"phone_number_id": st.sampled_from(
                                         ["111", "222", "333", 111, None, ""])}),
                                     "statuses": st.lists(json_values, max_size=3)}))})
deliveries = st.one_of(json_values, st.fixed_dictionaries({"object": json_values, "entry": st.lists(
    st.one_of(json_values, st.fixed_dictionaries({"id": json_values, "changes": st.lists(changes, max_size=4)})),
    max_size=4)}))


@settings(max_examples=300, deadline=None)
@given(body=deliveries)
def test_any_delivery_splits_without_error_into_tenant_1s_messages_changes_only(body: Any) -> None:
    shares, media = asyncio.run(forwarder().shares(body))
    assert all(tenant == "t1" for _, tenant in media)
    assert all(tenant == "t1" for tenant, _ in shares)
    for _, raw in shares:
        kept = orjson.loads(raw)
        for entry in kept["entry"]:
            assert entry["changes"], "an entry with nothing of the tenant's is left out"
            for change in entry["changes"]:
                assert change["field"] == "messages"
                assert str(change["value"]["metadata"]["phone_number_id"]) == "111"


def test_private_addresses_are_told_from_public_ones() -> None:
    from tiergate.adapters.outbound import is_private_address

    for host in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "::1", "[::1]",
                 "fe80::1%eth0", "0.0.0.0", "224.0.0.1", "fc00::1"):
        assert is_private_address(host), host
    for host in ("8.8.8.8", "2001:4860:4860::8888", "example.com", "app.example.com"):
        assert not is_private_address(host), host


def _ended(state: MessageState, reason: str, **fields: Any) -> Message:
    return Message("msg_1", "t1", "111", "sender:111", "5511911112222", "template", "MARKETING", {}, 2, state,
                   reason, updated_at=1_700_000_123.9, **fields)


@pytest.mark.parametrize(("message", "code"), [
    (_ended(MessageState.FAILED, "failed: Message undeliverable", error_code=131026, error_detail="undeliverable"),
     131026),  # the platform's answer to the send: its own code
    (_ended(MessageState.REJECTED, "recipient opted out of marketing"), 131050),  # what the platform would say
    (_ended(MessageState.REJECTED, "free-form message outside the customer service window: the platform "
                                   "rejects it (131047); send a template"), 131047),
    (_ended(MessageState.REJECTED, "no recorded opt-in for this recipient (require_opt_in)"), 990002),
    (_ended(MessageState.EXPIRED, "expired before it could be sent"), 990001),
    (_ended(MessageState.FAILED, "sender no longer exists"), 990003),
])
def test_an_ended_message_is_told_as_a_failed_status_in_metas_shape(message: Message, code: int) -> None:
    status = told_status(message)
    assert status["id"] == status["tiergate_message_id"] == "msg_1"
    assert (status["status"], status["timestamp"], status["recipient_id"]) == ("failed", "1700000123", "5511911112222")
    [error] = status["errors"]
    assert error["code"] == code and error["title"] == error["message"] and error["error_data"]["details"]
    assert status["tiergate_state"] == message.state.value
    assert ("href" in error) == (code < 990_000)  # Meta's error page lists Meta's codes only
    assert set(TOLD_CODES) == {"expired", "rejected", "failed"}


def test_inbound_media_ids_are_found_in_every_media_type_and_nothing_else() -> None:
    messages = [{"type": kind, kind: {"id": f"{i}00"}} for i, kind in
                enumerate(["image", "audio", "video", "document", "sticker"], start=1)]
    messages += [{"type": "text", "text": {"body": "hi"}}, {"type": "image"}, {"type": "image", "image": {"id": ""}},
                 {"type": "location", "location": {"id": "9"}}, "junk", {"type": 7}]
    change = {"field": "messages", "value": {"messages": messages}}
    assert inbound_media_ids(change) == ["100", "200", "300", "400", "500"]
    assert inbound_media_ids({"value": []}) == [] and inbound_media_ids(None) == []
