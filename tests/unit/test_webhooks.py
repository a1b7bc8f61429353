"""Webhook parsing: every event type, old and new field names, malformed values, batches, stable ids."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from tests.fakes import webhook_bodies as wb

from tiergate.core.tiers import UNLIMITED
from tiergate.core.webhooks import (
    AccountUpdate,
    InboundMessage,
    PlatformError,
    QualityUpdate,
    Restriction,
    StatusUpdate,
    TemplateUpdate,
    TierUpdate,
    Unknown,
    UserPreference,
    WebhookError,
    change_id,
    load_body,
    parse_webhook,
    parse_webhook_bytes,
)


def one(*changes: dict[str, Any], **kwargs: Any) -> Any:
    events = parse_webhook(wb.body(*changes, **kwargs))
    assert len(events) == 1, events
    return events[0]


def kinds(events: list[Any]) -> list[str]:
    return [type(event).__name__ for event in events]


# ---------------------------------------------------------------------------------------------
# Inbound messages
# ---------------------------------------------------------------------------------------------
def test_inbound_text_carries_sender_recipient_time_and_text() -> None:
    event = one(wb.inbound_text_change("15551230001", "Hello there", timestamp=1_700_000_123, name="Ana"))
    assert isinstance(event, InboundMessage)
    assert event.kind == "inbound_message"
    assert event.sender_phone_number_id == event.phone_number_id == wb.PHONE_NUMBER_ID
    assert event.display_phone_number == wb.DISPLAY_PHONE_NUMBER
    assert event.waba_id == wb.WABA_ID
    assert event.field == "messages"
    assert event.wa_id == "15551230001"
    assert event.message_id.startswith("wamid.")
    assert event.timestamp == 1_700_000_123.0 and isinstance(event.timestamp, float)
    assert event.type == "text"
    assert event.text == "Hello there"
    assert event.contact_name == "Ana"
    assert event.opens_window and not event.from_ad
    assert event.errors == ()


def _message(**fields: Any) -> dict[str, Any]:
    return {"from": "15551230001", "id": "wamid.m1", "timestamp": "1700000000", **fields}


@pytest.mark.parametrize(
    ("message", "text", "reply_id"),
    [
        (_message(type="button", button={"payload": "STOP_PROMO", "text": "Stop promotions"}), "Stop promotions",
         "STOP_PROMO"),
        (_message(type="interactive",
                  interactive={"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}),
         "Yes", "b1"),
        (_message(type="interactive", interactive={"type": "list_reply", "list_reply": {"id": "r2", "title": "Row",
                                                                                        "description": "d"}}),
         "Row", "r2"),
        (_message(type="interactive", interactive={"type": "nfm_reply", "nfm_reply": {"body": "Sent", "name": "flow",
                                                                                      "response_json": "{}"}}),
         "Sent", None),
        (_message(type="image", image={"id": "1", "mime_type": "image/jpeg"}), None, None),
        (_message(type="interactive"), None, None),
        (_message(type="reaction", reaction={"message_id": "wamid.x", "emoji": "👍"}), None, None),
    ],
)  # fmt: skip
def test_reply_text_and_id_from_buttons_lists_and_flows(
    message: dict[str, Any], text: str | None, reply_id: str | None
) -> None:
    event = one(wb.inbound_messages_change([message]))
    assert isinstance(event, InboundMessage)
    assert (event.text, event.reply_id) == (text, reply_id)


def test_inbound_context_referral_user_id_and_errors() -> None:
    message = _message(
        type="unsupported",
        context={"from": wb.DISPLAY_PHONE_NUMBER, "id": "wamid.original"},
        referral={"source_type": "ad", "ctwa_clid": "x"},
        from_user_id="US.123",
        errors=[{"code": 131051, "title": "Message type unknown", "error_data": {"details": "not supported"}}],
    )
    event = one(wb.inbound_messages_change([message]))
    assert isinstance(event, InboundMessage)
    assert event.reply_to == "wamid.original"
    assert event.from_ad
    assert event.user_id == "US.123"
    assert event.errors == (PlatformError(131051, "Message type unknown", "not supported"),)


def test_message_without_from_uses_the_user_id() -> None:
    message = {"from_user_id": "US.999", "id": "wamid.m", "timestamp": "1700000000", "type": "text",
               "text": {"body": "hi"}}  # fmt: skip
    event = one(wb.inbound_messages_change([message]))
    assert isinstance(event, InboundMessage) and event.wa_id == "US.999"


def test_system_message_does_not_open_a_window() -> None:
    message = _message(type="system", system={"body": "changed", "type": "user_changed_number"})
    event = one(wb.inbound_messages_change([message]))
    assert isinstance(event, InboundMessage) and not event.opens_window


def test_missing_timestamp_falls_back_to_entry_time_then_none() -> None:
    message = {"from": "1555", "id": "wamid.a", "type": "text", "text": {"body": "x"}}
    with_time = one(wb.inbound_messages_change([message]), time=1_700_000_500)
    without = one(wb.inbound_messages_change([message]))
    assert with_time.timestamp == 1_700_000_500.0
    assert without.timestamp is None


@pytest.mark.parametrize("timestamp", ["1700000000", 1700000000, 1700000000.0, " 1700000000 ", "2023-11-14T22:13:20Z"])
def test_timestamps_as_strings_integers_floats_and_iso(timestamp: object) -> None:
    event = one(wb.inbound_messages_change([_message(type="text", text={"body": "x"}, timestamp=timestamp)]))
    assert event.timestamp == 1_700_000_000.0


def test_contact_name_matches_the_sender_among_several_contacts() -> None:
    messages = [_message(type="text", text={"body": "a"}), {**_message(type="text", text={"body": "b"}), "from": "2"}]
    events = parse_webhook(wb.body(wb.inbound_messages_change(messages, [("2", "Bea"), ("15551230001", "Ana")])))
    assert [e.contact_name for e in events] == ["Ana", "Bea"]


def test_integer_ids_are_accepted_as_strings() -> None:
    event = one(wb.inbound_messages_change([{**_message(type="text", text={"body": "x"}), "from": 15551230001}]))
    assert event.wa_id == "15551230001"


@pytest.mark.parametrize(
    ("message", "reason_part"),
    [
        ({"id": "wamid.a", "type": "text"}, "'from'"),
        ({"from": "1", "type": "text"}, "'id'"),
        (_message(type="text", text="STOP"), "text"),
        (_message(type="text", text={"body": ["STOP"]}), "body"),
        (_message(type="text", text={"body": "x"}, timestamp={"s": 1}), "timestamp"),
        (_message(type="text", text={"body": "x"}, timestamp="yesterday"), "timestamp"),
        (_message(type="text", text={"body": "x"}, timestamp="nan"), "timestamp"),
        (_message(type="text", text={"body": "x"}, timestamp=True), "timestamp"),
        (_message(type=["text"]), "type"),
        (_message(type="text", errors={"code": 1}), "errors"),
        (_message(type="text", errors=[{"code": "abc"}]), "code"),
        ("not a message", "messages[]"),
    ],
)
def test_malformed_message_becomes_unknown_with_a_reason(message: Any, reason_part: str) -> None:
    good = _message(type="text", text={"body": "fine"}, id="wamid.good")
    events = parse_webhook(wb.body(wb.inbound_messages_change([message, good])))
    assert kinds(events) == ["Unknown", "InboundMessage"]
    bad = events[0]
    assert isinstance(bad, Unknown)
    assert reason_part in bad.reason
    assert bad.raw == message
    assert bad.field == "messages" and bad.phone_number_id == wb.PHONE_NUMBER_ID
    assert events[1].item_index == 1 and events[1].text == "fine"


def test_a_call_the_user_places_opens_the_window_like_a_message() -> None:
    event = one(wb.inbound_call_change("15551230001", timestamp=1_700_000_050, call_id="wacid.1"))
    assert isinstance(event, InboundMessage)
    assert (event.field, event.type, event.wa_id, event.message_id) == ("calls", "call", "15551230001", "wacid.1")
    assert event.timestamp == 1_700_000_050.0 and event.opens_window and event.text is None
    assert event.phone_number_id == wb.PHONE_NUMBER_ID and event.contact_name == "Test User"


def test_other_call_events_are_unknown_and_a_malformed_user_call_says_why() -> None:
    value = wb.inbound_call_change("1555")["value"]
    user_call = value["calls"][0]
    value["calls"] = [
        {**user_call, "direction": "BUSINESS_INITIATED", "from": wb.DISPLAY_PHONE_NUMBER},
        {**user_call, "event": "terminate"},
        {key: v for key, v in user_call.items() if key != "from"},
        user_call,
    ]
    events = parse_webhook(wb.body(wb.change("calls", value)))
    assert kinds(events) == ["Unknown", "Unknown", "Unknown", "InboundMessage"]
    assert [e.reason for e in events[:3]] == ["", "", "call without 'from' or 'id'"]


# ---------------------------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["sent", "delivered", "read", "played", "deleted", "SENT", "warning"])
def test_status_values_are_kept_in_lower_case(status: str) -> None:
    event = one(wb.status_change("wamid.s1", status, "15551230001", timestamp=1_700_000_001))
    assert isinstance(event, StatusUpdate)
    assert event.kind == "status"
    assert event.status == status.lower()
    assert (event.wamid, event.recipient_id, event.timestamp) == ("wamid.s1", "15551230001", 1_700_000_001.0)
    assert event.phone_number_id == wb.PHONE_NUMBER_ID
    assert event.category == event.pricing_category == event.conversation_category == "marketing"
    assert event.billable is True and event.pricing_model == "PMP"
    assert event.errors == () and event.error_code is None


def test_failed_status_carries_its_errors() -> None:
    event = one(wb.status_change("wamid.f", "failed", "1555", error_code=131049, error_title="Healthy ecosystem",
                                 error_details="not delivered to maintain healthy ecosystem engagement"))  # fmt: skip
    assert isinstance(event, StatusUpdate)
    assert event.status == "failed"
    assert event.error_code == 131049
    assert event.errors == (
        PlatformError(131049, "Healthy ecosystem", "not delivered to maintain healthy ecosystem engagement"),
    )
    assert event.category is None


def test_status_conversation_details_and_callback_data() -> None:
    update = {
        "id": "wamid.c", "status": "sent", "timestamp": "1698266945", "recipient_id": "972",
        "biz_opaque_callback_data": "msg_01", "recipient_type": "individual",
        "conversation": {"id": "c1", "expiration_timestamp": "1698339900", "origin": {"type": "utility"}},
        "pricing": {"billable": False, "pricing_model": "CBP", "category": "utility"},
        "errors": [{"code": "131026", "message": "Undeliverable"}],
    }  # fmt: skip
    event = one(wb.statuses_change([update]))
    assert isinstance(event, StatusUpdate)
    assert event.callback_data == "msg_01" and event.recipient_type == "individual"
    assert event.conversation_id == "c1" and event.conversation_expires_at == 1_698_339_900.0
    assert event.billable is False and event.category == "utility"
    assert event.errors == (PlatformError(131026, "Undeliverable", ""),)


@pytest.mark.parametrize(
    "update",
    [
        {"status": "sent", "timestamp": "1"},
        {"id": "wamid.x", "timestamp": "1"},
        {"id": "wamid.x", "status": "sent", "timestamp": [1]},
        {"id": "wamid.x", "status": "sent", "pricing": "free"},
        {"id": "wamid.x", "status": "sent", "pricing": {"billable": "yes"}},
        {"id": "wamid.x", "status": "sent", "conversation": {"origin": 3}},
        {"id": "wamid.x", "status": {"value": "sent"}},
        7,
    ],
)
def test_malformed_status_becomes_unknown_and_the_others_survive(update: Any) -> None:
    good = wb.status_object("wamid.ok", "delivered", "1555")
    events = parse_webhook(wb.body(wb.statuses_change([good, update, good])))
    assert kinds(events) == ["StatusUpdate", "Unknown", "StatusUpdate"]
    assert events[1].reason and events[1].raw == update
    assert [e.item_index for e in events] == [0, 1, 2]


def test_messages_and_statuses_in_one_change_are_numbered_in_order() -> None:
    value = wb.inbound_text_change("1555", "hi")["value"]
    value["statuses"] = [wb.status_object("wamid.1", "read", "1555"), wb.status_object("wamid.2", "sent", "1556")]
    events = parse_webhook(wb.body(wb.change("messages", value)))
    assert kinds(events) == ["InboundMessage", "StatusUpdate", "StatusUpdate"]
    assert [e.item_index for e in events] == [0, 1, 2]
    assert len({e.event_id for e in events}) == 3
    assert len({e.change_id for e in events}) == 1


def test_messages_change_with_nothing_inside_is_unknown() -> None:
    event = one(wb.change("messages", {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"}}))
    assert isinstance(event, Unknown) and "no messages" in event.reason
    assert event.phone_number_id == "1"


@pytest.mark.parametrize("value", ["text", [1, 2], None, {"metadata": "x", "messages": []}, {"messages": "STOP"}])
def test_messages_change_of_the_wrong_shape_is_unknown(value: Any) -> None:
    event = one(wb.change("messages", value))
    assert isinstance(event, Unknown) and event.reason and event.raw == value


# ---------------------------------------------------------------------------------------------
# Tiers
# ---------------------------------------------------------------------------------------------
def test_legacy_phone_tier_update_with_old_limit() -> None:
    event = one(wb.phone_tier_change("TIER_10K", old_limit="TIER_1K", event="UPGRADE"))
    assert isinstance(event, TierUpdate)
    assert event.kind == "tier"
    assert (event.source_field, event.per_business, event.event) == ("current_limit", False, "UPGRADE")
    assert event.tier.limit == 10_000 and event.raw_tier == "TIER_10K"
    assert event.old_tier is not None and event.old_tier.limit == 1_000
    assert event.display_phone_number == wb.DISPLAY_PHONE_NUMBER
    assert event.waba_id == wb.WABA_ID and event.phone_number_id is None


def test_new_portfolio_shape_of_the_quality_update() -> None:
    event = one(wb.portfolio_quality_tier_change("TIER_10K", old_limit="TIER_2K"))
    assert isinstance(event, TierUpdate)
    assert (event.source_field, event.per_business) == ("max_daily_conversations_per_business", True)
    assert event.tier.name == "TIER_10K" and event.old_tier is not None and event.old_tier.name == "TIER_2K"


def test_phone_and_portfolio_limits_in_one_change_give_two_updates() -> None:
    value = {"display_phone_number": "1555", "event": "UPGRADE", "current_limit": "TIER_1K",
             "max_daily_conversations_per_business": 2000}  # fmt: skip
    events = parse_webhook(wb.body(wb.change("phone_number_quality_update", value)))
    assert kinds(events) == ["TierUpdate", "TierUpdate"]
    assert [(e.source_field, e.per_business, e.tier.limit) for e in events] == [  # the number's own last
        ("max_daily_conversations_per_business", True, 2_000),
        ("current_limit", False, 1_000),
    ]
    assert [e.item_index for e in events] == [0, 1]


@pytest.mark.parametrize(
    ("raw", "limit", "name"),
    [
        ("TIER_2K", 2_000, "TIER_2K"),
        (2000, 2_000, "TIER_2K"),
        ("2000", 2_000, "TIER_2K"),
        (-1, None, "TIER_UNLIMITED"),
        ("-1", None, "TIER_UNLIMITED"),
        ("TIER_UNLIMITED", None, "TIER_UNLIMITED"),
        (100000.0, 100_000, "TIER_100K"),
        ("tier_250", 250, "TIER_250"),
    ],
)
def test_business_capability_limit_as_string_integer_or_minus_one(raw: object, limit: int | None, name: str) -> None:
    event = one(wb.business_tier_change(raw))  # type: ignore[arg-type]
    assert isinstance(event, TierUpdate)
    assert event.field == "business_capability_update"
    assert event.per_business and event.tier.known
    assert (event.tier.limit, event.tier.name, event.raw_tier) == (limit, name, raw)
    if limit is None:
        assert event.tier == UNLIMITED


def test_capability_update_per_phone_and_per_business() -> None:
    events = parse_webhook(wb.body(wb.business_tier_change("TIER_10K", max_daily_conversation_per_phone=-1)))
    assert {(e.source_field, e.per_business) for e in events} == {
        ("max_daily_conversation_per_phone", False),
        ("max_daily_conversations_per_business", True),
    }
    per_phone = next(e for e in events if not e.per_business)
    assert per_phone.tier.unlimited


@pytest.mark.parametrize(
    "key",
    [
        "messaging_limit_tier",
        "whatsapp_business_manager_messaging_limit",
        "max_daily_conversations_per_phone",
        "max_daily_conversation_per_business",
    ],
)
def test_other_tier_field_names_are_accepted(key: str) -> None:
    event = one(wb.change("phone_number_quality_update", {"display_phone_number": "1", key: "TIER_100K"}))
    assert isinstance(event, TierUpdate)
    assert event.source_field == key and event.tier.limit == 100_000
    assert event.per_business == ("business" in key)


def test_unknown_tier_string_is_kept_raw_and_marked_unknown() -> None:
    event = one(wb.phone_tier_change("TIER_5K_PLUS", old_limit="TIER_MYSTERY"))
    assert isinstance(event, TierUpdate)
    assert not event.tier.known and event.raw_tier == "TIER_5K_PLUS"
    assert event.old_tier is not None and not event.old_tier.known


def test_tier_not_set_is_unknown() -> None:
    event = one(wb.phone_tier_change("TIER_NOT_SET", event="ONBOARDING"))
    assert isinstance(event, TierUpdate) and event.event == "ONBOARDING" and not event.tier.known


@pytest.mark.parametrize("bad", [{"tier": "TIER_1K"}, ["TIER_1K"], True])
def test_a_tier_of_the_wrong_type_is_unknown_and_other_limits_still_apply(bad: object) -> None:
    value = {"display_phone_number": "1", "event": "UPGRADE", "current_limit": bad,
             "max_daily_conversations_per_business": "TIER_2K"}  # fmt: skip
    events = parse_webhook(wb.body(wb.change("phone_number_quality_update", value)))
    assert kinds(events) == ["TierUpdate", "Unknown"]
    assert "current_limit" in events[1].reason and events[1].raw == {"current_limit": bad}
    assert events[0].tier.name == "TIER_2K"


def test_old_limit_of_the_wrong_type_makes_the_change_unknown() -> None:
    event = one(wb.change("phone_number_quality_update", {"current_limit": "TIER_1K", "old_limit": {"x": 1}}))
    assert isinstance(event, Unknown) and "old_limit" in event.reason


def test_capability_update_without_a_limit_is_unknown() -> None:
    event = one(wb.change("business_capability_update", {"max_phone_numbers_per_business": 2}))
    assert isinstance(event, Unknown) and "no messaging limit" in event.reason


# ---------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("event_name", "flagged"), [("FLAGGED", True), ("UNFLAGGED", False), ("flagged", True)])
def test_flagged_and_unflagged(event_name: str, flagged: bool) -> None:
    event = one(wb.quality_change(event_name))
    assert isinstance(event, QualityUpdate)
    assert event.kind == "quality" and event.flagged is flagged
    assert event.display_phone_number == wb.DISPLAY_PHONE_NUMBER


def test_downgrade_with_flag_gives_tier_and_quality() -> None:
    value = {"display_phone_number": "1", "event": "FLAGGED", "current_limit": "TIER_1K", "old_limit": "TIER_10K"}
    events = parse_webhook(wb.body(wb.change("phone_number_quality_update", value)))
    assert kinds(events) == ["TierUpdate", "QualityUpdate"]
    assert events[1].item_index == 1 and events[1].flagged


@pytest.mark.parametrize(
    ("value", "quality"),
    [({"quality_rating": "yellow"}, "YELLOW"), ({"quality_score": {"score": "RED"}}, "RED"),
     ({"quality_score": "GREEN"}, "GREEN")],
)  # fmt: skip
def test_quality_rating_in_either_shape(value: dict[str, Any], quality: str) -> None:
    event = one(wb.change("phone_number_quality_update", {"display_phone_number": "1", **value}))
    assert isinstance(event, QualityUpdate) and event.quality == quality and event.flagged is None


def test_event_without_limit_or_rating_is_kept_as_a_quality_event() -> None:
    event = one(wb.change("phone_number_quality_update", {"display_phone_number": "1", "event": "THROUGHPUT_UPGRADE"}))
    assert isinstance(event, QualityUpdate) and event.event == "THROUGHPUT_UPGRADE" and event.quality is None


# ---------------------------------------------------------------------------------------------
# Account updates
# ---------------------------------------------------------------------------------------------
def test_account_restriction_with_expiry() -> None:
    event = one(wb.account_restriction_change(1_700_086_400, ["RESTRICTED_BIZ_INITIATED_MESSAGING",
                                                              "RESTRICTED_ADD_PHONE_NUMBER_ACTION"]))  # fmt: skip
    assert isinstance(event, AccountUpdate)
    assert event.kind == "account" and event.event == "ACCOUNT_RESTRICTION"
    assert event.restrictions == (
        Restriction("RESTRICTED_BIZ_INITIATED_MESSAGING", 1_700_086_400.0),
        Restriction("RESTRICTED_ADD_PHONE_NUMBER_ACTION", 1_700_086_400.0),
    )
    assert event.restricted_until() == 1_700_086_400.0
    assert event.restricted_until("RESTRICTED_CUSTOMER_INITIATED_MESSAGING") is None


@pytest.mark.parametrize(
    ("expiration", "expected"),
    [("1700086400", 1_700_086_400.0), (1_700_086_400.5, 1_700_086_400.5),
     ("2023-11-15T22:13:20+00:00", 1_700_086_400.0), ("2023-11-15T22:13:20", 1_700_086_400.0)],
)  # fmt: skip
def test_restriction_expiry_shapes(expiration: object, expected: float) -> None:
    value = {
        "event": "ACCOUNT_RESTRICTION",
        "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": expiration}],
    }
    event = one(wb.change("account_update", value))
    assert event.restrictions[0].expiration == expected


def test_restriction_without_expiry_lasts_until_lifted() -> None:
    value = {
        "event": "ACCOUNT_RESTRICTION",
        "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING"}],
    }
    event = one(wb.change("account_update", value))
    assert event.restrictions[0].expiration is None and event.restricted_until() == math.inf


def test_ban_violation_waba_info_and_limits_in_account_updates() -> None:
    ban = one(
        wb.account_event_change(
            "DISABLED_UPDATE", ban_info={"waba_ban_state": "DISABLE", "waba_ban_date": "April 17, 2025"}
        )
    )
    assert (ban.event, ban.ban_state, ban.ban_date) == ("DISABLED_UPDATE", "DISABLE", "April 17, 2025")
    violation = one(wb.account_event_change("ACCOUNT_VIOLATION", violation_info={"violation_type": "ADULT"}))
    assert violation.violation_type == "ADULT"
    linked = one(wb.account_event_change("PARTNER_ADDED", waba_info={"waba_id": "980198427658004"}))
    assert linked.waba_id == "980198427658004" and linked.raw["waba_info"]["waba_id"] == "980198427658004"
    verified = one(wb.account_event_change("VERIFIED_ACCOUNT", phone_number="15550001111"))
    assert verified.display_phone_number == "15550001111"
    events = parse_webhook(
        wb.body(wb.account_event_change("UPGRADE", whatsapp_business_manager_messaging_limit="TIER_2K"))
    )
    assert kinds(events) == ["AccountUpdate", "TierUpdate"]
    assert events[1].per_business and events[1].tier.limit == 2_000 and events[1].event == "UPGRADE"


@pytest.mark.parametrize(
    "value",
    [
        {"event": "ACCOUNT_RESTRICTION", "restriction_info": "RESTRICTED_BIZ_INITIATED_MESSAGING"},
        {"event": "ACCOUNT_RESTRICTION", "restriction_info": [{"restriction_type": "R", "expiration": {"at": 1}}]},
        {"event": "ACCOUNT_RESTRICTION", "restriction_info": ["R"]},
        {"event": 42.5},
        {"event": "DISABLED_UPDATE", "ban_info": ["DISABLE"]},
        "ACCOUNT_RESTRICTION",
    ],
)
def test_malformed_account_update_is_unknown(value: Any) -> None:
    event = one(wb.change("account_update", value))
    assert isinstance(event, Unknown) and event.reason and event.field == "account_update"


# ---------------------------------------------------------------------------------------------
# User preferences, templates, unknown fields
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "stops", "resumes"), [("stop", True, False), ("STOP", True, False),
                                                         ("resume", False, True), ("signup", False, True)])  # fmt: skip
def test_user_preferences(value: str, stops: bool, resumes: bool) -> None:
    event = one(wb.user_preference_change("15551230001", value, timestamp=1_731_705_721))
    assert isinstance(event, UserPreference)
    assert event.kind == "user_preference"
    assert (event.wa_id, event.category, event.timestamp) == ("15551230001", "marketing_messages", 1_731_705_721.0)
    assert (event.stops_marketing, event.resumes_marketing) == (stops, resumes)
    assert event.phone_number_id == wb.PHONE_NUMBER_ID


def test_user_preference_without_value_is_unknown() -> None:
    value = wb.user_preference_change("1555")["value"]
    del value["user_preferences"][0]["value"]
    assert isinstance(one(wb.change("user_preferences", value)), Unknown)


@pytest.mark.parametrize(
    ("field_name", "value", "event_name"),
    [
        ("message_template_status_update", {"event": "APPROVED", "message_template_id": 1689556908129832,
                                            "message_template_name": "order", "message_template_language": "en_US",
                                            "reason": "NONE"}, "APPROVED"),
        ("message_template_quality_update", {"previous_quality_score": "GREEN", "new_quality_score": "YELLOW",
                                             "message_template_id": 1, "message_template_name": "w"}, "YELLOW"),
        ("template_category_update", {"message_template_id": 2, "new_category": "MARKETING"}, "MARKETING"),
        ("message_template_components_update", {"message_template_id": 3}, None),
    ],
)  # fmt: skip
def test_template_updates_are_kept_for_visibility(
    field_name: str, value: dict[str, Any], event_name: str | None
) -> None:
    event = one(wb.change(field_name, value))
    assert isinstance(event, TemplateUpdate)
    assert event.kind == "template" and event.event == event_name and event.raw == value
    assert event.template_id == str(value["message_template_id"])


@pytest.mark.parametrize("field_name", ["smb_message_echoes", "security", "brand_new_field", ""])
def test_unknown_fields_are_kept_without_a_reason(field_name: str) -> None:
    value = {"anything": [1, {"nested": True}]}
    event = one(wb.change(field_name, value))
    assert isinstance(event, Unknown)
    assert (event.kind, event.field, event.raw, event.reason) == ("unknown", field_name, value, "")
    assert event.waba_id == wb.WABA_ID


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        ([], "body is not an object"),
        ("x", "body is not an object"),
        ({}, "no entry list"),
        ({"entry": {"id": "1"}}, "no entry list"),
        ({"entry": ["x"]}, "entry is not an object"),
        ({"entry": [{"id": "1"}]}, "no changes list"),
        ({"entry": [{"id": "1", "changes": [5]}]}, "change is not an object"),
        ({"entry": [{"id": "1", "changes": [{"field": 5, "value": {}}]}]}, ""),
    ],
)
def test_envelope_of_the_wrong_shape_gives_unknown(body: Any, reason_part: str) -> None:
    events = parse_webhook(body)
    assert kinds(events) == ["Unknown"]
    assert reason_part in events[0].reason


def test_empty_entry_list_and_empty_changes_give_nothing() -> None:
    assert parse_webhook({"object": "whatsapp_business_account", "entry": []}) == []
    assert parse_webhook(wb.batch(wb.entry())) == []


def test_events_are_frozen() -> None:
    event = one(wb.inbound_text_change("1", "x"))
    with pytest.raises(AttributeError):
        event.wa_id = "2"


# ---------------------------------------------------------------------------------------------
# Batches and change ids
# ---------------------------------------------------------------------------------------------
def _mixed_batch() -> dict[str, Any]:
    return wb.batch(
        wb.entry(
            wb.inbound_text_change("1001", "hi", message_id="wamid.in1"),
            wb.status_change("wamid.o1", "delivered", "1002"),
            wb.phone_tier_change("TIER_10K", old_limit="TIER_1K"),
            waba_id="waba-a",
        ),
        wb.entry(
            wb.business_tier_change(-1),
            wb.account_restriction_change(1_700_000_000),
            wb.user_preference_change("1003"),
            wb.change("calls", {"calls": []}),
            waba_id="waba-b",
        ),
        wb.entry(wb.quality_change("FLAGGED"), wb.change("message_template_status_update", {"event": "APPROVED"})),
    )


def test_batch_with_many_entries_and_changes_keeps_order_and_scope() -> None:
    events = parse_webhook(_mixed_batch())
    assert kinds(events) == ["InboundMessage", "StatusUpdate", "TierUpdate", "TierUpdate", "AccountUpdate",
                             "UserPreference", "Unknown", "QualityUpdate", "TemplateUpdate"]  # fmt: skip
    assert [e.waba_id for e in events[:4]] == ["waba-a", "waba-a", "waba-a", "waba-b"]
    assert len({e.change_id for e in events}) == len(events)
    assert len({e.event_id for e in events}) == len(events)


def test_large_batch_of_statuses() -> None:
    statuses = [wb.status_object(f"wamid.{i}", "delivered", f"1555{i:06d}") for i in range(500)]
    changes = [wb.statuses_change(statuses[i : i + 50]) for i in range(0, 500, 50)]
    entries = [wb.entry(*changes[i : i + 2], waba_id=f"w{i}") for i in range(0, 10, 2)]
    events = parse_webhook(wb.batch(*entries))
    assert len(events) == 500 and all(isinstance(e, StatusUpdate) for e in events)
    assert [e.wamid for e in events] == [f"wamid.{i}" for i in range(500)]
    assert len({e.event_id for e in events}) == 500


def _reorder(value: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: _reorder(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(item) for item in value]
    return value


def test_change_ids_survive_reserialisation_and_redelivery_in_another_batch() -> None:
    body = _mixed_batch()
    original = [e.change_id for e in parse_webhook(body)]
    pretty = json.dumps(_reorder(body), indent=4, ensure_ascii=True).encode()
    assert [e.change_id for e in parse_webhook_bytes(pretty)] == original
    # the platform redelivers one change alone, in a batch of its own
    lone = wb.batch(wb.entry(copy.deepcopy(body["entry"][1]["changes"][2]), waba_id="waba-b"))
    assert parse_webhook(lone)[0].change_id == original[5]


def test_change_ids_differ_by_entry_and_by_content() -> None:
    change = wb.status_change("wamid.x", "read", "1555")
    assert change_id("waba-a", change) == change_id("waba-a", copy.deepcopy(change))
    assert change_id("waba-a", change) != change_id("waba-b", change)
    other = copy.deepcopy(change)
    other["value"]["statuses"][0]["status"] = "delivered"
    assert change_id("waba-a", change) != change_id("waba-a", other)
    assert len(change_id("waba-a", change)) == 64


def test_change_id_of_values_orjson_cannot_encode_is_still_stable() -> None:
    odd = {"big": 2**80, 3: "int key", "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}

    def deep() -> Any:
        tree: Any = 1
        for _ in range(600):  # far beyond orjson's nesting limit and Python's recursion limit
            tree = {"d": [tree]}
        return tree

    assert change_id("e", deep()) == change_id("e", deep())
    for value in (odd, {"x": float("nan")}, {"s": "\udc80"}):
        assert change_id("e", value) == change_id("e", copy.deepcopy(value))
    assert change_id("e", {"big": 2**80}) != change_id("e", {"big": 2**81})


# ---------------------------------------------------------------------------------------------
# Raw bytes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"entry": [], "x": "\xc3"}', "UTF-8"),
        (b'{"object": "whatsapp_business_account", "entry": [{"id": "1", "chan', "JSON"),
        (b"", "JSON"),
        (b"NaN", "JSON"),
        (b"[]", "JSON object, got an array"),
        (b'"text"', "got a string"),
        (b"null", "got null"),
        (b"12", "got a number"),
        (b'{"object": "whatsapp_business_account"}', "entry"),
        (b'{"entry": {}}', "entry"),
    ],
)
def test_load_body_rejects_what_is_not_a_webhook(raw: bytes, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        load_body(raw)
    with pytest.raises(WebhookError):
        parse_webhook_bytes(raw)


def test_truncating_a_signed_body_anywhere_gives_webhook_error_or_events() -> None:
    raw = wb.signed(wb.inbound_text_change("1555", "héllo ✓")).body
    for cut in range(len(raw)):
        with pytest.raises(WebhookError):
            parse_webhook_bytes(raw[:cut])
    assert kinds(parse_webhook_bytes(raw)) == ["InboundMessage"]


def test_five_megabyte_body_parses() -> None:
    statuses = [
        wb.status_object(f"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI{i:010d}", "read", f"{i:012d}") for i in range(18_000)
    ]
    raw = wb.serialize(wb.body(wb.statuses_change(statuses)))
    assert len(raw) > 5_000_000
    events = parse_webhook_bytes(memoryview(raw))
    assert len(events) == 18_000 and events[-1].recipient_id == f"{17_999:012d}"


def test_bytes_and_dict_paths_agree() -> None:
    body = _mixed_batch()
    assert parse_webhook_bytes(wb.serialize(body)) == parse_webhook(body)
    assert parse_webhook_bytes(bytearray(wb.serialize(body))) == parse_webhook(body)
