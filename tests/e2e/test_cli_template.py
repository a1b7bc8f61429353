"""``tiergate template list|set`` against a real ``tiergate serve``: what a template is sent as."""

from __future__ import annotations

import pytest
from tests.e2e.cli_server import Served, against


def template(served: Served, *args: str) -> tuple[int, str, str]:
    return against(served, "template", *args)


def test_set_then_list(served: Served) -> None:
    rc, out, _ = template(served, "list")
    assert rc == 0 and out.startswith("no templates known yet"), out
    rc, out, err = template(served, "set", "login_code", "en_US", "authentication")
    assert rc == 0 and out == "login_code (en_US) goes as AUTHENTICATION", (out, err)
    rc, out, _ = template(served, "list")
    assert rc == 0 and "login_code" in out and "AUTHENTICATION" in out, out
    rc, out, _ = template(served, "list", "--json")
    assert rc == 0 and '"category": "AUTHENTICATION"' in out


@pytest.mark.parametrize(("args", "said"), [
    (["set", "Login Code", "en_US", "UTILITY"], "the server refused: name:"),
    (["set", "login_code", "english", "UTILITY"], "the server refused: language:"),
    (["set", "login_code", "en_US", "SERVICE"], "the server refused: category:"),
])
def test_mistakes_are_one_clear_error(served: Served, args: list[str], said: str) -> None:
    rc, _, err = template(served, *args)
    assert rc == 2 and err.startswith("error:") and said in err, err
