"""Every real-shaped payload of the conformance corpus parses into the expected kinds of event.

The corpus (pywa's test data, 74 payloads) lives outside the project; a missing or shrunken corpus
is a failure, not a skip, so the check cannot silently stop running.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from tests.fakes.webhook_bodies import sign_body

from tiergate.core.signature import verify_signature
from tiergate.core.webhooks import (
    AccountUpdate,
    InboundMessage,
    StatusUpdate,
    Unknown,
    UserPreference,
    WebhookEvent,
    parse_webhook,
    parse_webhook_bytes,
)

CORPUS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "pywa-webhook-payloads"
EXPECTED_PAYLOADS = 74

# file stem -> the only kind of event its payloads may yield (change field -> event type)
EXPECTED_KIND = {
    "account_update": "account",
    "call_connect": "unknown",  # field "calls": kept, ignored, except a call the user places (below)
    "call_permission_update": "inbound_message",
    "call_status": "unknown",
    "call_terminate": "unknown",
    "callback_button": "inbound_message",
    "callback_selection": "inbound_message",
    "deleted_message": "inbound_message",
    "edited_message": "inbound_message",
    "flow_completion": "inbound_message",
    "message": "inbound_message",
    "message_status": "status",
    "outgoing_message": "unknown",  # field "smb_message_echoes": the business's own app, not a user
    "system": "inbound_message",
    "template_category_update": "template",
    "template_components_update": "template",
    "template_quality_update": "template",
    "template_status_update": "template",
    "user_marketing_preferences": "user_preference",
}
EXPECTED_KIND_OF_PAYLOAD = {"call_connect/user_initiated": "inbound_message"}  # a user's call opens the window
FIELD_KIND = {"messages": {"inbound_message", "status"}, "user_preferences": {"user_preference"}}


def _load() -> list[tuple[str, str, dict[str, Any]]]:
    assert CORPUS.is_dir(), f"conformance corpus missing: {CORPUS}"
    found = [
        (path.stem, name, body)
        for path in sorted(CORPUS.glob("*.json"))
        for name, body in json.loads(path.read_text(encoding="utf-8")).items()
    ]
    assert len(found) >= EXPECTED_PAYLOADS, f"expected {EXPECTED_PAYLOADS} payloads in {CORPUS}, found {len(found)}"
    return found


def test_corpus_is_present_and_complete() -> None:
    payloads = _load()
    assert {stem for stem, _, _ in payloads} == set(EXPECTED_KIND)


def _changes(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [change for entry in body["entry"] for change in entry["changes"]]


def test_every_payload_yields_events_of_the_expected_kind() -> None:
    for stem, name, body in _load():
        events = parse_webhook(body)
        label = f"{stem}/{name}"
        assert events, label
        assert {event.kind for event in events} == {EXPECTED_KIND_OF_PAYLOAD.get(label, EXPECTED_KIND[stem])}, label
        for event in events:
            assert not isinstance(event, Unknown) or event.reason == "", f"{label}: {event.reason}"
            if event.field in FIELD_KIND:
                assert event.kind in FIELD_KIND[event.field], label
        items = sum(
            len(change["value"].get(key, []))
            for change in _changes(body)
            for key in ("messages", "statuses", "user_preferences")
            if change["field"] in FIELD_KIND
        )
        assert sum(event.field in FIELD_KIND for event in events) == items, label  # one event per item


def _all_events() -> list[tuple[str, WebhookEvent]]:
    return [(f"{stem}/{name}", event) for stem, name, body in _load() for event in parse_webhook(body)]


def test_inbound_messages_carry_who_when_and_which_number() -> None:
    inbound = [(label, e) for label, e in _all_events() if isinstance(e, InboundMessage)]
    assert len(inbound) >= 35
    for label, event in inbound:
        assert event.wa_id and event.message_id and event.type, label
        assert event.timestamp is not None and event.timestamp > 1.6e9, label
        assert event.phone_number_id and event.display_phone_number, label
    texts = {label: (e.type, e.text, e.reply_id) for label, e in inbound}
    assert texts["message/text"] == ("text", "Body Text", None)
    assert texts["callback_button/quick_reply"] == ("button", "title", "callback_data")
    assert texts["callback_button/button"] == ("interactive", "title", "callback_data")
    assert texts["callback_selection/description"] == ("interactive", "title", "callback_data")
    assert texts["flow_completion/completion"] == ("interactive", "Sent", None)
    by_label = dict(inbound)
    assert by_label["message/text"].contact_name == "Test Name"
    assert by_label["message/referral"].from_ad
    assert by_label["message/unsupported"].errors[0].code == 131051
    assert by_label["message/reply"].reply_to == "wamid.xyzxyz=="
    assert not by_label["system/phone_number_change"].opens_window
    assert by_label["callback_button/quick_reply_without_context"].user_id == "US.13491208655302741918"
    call = by_label["call_connect/user_initiated"]
    assert (call.type, call.wa_id, call.message_id, call.timestamp) == (
        "call",
        "972987654321",
        "wacid.xxxx=",
        1752583107.0,
    )
    assert call.opens_window and call.text is None


def test_statuses_carry_wamid_state_and_errors() -> None:
    statuses = {label: e for label, e in _all_events() if isinstance(e, StatusUpdate)}
    assert {e.status for e in statuses.values()} == {"sent", "delivered", "read", "played", "failed"}
    for label, event in statuses.items():
        assert event.wamid and event.recipient_id and event.timestamp, label
    failed = statuses["message_status/failed"]
    assert failed.error_code == 130472 and "experiment" in failed.errors[0].details
    assert statuses["message_status/sent"].conversation_expires_at == 1_698_339_900.0
    assert statuses["message_status/sent"].category == "service"
    assert statuses["message_status/with_tracker"].callback_data == "some data"
    assert statuses["message_status/group"].recipient_type == "group"


def test_account_updates_and_preferences() -> None:
    events = dict(_all_events())
    restriction = events["account_update/account_restriction"]
    assert isinstance(restriction, AccountUpdate)
    assert restriction.restricted_until() == 1_641_330_498.0
    assert len(restriction.restrictions) == 2
    assert events["account_update/account_disabled"].ban_state == "REINSTATE"
    assert events["account_update/account_violation"].violation_type == "ADULT"
    assert events["account_update/partner_added"].waba_id == "980198427658004"
    resume = events["user_marketing_preferences/resume"]
    assert isinstance(resume, UserPreference) and resume.resumes_marketing and resume.wa_id == "16505551234"


def test_change_ids_are_unique_per_distinct_change() -> None:
    ids: dict[str, str] = {}
    for stem, name, body in _load():
        for entry in body["entry"]:
            for change in entry["changes"]:
                key = json.dumps([entry.get("id"), change], sort_keys=True)
                for event in parse_webhook({"entry": [{"id": entry.get("id"), "changes": [change]}]}):
                    assert ids.setdefault(event.change_id, key) == key, f"{stem}/{name}"


@pytest.mark.parametrize("secret", ["app-secret", b"\x00binary\xff"])
def test_signed_bytes_verify_and_parse_like_the_dicts(secret: str | bytes) -> None:
    for _, _, body in _load():
        request = sign_body(body, secret)
        assert verify_signature(secret, request.body, request.signature)
        assert parse_webhook_bytes(request.body) == parse_webhook(body)
