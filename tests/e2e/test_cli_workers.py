"""``tiergate workers``: the dispatchers and the scopes each holds, from the store or a running server."""

from __future__ import annotations

import json
import time

from tests.e2e.cli_server import Served, against, clean, register, tiergate


def test_the_running_server_holds_the_scope_of_a_new_sender(served: Served) -> None:
    register(served, "500000000000001", tier="TIER_1K")
    deadline = time.monotonic() + 30
    while True:  # the server takes the new scope at its next renewal (a registration asks for one)
        code, out, err = against(served, "workers", "--json")
        assert code == 0, err
        view = json.loads(out)
        if view["workers"] and view["workers"][0]["scopes"] == ["sender:500000000000001"]:
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert view["share"] == 1 and view["free"] == [] and len(view["workers"]) == 1
    assert view["workers"][0]["alive_until"] > time.time()

    code, out, err = against(served, "workers")
    assert code == 0, err
    assert "share: 1 scope(s) each" in out and "sender:500000000000001" in out and "more" in out, out
    # The same picture from the store, as an operator on the database host sees it.
    done = tiergate("workers", "--database-url", served.database_url)
    assert done.returncode == 0, done.stderr
    assert view["workers"][0]["id"] in clean(done.stdout) and "sender:500000000000001" in clean(done.stdout)


def test_workers_need_an_admin_key(served: Served) -> None:
    with served.client() as c:
        tenant = c.post("/v1/tenants", json={"name": "plain"}).json()
        plain = c.post("/v1/keys", json={"tenant_id": tenant["id"]}).json()["key"]
    done = tiergate("workers", "--url", served.url, "--api-key", plain)
    assert done.returncode == 2 and "admin" in clean(done.stderr), done.stderr
    assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr
