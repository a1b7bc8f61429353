"""``tiergate webhook set|status|off`` against a real ``tiergate serve``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.cli_server import Served, against


def webhook(served: Served, *args: str) -> tuple[int, str, str]:
    return against(served, "webhook", *args)


def test_set_status_and_off(served: Served, tmp_path: Path) -> None:
    rc, out, err = webhook(served, "status")
    assert rc == 0 and out == "webhooks are not forwarded", (out, err)
    rc, out, err = webhook(served, "set", "http://127.0.0.1:9/hook")
    assert rc == 0 and "forwarding to http://127.0.0.1:9/hook: 0 delivered, 0 waiting, 0 failed" in out, err
    assert "signing secret (shown once, keep it):" in out
    rc, out, _ = webhook(served, "set", "http://127.0.0.1:9/hook", "--secret", "the-app-secret-0123")
    assert rc == 0 and "signing secret" not in out
    rc, out, _ = webhook(served, "status", "--json")
    assert rc == 0 and '"url": "http://127.0.0.1:9/hook"' in out and '"secret": null' in out
    rc, out, _ = webhook(served, "test")  # nothing listens on port 9
    assert rc == 1 and out.startswith("your app at http://127.0.0.1:9/hook did not take it:"), out
    rc, out, _ = webhook(served, "off")
    assert rc == 0 and out.startswith("webhooks are not forwarded")
    rc, _, err = webhook(served, "test")
    assert rc == 2 and "no webhook URL is set" in err


@pytest.mark.parametrize(("args", "said"), [
    (["set", "ftp://x/hook"], "the server refused: url: 'ftp://x/hook' is not an http:// or https:// URL"),
    (["set", "http://127.0.0.1:9/hook", "--secret", "short"], "the server refused: secret:"),
])
def test_mistakes_are_one_clear_error(served: Served, args: list[str], said: str) -> None:
    rc, _, err = webhook(served, *args)
    assert rc == 2 and err.startswith("error:") and said in err, err
