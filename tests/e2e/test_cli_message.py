"""``tiergate message send|import|show|list|cancel`` against a real ``tiergate serve``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.cli_server import Served, against, running_serve

SENDER = "106540352242922"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with running_serve(tmp_path_factory.mktemp("serve")) as s:
        with s.client() as c:
            r = c.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                            "tier": "TIER_1K"})
            assert r.status_code == 201, r.text
        yield s


def message(served: Served, *args: str) -> tuple[int, str, str]:
    return against(served, "message", *args)


def test_send_show_and_list(served: Served) -> None:
    rc, out, err = message(served, "send", "+5511911110001", "--sender", SENDER, "--template", "order_update",
                           "--param", "Ana", "--param", "#42", "--category", "UTILITY", "--json")
    assert rc == 0, err
    sent = json.loads(out)
    assert sent["to"] == "5511911110001" and sent["category"] == "UTILITY"
    # The server's dispatcher sends it in real time, and its sandbox reports it delivered 2 s later
    # (read 60 s later, if at all). Wait for delivered: listing by a state it is about to leave
    # ("sent") failed whenever the CLI calls in between took longer than those 2 s.
    state = ""
    for _ in range(150):
        rc, out, err = message(served, "show", sent["id"])
        state = out.split()[1].rstrip(":") if rc == 0 and out.startswith(sent["id"]) else ""
        if state in ("delivered", "read"):
            break
        time.sleep(0.1)
    assert state in ("delivered", "read"), out
    assert "platform id: wamid." in out and "queued" in out and "sent" in out  # the history, in order
    rc, out, _ = message(served, "list", "--state", state)
    assert rc == 0 and sent["id"] in out


def test_import_queues_the_good_lines_and_names_the_bad_ones(served: Served, tmp_path: Path) -> None:
    later = time.time() + 3600
    lines = [
        json.dumps({"sender": SENDER, "to": "+5511922220001", "template": {"name": "x"}, "category": "UTILITY"}),
        "{not json",
        "",
        json.dumps({"sender": SENDER, "to": "+1234", "template": {"name": "x"}}),
        json.dumps({"sender": SENDER, "to": "+5511922220002", "template": {"name": "x"}, "not_before": later}),
        json.dumps([1, 2]),
    ]
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rc, out, err = message(served, "import", str(path))
    assert rc == 0, err
    assert out.startswith("2 queued, 3 refused")
    assert "line 2: not JSON" in out and "line 4:" in out and "line 6: not a JSON object" in out
    rc, out, _ = message(served, "list", "--state", "queued", "--json")
    [waiting] = [m for m in json.loads(out) if m["to"] == "5511922220002"]
    rc, out, err = message(served, "cancel", waiting["id"])
    assert rc == 0 and out.startswith(f"{waiting['id']} canceled: canceled through the API"), (out, err)
    rc, _, err = message(served, "cancel", waiting["id"])
    assert rc == 2 and "is canceled: only a queued or held message can be canceled" in err


def test_mistakes_are_one_clear_error(served: Served, tmp_path: Path) -> None:
    rc, _, err = message(served, "send", "+5511911110001", "--sender", SENDER)
    assert rc == 2 and "give --template NAME or --text TEXT" in err
    rc, _, err = message(served, "send", "+5511911110001", "--sender", "nope", "--template", "x")
    assert rc == 2 and "the server refused: unknown sender 'nope'" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sender": SENDER, "to": "+1", "template": {"name": "x"}}) + "\n")
    rc, out, err = message(served, "import", str(bad))
    assert rc == 2 and "0 queued, 1 refused" in out and "line 1:" in out, (out, err)
    rc, _, err = message(served, "import", str(tmp_path / "missing.jsonl"))
    assert rc == 2 and "cannot read" in err
    shape = tmp_path / "shape.jsonl"
    shape.write_text(json.dumps({"sender": SENDER, "to": "+5511911110001", "template": {"name": "x"}, "x": 1}) + "\n")
    rc, out, _ = message(served, "import", str(shape))
    assert rc == 2 and "line 1: messages.0.x" in out
    rc, _, err = message(served, "show", "msg_nope")
    assert rc == 2 and "not found" in err
