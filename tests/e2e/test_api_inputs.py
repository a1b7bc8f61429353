"""What a client may send and what it is told: times as ISO 8601 or epoch seconds, categories in any
case, CSV row errors that point at the right row, a recipient's consent (imported with its own
time) and service windows, and validation messages that name the real problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.e2e.conftest import T0, Harness

from tiergate.api.schemas import parse_timestamp

SENDER = "106540352242922"


async def register(h: Harness) -> None:
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": "TIER_250"})
    assert r.status_code == 201, r.text


async def post_csv(h: Harness, csv_text: bytes, **form: str) -> Any:
    """A CSV campaign through the form, for template ``x`` of the test's sender."""
    return await h.client.post("/v1/campaigns/csv", files={"file": ("r.csv", csv_text)},
                               data={"sender": SENDER, "template": "x", **form})


@given(seconds=st.integers(min_value=0, max_value=4_000_000_000), minutes=st.integers(min_value=-14 * 60,
                                                                                     max_value=14 * 60))
def test_an_iso_time_with_any_offset_is_the_same_instant_as_its_epoch_seconds(seconds: int, minutes: int) -> None:
    instant = datetime.fromtimestamp(seconds, UTC).astimezone(timezone(timedelta(minutes=minutes)))
    assert parse_timestamp(instant.isoformat()) == seconds
    assert parse_timestamp(f" {seconds} ") == seconds
    assert parse_timestamp(float(seconds)) == seconds  # a number passes through


@pytest.mark.parametrize("text", ["2026-12-01", "2026-12-01T09:00:00", "tomorrow", "12:00Z", "", True, False])
def test_a_time_without_an_offset_or_not_a_time_is_refused_with_an_example(text: str | bool) -> None:
    with pytest.raises(ValueError, match=r"offset|ISO 8601"):
        parse_timestamp(text)


async def test_times_may_be_iso_8601_in_json_and_in_the_csv_form(harness: Harness) -> None:
    await register(harness)
    c = harness.client
    later = datetime.fromtimestamp(T0 + 3 * 86_400, UTC)
    r = await c.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "x"},
                                           "expires_at": later.isoformat()})
    assert r.status_code == 202, r.text
    assert r.json()["expires_at"] == T0 + 3 * 86_400
    r = await c.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "x"}, "recipients": ["+5511911113333"],
        "start_at": later.astimezone(timezone(timedelta(hours=-3))).isoformat()})
    assert r.status_code == 201, r.text
    assert r.json()["start_at"] == T0 + 3 * 86_400
    r = await c.post("/v1/campaigns/csv", files={"file": ("r.csv", b"to\n+5511911114444\n")},
                     data={"sender": SENDER, "template": "x", "start_at": later.isoformat().replace("+00:00", "Z")})
    assert r.status_code == 201, r.text
    assert r.json()["start_at"] == T0 + 3 * 86_400


@pytest.mark.parametrize(("url", "body", "field"), [
    ("/v1/messages", {"to": "+5511911112222", "template": {"name": "x"}, "expires_at": "2026-12-01"}, "expires_at"),
    ("/v1/messages", {"to": "+5511911112222", "template": {"name": "x"}, "not_before": "nan"}, "not_before"),
    ("/v1/campaigns", {"template": {"name": "x"}, "recipients": ["+5511911112222"], "deadline": "soon"}, "deadline"),
])
async def test_a_bad_time_is_a_422_naming_the_field_and_nothing_is_queued(
        harness: Harness, url: str, body: dict[str, Any], field: str) -> None:
    await register(harness)
    r = await harness.client.post(url, json={"sender": SENDER, **body})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and "Value error" not in error["message"], error
    assert await harness.gateway.store.count_by_state() == {}


async def test_a_bad_time_in_the_csv_form_is_a_422_and_no_campaign_is_made(harness: Harness) -> None:
    await register(harness)
    r = await harness.client.post("/v1/campaigns/csv", files={"file": ("r.csv", b"to\n+5511911114444\n")},
                                  data={"sender": SENDER, "template": "x", "start_at": "next monday"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "start_at", r.text
    store = harness.gateway.store
    assert [c for t in await store.list_tenants() for c in await store.list_campaigns(t.id)] == []


async def test_categories_are_taken_in_any_case(harness: Harness) -> None:
    await register(harness)
    r = await harness.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222",
                                                        "template": {"name": "x"}, "category": " utility"})
    assert r.status_code == 202 and r.json()["category"] == "UTILITY", r.text
    r = await harness.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "x"},
                                                         "recipients": ["+5511911113333"], "category": "Marketing"})
    assert r.status_code == 201 and r.json()["category"] == "MARKETING", r.text


async def test_csv_row_errors_point_at_their_own_rows_even_after_rows_refused_earlier(harness: Harness) -> None:
    await register(harness)
    csv = b"to,param1\n+5511911110001,Ana,extra\n+5511911110002,Bea\nbad,Carl\n+5511911110002,Dan\n"
    r = await post_csv(harness, csv)
    assert r.status_code == 201, r.text
    errors = r.json()["row_errors"]
    assert [(e["row"], e["error"].split(":")[0].split(" ")[0]) for e in errors] == [
        (1, "wrong"), (3, "to"), (4, "duplicate")], errors
    assert r.json()["total"] == 1


async def test_a_csv_with_no_valid_row_is_a_422_naming_a_row(harness: Harness) -> None:
    await register(harness)
    for csv in (b"to\nbad\nworse\n", b"to\n+5511911110001,x\n+5511911110002,y\n"):
        r = await post_csv(harness, csv)
        assert r.status_code == 422, r.text
        assert "no valid recipients: row 1" in r.json()["error"]["message"], r.text


async def test_a_union_error_names_what_is_wrong_in_the_object_not_that_it_is_no_string(harness: Harness) -> None:
    await register(harness)
    r = await harness.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "x"},
                                                         "recipients": ["+5511911110001", {"to": "+5511911110002",
                                                                                           "params": ["x"]}]})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["field"] == "recipients.1.params" and "Extra inputs" in error["message"], error


async def test_consent_can_be_imported_with_its_time_and_read_back_with_the_service_windows(harness: Harness) -> None:
    await register(harness)
    c = harness.client
    to = "+5511911112222"
    r = await c.post(f"/v1/recipients/{to}/opt-in",
                     json={"source": "crm import", "opted_in_at": "2025-06-01T12:00:00Z"})
    assert r.status_code == 204, r.text
    r = await c.get(f"/v1/recipients/{to}")
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["to"] == "5511911112222" and seen["opted_out_at"] is None and seen["marketing_allowed"]
    assert seen["opted_in_at"] == datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()
    assert seen["service_windows"] == []

    await harness.gateway.store.record_inbound(SENDER, "5511911112222", T0 - 3600)
    r = await c.post(f"/v1/recipients/{to}/opt-out", json={})
    assert r.status_code == 204
    seen = (await c.get(f"/v1/recipients/{to}")).json()
    assert seen["opted_out_at"] == T0 and not seen["marketing_allowed"]
    assert seen["service_windows"] == [{"sender": SENDER, "last_inbound_at": T0 - 3600,
                                        "open_until": T0 - 3600 + 86_400, "open": True}]


async def test_consent_in_the_future_or_a_bad_number_is_refused(harness: Harness) -> None:
    c = harness.client
    r = await c.post("/v1/recipients/+5511911112222/opt-in", json={"opted_in_at": T0 + 86_400})
    assert r.status_code == 422 and r.json()["error"]["field"] == "opted_in_at", r.text
    r = await c.get("/v1/recipients/not-a-number")
    assert r.status_code == 422 and r.json()["error"]["field"] == "to", r.text
    seen = (await c.get("/v1/recipients/+5511911112222")).json()
    assert seen["opted_in_at"] is None and seen["marketing_allowed"]


async def test_the_enqueued_metric_counts_every_way_in_once(harness: Harness) -> None:
    """Single messages, campaigns and the drop-in endpoint; not a repeated idempotency key, not a
    campaign row refused for an opt-out."""
    from tiergate.service.metrics import METRICS

    def enqueued() -> float:
        return METRICS.registry.get_sample_value("tiergate_enqueued_total") or 0.0

    await register(harness)
    c = harness.client
    before = enqueued()
    message = {"sender": SENDER, "to": "+5511911110001", "template": {"name": "x"}, "idempotency_key": "k"}
    assert (await c.post("/v1/messages", json=message)).status_code == 202
    harness.clock.advance(1.0)  # a repeat comes later (the original's time tells them apart)
    assert (await c.post("/v1/messages", json=message)).status_code == 202  # the original again
    assert (await c.post("/v1/recipients/+5511911110003/opt-out")).status_code == 204
    r = await c.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "x"},
                                            "recipients": ["+5511911110002", "+5511911110003", "+5511911110004"]})
    assert r.status_code == 201 and r.json()["counts"] == {"queued": 2, "rejected": 1}, r.text
    r = await c.post(f"/graph/v24.0/{SENDER}/messages", json={
        "messaging_product": "whatsapp", "to": "5511911110005", "type": "template",
        "template": {"name": "x", "language": {"code": "en_US"}}})
    assert r.status_code == 200, r.text
    assert enqueued() - before == 1 + 2 + 1


async def test_messages_page_newest_first_with_before(harness: Harness) -> None:
    await register(harness)
    c = harness.client
    ids = []
    for i in range(5):
        r = await c.post("/v1/messages", json={"sender": SENDER, "to": f"+551191111000{i}", "template": {"name": "x"}})
        ids.append(r.json()["id"])
        harness.clock.advance(0.01)
    first = (await c.get("/v1/messages", params={"limit": 2})).json()
    second = (await c.get("/v1/messages", params={"limit": 2, "before": first[-1]["id"]})).json()
    last = (await c.get("/v1/messages", params={"limit": 2, "before": second[-1]["id"]})).json()
    assert [m["id"] for m in first + second + last] == ids[::-1]
    r = await c.get("/v1/messages", params={"before": "x" * 65})
    assert r.status_code == 422 and r.json()["error"]["field"] == "before", r.text
    mine = (await c.get("/v1/messages", params={"to": "+55 11 91111-0003"})).json()  # any way of writing it
    assert [m["id"] for m in mine] == [ids[3]]
    r = await c.get("/v1/messages", params={"to": "+1234"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "to", r.text


async def test_opt_ins_are_imported_in_bulk_with_their_own_times_and_row_errors(harness: Harness) -> None:
    c = harness.client
    r = await c.post("/v1/recipients/+5511911110002/opt-out")  # withdrawn earlier than the import says
    assert r.status_code == 204
    harness.clock.advance(10)
    r = await c.post("/v1/recipients/opt-ins", json={"source": "crm", "recipients": [
        "+5511911110001",
        {"to": "+5511911110002", "opted_in_at": "2025-06-01T12:00:00Z", "source": "paper form"},
        "not a number",
        {"to": "+5511911110003", "opted_in_at": T0 + 86_400},
        {"to": "+5511911110004"},
    ]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["imported"] == 3 and [e["row"] for e in out["row_errors"]] == [3, 4], out
    assert "in the future" in out["row_errors"][1]["error"]
    first = (await c.get("/v1/recipients/+5511911110001")).json()
    assert first["opted_in_at"] == T0 + 10 and first["marketing_allowed"]
    second = (await c.get("/v1/recipients/+5511911110002")).json()
    assert second["opted_in_at"] == datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()
    assert second["opted_out_at"] == T0 and not second["marketing_allowed"]  # the later opt-out stands
    r = await c.post("/v1/recipients/opt-ins", json={"recipients": ["bad", "worse"]})
    assert r.status_code == 422 and "no valid recipients: row 1" in r.json()["error"]["message"], r.text
    r = await c.post("/v1/recipients/opt-ins", json={"recipients": []})
    assert r.status_code == 422, r.text
    r = await c.post("/v1/recipients/opt-ins", json={"recipients": ["", "+5511911110009"]})
    assert r.status_code == 200 and r.json()["imported"] == 1 and r.json()["row_errors"][0]["row"] == 1, r.text
    r = await c.post("/v1/recipients/opt-ins", json={"recipients": ["+5511911110009"], "opted_in_at": False})
    assert r.status_code == 422 and r.json()["error"]["field"] == "opted_in_at", r.text


async def test_the_drop_in_answers_every_refusal_in_metas_shape(harness: Harness) -> None:
    """An app written for Meta parses Meta's error object: an unknown Graph path, a method the path
    does not take and a body over the limit get it too, with what tiergate relays named."""
    await register(harness)
    c = harness.client
    for r in (await c.get(f"/graph/v24.0/{SENDER}/message_templates/extra"),
              await c.put(f"/graph/v24.0/{SENDER}/messages")):
        error = r.json()["error"]
        assert r.status_code in (404, 405) and error["code"] == 100 and error["type"] == "OAuthException"
        assert "tenant's own phone numbers and WABAs" in error["error_data"]["details"]
    r = await c.post(f"/graph/v24.0/{SENDER}/messages", content=b"{" + b" " * 2_100_000 + b"}",
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == 100
    assert "over 2000000 bytes" in r.json()["error"]["error_data"]["details"]
    r = await c.get("/v1/nope")  # tiergate's own API keeps its own shape
    assert r.status_code == 404 and r.json() == {"error": {"message": "Not Found"}}


async def test_a_csv_posted_to_the_campaigns_address_is_taken_as_the_upload(harness: Harness) -> None:
    """``POST /v1/campaigns`` takes the audience as JSON or as a file; a form there is the CSV upload."""
    await register(harness)
    csv = b"to,param1\n+5511911110001,Ana\nbad,Bea\n+5511911110002,Cy\n"
    for path in ("/v1/campaigns", "/v1/campaigns/"):
        r = await harness.client.post(path, files={"file": ("r.csv", csv)}, data={"sender": SENDER, "template": "x"})
        assert r.status_code == 201, r.text
        assert r.json()["total"] == 2 and [e["row"] for e in r.json()["row_errors"]] == [2], r.text
    r = await harness.client.post("/v1/campaigns", files={"file": ("r.csv", csv)}, data={"template": "x"})
    assert r.status_code == 422 and "sender" in r.text, r.text  # the form's own checks
    r = await harness.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "x"},
                                                         "recipients": ["+5511911113333"]})
    assert r.status_code == 201, r.text  # JSON as before


async def test_a_body_that_is_not_a_json_object_is_told_what_to_send(harness: Harness) -> None:
    """A form (``curl -d`` without a Content-Type), text, an array or nothing: the answer says to send
    a JSON object, not that "Input should be a valid dictionary"."""
    await register(harness)
    c = harness.client
    r = await c.post("/v1/messages", content=b'{"sender": "x"}',
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415, r.text
    assert "Content-Type: application/json" in r.json()["error"]["message"], r.text
    assert "application/x-www-form-urlencoded" in r.json()["error"]["message"], r.text
    r = await c.post("/v1/messages", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "text/plain" in r.json()["error"]["message"], r.text
    for body in (b"[1]", b'"text"', b"3"):
        r = await c.post("/v1/messages", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["message"] == "the body must be a JSON object", r.text
    r = await c.post("/v1/senders")
    assert r.status_code == 422 and "JSON object is required" in r.json()["error"]["message"], r.text
    r = await c.post("/v1/messages", json={"sender": SENDER, "to": "+5511911110009", "template": {"name": "x"}})
    assert r.status_code == 202, r.text  # a JSON object as before


async def test_a_template_name_or_language_the_platform_would_not_know_is_a_422_everywhere(harness: Harness) -> None:
    """The platform's template names are lowercase letters, digits and underscores: 'Launch-Promo' or
    a JSON object typed into the CSV form's name would only fail at the platform, one message at a time."""
    h = harness
    await register(h)
    one = {"sender": SENDER, "to": "+5511911110001"}
    cases = [
        ("/v1/messages", {**one, "template": {"name": "Launch-Promo"}}, "template.name"),
        ("/v1/messages", {**one, "template": {"name": "launch_promo", "language": "english"}}, "template.language"),
        ("/v1/campaigns", {"sender": SENDER, "template": {"name": "launch promo"}, "recipients": ["+5511911110001"]},
         "template.name"),
    ]
    for path, body, field in cases:
        r = await h.client.post(path, json=body)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == field and "e.g." in error["message"], error
    for form, field in (({"template": '{"name":"launch_promo"}'}, "template"),
                        ({"template": "launch_promo", "language": "en-US"}, "language")):
        r = await h.client.post("/v1/campaigns", files={"file": ("r.csv", b"to\n+5511911114444\n")},
                                data={"sender": SENDER, **form})
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert await h.gateway.store.count_by_state() == {}
    ok = await h.client.post("/v1/messages", json={**one, "template": {"name": "launch_promo_2", "language": "pt_BR"}})
    assert ok.status_code == 202, ok.text


# Found by a review that probed a running server: each was a 2xx that kept a mistake, or a 500.
@pytest.mark.parametrize(("method", "url", "body", "expect"), [
    ("post", "/v1/campaigns", {"sender": SENDER, "template": {"name": "x"}, "recipients": ["+5511900000001"],
                               "start_at": 3e11, "quiet_hours": [21, 8]}, "3000-01-01"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511900000001", "template": {"name": "x"},
                              "expires_at": 1e30}, "3000-01-01"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511900000001", "template": {"name": "x"},
                              "not_before": -1e300}, "1970-01-01"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511900000001", "template": {"name": "x"},
                              "category": "SERVICE"}, "SERVICE is for free-form"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511900000001",
                              "template": {"name": "x", "language": {"code": "!!"}}}, "language code"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511900000001",
                              "template": {"name": "x", "language": {"code": "en", "x": 1}}}, "unknown language"),
    ("post", "/v1/senders", {"phone_number_id": "p9", "display_phone_number": "+15550783882", "tier": True}, "tier"),
    ("post", "/v1/senders", {"phone_number_id": "p9", "display_phone_number": "+15550783882",
                             "tier": "TIER_99999999999999999999999999M"}, "not a tier"),
    ("post", "/v1/senders", {"phone_number_id": "p9", "display_phone_number": "+15550783882", "tier": -5},
     "not a tier"),
    ("patch", f"/v1/senders/{SENDER}", {"tier": True}, "tier"),
    ("patch", f"/v1/senders/{SENDER}", {"quality": "purple"}, "quality"),
    ("patch", f"/v1/senders/{SENDER}", {"tier": "TIER_1K", "quality": "purple"}, "quality"),
    ("patch", f"/v1/senders/{SENDER}", {"tier": "TIER_1K", "resume": ["nonexistent"]}, "not one of this sender"),
    ("post", "/v1/campaigns", {"sender": SENDER, "template": {"name": "x"}, "recipients": ["+5511900000001"],
                               "spread_days": 3}, "only with pacing 'spread'"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511912345678;ext=123", "template": {"name": "x"}},
     "extension"),
    ("post", "/v1/messages", {"sender": SENDER, "to": "+5511900000001", "template": {"name": "x"},
                              "metadata": {"note": "x" * 20_000}}, "at most 16,384"),
])
async def test_what_a_review_found_accepted_is_refused_with_a_message(harness: Harness, method: str, url: str,
                                                                     body: dict[str, Any], expect: str) -> None:
    await register(harness)
    before = (await harness.client.get(f"/v1/senders/{SENDER}")).json()
    campaigns = (await harness.client.get("/v1/campaigns")).json()
    r = await getattr(harness.client, method)(url, json=body)
    assert r.status_code == 422, r.text
    assert expect in r.text
    after = (await harness.client.get(f"/v1/senders/{SENDER}")).json()
    assert (after["tier"], after["quality"]) == (before["tier"], before["quality"]), "a refused PATCH changes nothing"
    assert (await harness.client.get("/v1/campaigns")).json() == campaigns, "no campaign half-written"


async def test_the_csv_form_refuses_an_unknown_category_and_a_far_start(harness: Harness) -> None:
    await register(harness)
    for data, expect in (({"category": "spam"}, "category"), ({"start_at": "300000000000"}, "3000-01-01")):
        r = await harness.client.post("/v1/campaigns/csv", files={"file": ("r.csv", b"to\n+5511911114444\n")},
                                      data={"sender": SENDER, "template": "x", **data})
        assert r.status_code == 422, r.text
        assert expect in r.text
    r = await harness.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511900000001",
                                                        "template": {"name": "x", "language": {"code": "pt_BR"}}})
    assert r.status_code == 202, r.text  # the object form, well made, still goes


@pytest.mark.parametrize(("csv_text", "expect"), [
    (b'to,param1\n+5511900000011,"Ana\n+5511900000012,Bob\n', "unexpected end of data"),  # a quote left open
    (b"to,to\n+5511900000011,+5511900000012\n", "appears more than once"),
    (b"to,param1,parameters_note\n+5511900000011,Ana,x\n", "parameters_note"),
    (b"to,param1,param3\n+5511900000011,Ana,x\n", "param2 is missing"),
])
async def test_a_csv_that_would_send_the_wrong_words_is_refused(harness: Harness, csv_text: bytes,
                                                                expect: str) -> None:
    await register(harness)
    r = await post_csv(harness, csv_text)
    assert r.status_code == 422, r.text
    assert expect in r.text
    assert (await harness.client.get("/v1/campaigns")).json() == []


async def test_csv_parameters_go_by_their_number_and_an_empty_one_is_that_rows_error(harness: Harness) -> None:
    await register(harness)
    csv_text = b"to,param2,param1\n+5511900000011,SECOND,FIRST\n+5511900000012,,Bob\n+5511900000013,,\n"
    r = await post_csv(harness, csv_text)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["total"] == 2 and [e["row"] for e in out["row_errors"]] == [2], out
    assert "empty param2" in out["row_errors"][0]["error"]
    messages = (await harness.client.get("/v1/messages", params={"campaign_id": out["id"]})).json()
    bodies = {m["to"]: (await harness.gateway.store.get_message(m["id"])).body for m in messages}
    params = bodies["5511900000011"]["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["FIRST", "SECOND"]
    assert "components" not in bodies["5511900000013"]["template"]  # no parameters at all: none sent


@pytest.mark.parametrize(("message", "code"), [
    ({"type": "template", "template": "launch_promo"}, 131008),
    ({"type": "template", "template": {"language": {"code": "en_US"}}}, 131008),
    ({"type": "template", "template": None}, 131008),
    ({"type": "template", "template": {"name": "Bad Name!", "language": {"code": "en_US"}}}, 132001),
    ({"type": "template", "template": {"name": "x", "language": {"code": "en_US"}, "components": "x"}}, 131009),
    ({"type": "text", "text": {}}, 131008),
    ({"type": "text", "text": "hello"}, 131008),
    ({"type": "image", "image": {}}, 131008),
    ({"type": "bogus", "bogus": {}}, 100),
    ({"type": "template", "to": 5511900000201, "template": {"name": "x", "language": {"code": "en_US"}}}, 100),
])
async def test_the_dropin_refuses_at_once_what_the_platform_would(harness: Harness, message: dict[str, Any],
                                                                 code: int) -> None:
    await register(harness)
    body = {"messaging_product": "whatsapp", "to": "5511900000201", **message}
    r = await harness.client.post(f"/graph/v24.0/{SENDER}/messages", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code, r.text
    assert (await harness.client.get("/v1/messages")).json() == [], "nothing queued"


@pytest.mark.parametrize("url", ["http://exa mple.com/", "http://example.com/\r\nX-Injected: 1", "http://example.com/a\tb"])
async def test_a_webhook_url_with_a_space_or_control_character_is_refused(harness: Harness, url: str) -> None:
    r = await harness.client.put("/v1/webhook", json={"url": url})
    assert r.status_code == 422, r.text
    assert "control character" in r.text or "not an http" in r.text


async def test_a_csv_whose_lines_end_with_cr_alone_is_read(harness: Harness) -> None:
    await register(harness)
    cr_only = b"to\r+5511911114444\r+5511911114445\r"
    r = await post_csv(harness, cr_only)
    assert r.status_code == 201, r.text
    assert r.json()["total"] == 2


async def test_a_campaign_whose_messages_all_ended_cannot_be_canceled(harness: Harness) -> None:
    await register(harness)
    r = await harness.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "x"},
                                                         "recipients": ["+5511911114444"]})
    campaign = r.json()["id"]
    await harness.run(30)
    r = await harness.client.post(f"/v1/campaigns/{campaign}/cancel")
    assert r.status_code == 409, r.text
    assert "done" in r.text
    assert (await harness.client.get(f"/v1/campaigns/{campaign}")).json()["state"] != "canceled"
