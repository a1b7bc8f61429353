"""The database failing under the API: disk full answers 503 (Retry-After, nothing stored, a retry
works once there is room), on the API and on the drop-in; a bug answers a JSON 500."""

from __future__ import annotations

from pathlib import Path

import apsw
import httpx
import pytest
from tests.e2e.conftest import make_harness

from tiergate.api.app import create_app

SENDER = "106540352242922"


def messages(n: int, base: int = 0) -> list[dict[str, object]]:
    return [{"sender": SENDER, "to": f"+5511990{base + i:06d}", "category": "UTILITY",
             "template": {"name": "receipt", "language": "en_US"}} for i in range(n)]


async def test_a_full_disk_is_503_with_nothing_stored_and_a_retry_works(tmp_path: Path) -> None:
    h = await make_harness(tmp_path)
    try:
        r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881"})
        assert r.status_code == 201, r.text
        conn = h.gateway.store._conn  # the database may grow no more: what a full disk does to SQLite
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

        r = await h.client.post("/v1/messages/batch", json={"messages": messages(1_000)})
        assert r.status_code == 503, r.text
        said = r.json()["error"]["message"]
        assert said.startswith("the database is unavailable just now (")
        assert said.endswith("the request did not go in: retry")
        assert "full" in said and r.headers["retry-after"] == "2"
        assert await h.gateway.store.count_by_state() == {}

        # Another process holds the write lock past the wait: the drop-in answers in Meta's shape.
        other = apsw.Connection(str(tmp_path / "e2e.db"))
        other.execute("BEGIN IMMEDIATE")
        conn.set_busy_timeout(20)
        try:
            dropin = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json={
                "messaging_product": "whatsapp", "to": "+5511990999999", "type": "template",
                "template": {"name": "receipt", "language": {"code": "en_US"}}})
        finally:
            other.execute("ROLLBACK")
            other.close()
            conn.set_busy_timeout(30_000)
        assert dropin.status_code == 503, dropin.text
        error = dropin.json()["error"]
        assert (error["code"], error["message"]) == (2, "(#2) Service temporarily unavailable")
        assert error["error_data"]["details"].startswith("the database is unavailable just now (database is locked)")
        assert dropin.headers["retry-after"] == "2"

        conn.execute("PRAGMA max_page_count = 1073741823")  # room again: the same request goes in
        r = await h.client.post("/v1/messages/batch", json={"messages": messages(1_000)})
        assert r.status_code == 202, r.text
        assert await h.gateway.store.count_by_state() == {"queued": 1_000}
    finally:
        await h.client.aclose()
        await h.gateway.close()


async def test_a_bug_is_a_json_500_and_still_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = await make_harness(tmp_path)
    try:
        async def broken(*_: object, **__: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(h.gateway.store, "list_senders", broken)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(h.gateway), raise_app_exceptions=False),
                                   base_url="http://tiergate.test", headers={"Authorization": f"Bearer {h.key}"})
        async with client:
            r = await client.get("/v1/senders")
        assert r.status_code == 500 and r.json() == {"error": {"message": "internal error: the server logged it"}}
        with pytest.raises(RuntimeError, match="a bug"):  # re-raised after the answer: the server logs it
            await h.client.get("/v1/senders")
    finally:
        await h.client.aclose()
        await h.gateway.close()
