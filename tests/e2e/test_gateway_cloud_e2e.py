"""Issue 3's end-to-end promise again, with the real Cloud API client over real HTTP: a fake Graph API
on 127.0.0.1 that keeps its own rolling count (tests/fakes/platform_limits.py) and refuses anything
over the tier, so it is the judge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.e2e.conftest import Harness, cloud_harness
from tests.fakes import webhook_bodies as wb
from tests.fakes.fake_graph import FakeGraph
from tests.fakes.platform_limits import PlatformLimits

SENDER = "106540352242922"
TOKEN = "e2e-cloud-token"


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[Harness, FakeGraph]]:
    async with cloud_harness(tmp_path, TOKEN, limits=PlatformLimits()) as (h, graph):
        yield h, graph


async def test_tier_250_campaign_of_300_over_real_http(cloud: tuple[Harness, FakeGraph]) -> None:
    h, graph = cloud
    graph.set_phone_number(SENDER, messaging_limit_tier="TIER_250",
                           whatsapp_business_manager_messaging_limit="TIER_250")
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": "TIER_250"})
    assert r.status_code == 201, r.text
    numbers = [f"+55119{i:08d}" for i in range(300)]
    r = await h.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "promo"},
                                                   "recipients": numbers})
    assert r.status_code == 201, r.text
    campaign = r.json()["id"]
    await h.advance(10)
    assert graph.accepted_count(SENDER) == 250, "exactly the tier's 250 reached the platform"
    waiting = (await h.client.get("/v1/messages", params={"campaign_id": campaign, "state": "queued",
                                                          "limit": 1000})).json()
    assert len(waiting) == 50
    assert all(86_000 < m["next_attempt_at"] - h.clock.now() + 10 < 86_520 for m in waiting)
    await h.advance(86_400 + 60)
    assert graph.accepted_count(SENDER) == 300
    sent = (await h.client.get("/v1/messages", params={"campaign_id": campaign, "state": "sent",
                                                       "limit": 1000})).json()
    assert len(sent) == 300 and all(m["wamid"] for m in sent)
    report = limits_report(graph)
    assert report["violations"] == 0 and report["duplicates"] == 0
    assert report["peak_by_number"][SENDER] == 250


def limits_report(graph: FakeGraph) -> dict:
    assert graph.limits is not None
    return graph.limits.report()


async def test_a_read_receipt_through_the_drop_in_goes_to_the_platform_at_once(
        cloud: tuple[Harness, FakeGraph]) -> None:
    """Marking an inbound message read (with a typing indicator) is no message: not queued, not
    counted; the platform's own answer comes back, errors included."""
    h, graph = cloud
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": "TIER_250"})
    assert r.status_code == 201, r.text
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.inbound.77",
               "typing_indicator": {"type": "text"}}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json=receipt)
    assert (r.status_code, r.json()) == (200, {"success": True})
    assert graph.read_receipts == [(SENDER, "wamid.inbound.77")]
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json={**receipt, "status": "delivered"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100  # the platform's refusal, as it gave it
    r = await h.client.post("/graph/v24.0/999000111/messages", json=receipt)  # not this tenant's number
    assert r.status_code == 400 and "unknown phone number id" in r.json()["error"]["error_data"]["details"]
    assert graph.read_receipts == [(SENDER, "wamid.inbound.77")]
    assert (await h.client.get("/v1/messages")).json() == []


async def test_a_media_upload_through_the_drop_in_reaches_the_platform_and_its_id_sends(
        cloud: tuple[Harness, FakeGraph]) -> None:
    """Upload, then send by media id: the app's usual two calls, both to tiergate's base URL. A 3 MB
    image is over the API's usual body limit; uploads get the platform's own."""
    h, graph = cloud
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": "TIER_250"})
    assert r.status_code == 201, r.text
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 12_000
    files = {"file": ("photo.png", image, "image/png")}
    form = {"messaging_product": "whatsapp", "type": "image/png"}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/media", data=form, files=files)
    assert r.status_code == 200, r.text
    media_id = r.json()["id"]
    [(number, kept_id, raw)] = graph.uploads
    assert (number, kept_id) == (SENDER, media_id) and image in raw  # relayed byte for byte
    header = {"type": "header", "parameters": [{"type": "image", "image": {"id": media_id}}]}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json={
        "messaging_product": "whatsapp", "to": "+5511911112222", "type": "template",
        "template": {"name": "new_arrivals", "language": {"code": "en"}, "components": [header]}})
    assert r.status_code == 200, r.text
    await h.advance(5)
    [sent] = graph.accepted[SENDER]
    assert sent.body["template"]["components"] == [header]
    r = await h.client.post("/graph/v24.0/999000111/media", data=form, files=files)
    assert r.status_code == 400 and "unknown phone number id" in r.json()["error"]["error_data"]["details"]
    r = await h.client.post(f"/graph/v24.0/{SENDER}/media", data=form)  # no file
    assert r.status_code == 400 and r.json()["error"]["code"] == 100

    # fetch it back as an app does: the object, then its file from the url (which wants a token)
    r = await h.client.get(f"/graph/v24.0/{media_id}")
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["id"] == media_id and found["file_size"] == len(image) and found["mime_type"] == "image/png"
    assert found["url"] == f"http://tiergate.test/graph/v24.0/{media_id}/download"  # tiergate's, not the platform's
    r = await h.client.get(found["url"])
    assert r.status_code == 200 and r.content == image and r.headers["content-type"] == "image/png"
    assert (await h.client.delete(f"/graph/v24.0/{media_id}")).json() == {"success": True}
    assert media_id not in graph.media


async def test_media_a_user_sent_can_be_fetched_by_its_tenant_only(cloud: tuple[Harness, FakeGraph]) -> None:
    h, graph = cloud
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": "TIER_250"})
    assert r.status_code == 201, r.text
    assert (await h.client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/hook"})).status_code == 200
    graph.add_media("3000000000000001", b"%PDF-1.7 receipt", "application/pdf")
    photo = {"from": "5511911112222", "id": "wamid.in.doc", "timestamp": "1767571200", "type": "document",
             "document": {"id": "3000000000000001", "mime_type": "application/pdf", "filename": "receipt.pdf"}}
    await h.webhook(wb.serialize(wb.body(wb.inbound_messages_change([photo], [("5511911112222", "Ana")],
                                                                    phone_number_id=SENDER))))
    r = await h.client.get("/graph/v24.0/3000000000000001/download")
    assert r.status_code == 200 and r.content == b"%PDF-1.7 receipt"
    graph.add_media("3000000000000002", b"not yours", "image/png")  # the platform has it; this tenant was never sent it
    for path in ("/graph/v24.0/3000000000000002", "/graph/v24.0/3000000000000002/download", "/graph/v24.0/abc"):
        r = await h.client.get(path)
        assert r.status_code == 400 and "does not exist" in r.json()["error"]["error_data"]["details"], path
    other = await h.gateway.auth.create_tenant("other")
    _, key = await h.gateway.auth.create_key(other.id)
    r = await h.client.get("/graph/v24.0/3000000000000001", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100  # another tenant's: as if it did not exist
