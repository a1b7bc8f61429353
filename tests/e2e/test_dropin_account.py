"""The drop-in beyond sending: an app moved to tiergate (its base URL changed, nothing else) still
reads its number and reads and writes its business profile and templates, on its own account only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from tests.e2e.conftest import Harness, cloud_harness
from tests.fakes.fake_graph import FakeGraph

SENDER = "106540352242922"
WABA = "102290129340398"
TOKEN = "e2e-account-token"
TEMPLATE = {"name": "order_update", "language": "en_US", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Your order {{1}} is on its way"}]}


async def register(h: Harness) -> None:
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "portfolio_id": WABA, "tier": "TIER_10K"})
    assert r.status_code == 201, r.text


async def test_a_number_its_profile_and_its_templates_through_the_drop_in(harness: Harness) -> None:
    await register(harness)
    c = harness.client
    r = await c.get(f"/graph/v24.0/{SENDER}", params={"fields": "messaging_limit_tier,quality_rating"})
    assert r.status_code == 200 and r.json() == {"messaging_limit_tier": "TIER_10K", "quality_rating": "GREEN",
                                                 "id": SENDER}, r.text
    r = await c.post(f"/graph/v24.0/{SENDER}/whatsapp_business_profile",
                     json={"messaging_product": "whatsapp", "about": "Open 9-5"})
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    r = await c.get(f"/graph/v24.0/{SENDER}/whatsapp_business_profile", params={"fields": "about"})
    assert r.json() == {"data": [{"messaging_product": "whatsapp", "about": "Open 9-5"}]}
    r = await c.post(f"/graph/v24.0/{WABA}/message_templates", json=TEMPLATE)
    assert r.status_code == 200 and r.json()["status"] == "APPROVED", r.text
    r = await c.get(f"/graph/v24.0/{WABA}/message_templates", params={"name": "order_update"})
    assert [t["category"] for t in r.json()["data"]] == ["UTILITY"]
    r = await c.post(f"/graph/v24.0/{WABA}/message_templates", json={**TEMPLATE, "category": "PROMO"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100  # the platform's refusal, as it gave it
    r = await c.delete(f"/graph/v24.0/{WABA}/message_templates", params={"name": "order_update"})
    assert r.json() == {"success": True}
    r = await c.get(f"/graph/v24.0/{WABA}/phone_numbers",
                    params={"fields": "display_phone_number,messaging_limit_tier"})
    assert r.json()["data"] == [{"display_phone_number": "15550783881", "messaging_limit_tier": "TIER_10K",
                                 "id": SENDER}], r.text
    r = await c.get(f"/graph/v24.0/{WABA}", params={"fields": "name,currency"})
    assert r.status_code == 200 and r.json() == {"name": "Sandbox Business", "currency": "USD", "id": WABA}, r.text
    r = await c.post(f"/graph/v24.0/{SENDER}/register", json={"messaging_product": "whatsapp", "pin": "123456"})
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    r = await c.post(f"/graph/v24.0/{SENDER}/register", json={"messaging_product": "whatsapp", "pin": "12"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100, r.text


async def test_an_account_that_is_not_the_tenants_does_not_exist(harness: Harness) -> None:
    """Another tenant's number or WABA, or any id tiergate does not know, gets Meta's answer for a
    missing object: no relay, and nothing about whether it exists."""
    await register(harness)
    other = await harness.gateway.auth.create_tenant("other")
    _, key = await harness.gateway.auth.create_key(other.id)
    theirs = {"Authorization": f"Bearer {key}"}
    for method, path in (("GET", f"/graph/v24.0/{SENDER}"), ("GET", f"/graph/v24.0/{WABA}/message_templates"),
                         ("POST", f"/graph/v24.0/{SENDER}/whatsapp_business_profile"),
                         ("DELETE", f"/graph/v24.0/{WABA}/message_templates?name=x")):
        r = await harness.client.request(method, path, headers=theirs, json={"messaging_product": "whatsapp"})
        assert r.status_code == 400 and "does not exist" in r.json()["error"]["error_data"]["details"], (method, path)
    for edge in ("..", "%2E%2E", "Message-Templates"):  # never up to the Graph root (?ids= reads any object)
        r = await harness.client.get(f"/graph/v24.0/{SENDER}/{edge}", params={"ids": "999000111"})
        assert r.status_code in (400, 404) and r.json()["error"]["code"] == 100, (edge, r.text)
    r = await harness.client.get("/graph/v24.0/999000111/message_templates")  # no one's
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    r = await harness.client.get(f"/graph/v24.0/{SENDER}/message_templates/extra")  # no such Graph path at all
    assert r.status_code == 404 and "tenant's own phone numbers and WABAs" in r.json()["error"]["error_data"]["details"]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[Harness, FakeGraph]]:
    async with cloud_harness(tmp_path, TOKEN) as (h, graph):
        graph.set_phone_number(SENDER, messaging_limit_tier="TIER_10K")
        yield h, graph


async def test_the_cloud_client_relays_the_query_without_the_apps_token(cloud: tuple[Harness, FakeGraph]) -> None:
    """Over real HTTP: the path and query go to the platform as the app wrote them, with tiergate's
    token; an ``access_token`` the app put in the query for Meta is not passed on, nor ``ids``."""
    h, graph = cloud
    await register(h)
    r = await h.client.post(f"/graph/v24.0/{WABA}/message_templates?access_token=apps-own-token", json=TEMPLATE)
    assert r.status_code == 200, r.text
    r = await h.client.get(f"/graph/v24.0/{WABA}/message_templates",
                           params={"fields": "name,category", "limit": "10", "access_token": "apps-own-token",
                                   "ids": "999000111"})
    assert r.status_code == 200 and [t["name"] for t in r.json()["data"]] == ["order_update"], r.text
    assert graph.relayed == [("POST", f"{WABA}/message_templates", ""),
                             ("GET", f"{WABA}/message_templates", "fields=name,category&limit=10")]
    r = await h.client.get(f"/graph/v24.0/{SENDER}", params={"fields": "messaging_limit_tier"})
    assert r.json() == {"messaging_limit_tier": "TIER_10K", "id": SENDER}, r.text


def otp_to(to: str) -> dict:
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": "login_code", "language": {"code": "en_US"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "123456"}]}]}}


async def test_a_template_is_sent_as_the_category_the_platform_has_for_it(harness: Harness) -> None:
    """A drop-in message names its template only. Once tiergate has seen the template's category (a
    template created or listed through it, or the platform's template_category_update webhook), a
    one-time code is queued as authentication (first in line, no marketing cap, no marketing
    pause), not as the marketing tiergate must assume for a template it does not know."""
    await register(harness)
    c = harness.client

    async def category_of_next_send(to: str, **headers: str) -> str:
        r = await c.post(f"/graph/v24.0/{SENDER}/messages", json=otp_to(to), headers=headers)
        assert r.status_code == 200, r.text
        return (await c.get(f"/v1/messages/{r.json()['messages'][0]['id']}")).json()["category"]

    assert await category_of_next_send("+5511911110001") == "MARKETING"  # unknown: the safe guess
    harness.provider.nodes.templates[WABA] = [{"name": "login_code", "language": "en_US", "status": "APPROVED",
                                               "category": "AUTHENTICATION", "id": "1"}]  # made in Meta's own UI
    r = await c.get(f"/graph/v24.0/{WABA}/message_templates", params={"fields": "name,language,category"})
    assert r.status_code == 200 and len(r.json()["data"]) == 1
    assert await category_of_next_send("+5511911110002") == "AUTHENTICATION"
    assert await category_of_next_send("+5511911110003", **{"X-Tiergate-Category": "utility"}) == "UTILITY"
    r = await c.post("/v1/messages", json={"sender": SENDER, "to": "+5511911110004",
                                           "template": {"name": "login_code", "language": "en_US"}})
    assert r.status_code == 202 and r.json()["category"] == "AUTHENTICATION", r.text

    # The platform recategorizes it: what goes from now on goes as marketing.
    change = {"object": "whatsapp_business_account", "entry": [{"id": WABA, "time": 1767571300, "changes": [{
        "field": "template_category_update",
        "value": {"message_template_id": 1, "message_template_name": "login_code",
                  "message_template_language": "en_US", "new_category": "MARKETING"}}]}]}
    assert (await harness.webhook(orjson.dumps(change))).status_code == 200
    assert await category_of_next_send("+5511911110005") == "MARKETING"
    r = await c.post(f"/graph/v24.0/{WABA}/message_templates", json={**TEMPLATE, "name": "receipt"})
    assert r.status_code == 200
    r = await c.post("/v1/messages", json={"sender": SENDER, "to": "+5511911110006",
                                           "template": {"name": "receipt", "language": "en_US"}})
    assert r.json()["category"] == "UTILITY"  # learned when it was created through tiergate


async def test_a_template_status_webhook_teaches_its_category(harness: Harness) -> None:
    """An approval names the template's category (``message_template_category``): learned as well."""
    await register(harness)
    approved = {"object": "whatsapp_business_account", "entry": [{"id": WABA, "time": 1767571300, "changes": [{
        "field": "message_template_status_update",
        "value": {"event": "APPROVED", "message_template_id": 7, "message_template_name": "login_code",
                  "message_template_language": "en_US", "reason": "NONE",
                  "message_template_category": "AUTHENTICATION"}}]}]}
    assert (await harness.webhook(orjson.dumps(approved))).status_code == 200
    r = await harness.client.post(f"/graph/v24.0/{SENDER}/messages", json=otp_to("+5511911110001"))
    message = (await harness.client.get(f"/v1/messages/{r.json()['messages'][0]['id']}")).json()
    assert message["category"] == "AUTHENTICATION"


async def test_templates_are_listed_and_set_per_tenant(harness: Harness) -> None:
    """``/v1/templates``: what tiergate knows, and a category told for a template it has not seen;
    each tenant has its own."""
    await register(harness)
    c = harness.client
    assert (await c.get("/v1/templates")).json() == []
    r = await c.put("/v1/templates", json={"name": "login_code", "language": "en_US", "category": "authentication"})
    assert r.status_code == 200 and r.json()["category"] == "AUTHENTICATION", r.text
    r = await c.post("/v1/messages", json={"sender": SENDER, "to": "+5511911110001",
                                           "template": {"name": "login_code", "language": "en_US"}})
    assert r.json()["category"] == "AUTHENTICATION"
    assert [t["name"] for t in (await c.get("/v1/templates")).json()] == ["login_code"]
    for bad, field in (({"name": "x", "language": "en_US", "category": "SERVICE"}, "category"),
                       ({"name": "Bad Name", "language": "en_US", "category": "UTILITY"}, "name"),
                       ({"name": "x", "language": "en_US", "category": "UTILITY", "extra": 1}, "extra")):
        r = await c.put("/v1/templates", json=bad)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    other = await harness.gateway.auth.create_tenant("other")
    _, key = await harness.gateway.auth.create_key(other.id)
    assert (await c.get("/v1/templates", headers={"Authorization": f"Bearer {key}"})).json() == []
