"""Fuzzing the webhook parser: nothing a sender can put in a body makes it raise.

``parse_webhook`` must never raise for any decoded value, and the bytes entry point may raise only
``WebhookError``. Three generators: arbitrary JSON, webhook-shaped trees with arbitrary leaves under
the real field names, and real conformance payloads with one node replaced by arbitrary JSON.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pathlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiergate.core.webhooks import (
    BUSINESS_TIER_FIELDS,
    PHONE_TIER_FIELDS,
    Unknown,
    WebhookError,
    WebhookEvent,
    parse_webhook,
    parse_webhook_bytes,
)

CORPUS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "pywa-webhook-payloads"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["TIER_1K", "-1", "1700000000", "stop", "FLAGGED", "2024-01-01T00:00:00", "", "nan"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)

FIELDS = [
    "messages", "user_preferences", "phone_number_quality_update", "business_capability_update", "account_update",
    "message_template_status_update", "message_template_quality_update", "template_category_update", "calls", "x",
]  # fmt: skip
VALUE_KEYS = [
    "metadata", "contacts", "messages", "statuses", "user_preferences", "event", "old_limit", "display_phone_number",
    "restriction_info", "ban_info", "violation_info", "waba_info", "quality_rating", "quality_score",
    "message_template_id", *PHONE_TIER_FIELDS, *BUSINESS_TIER_FIELDS,
]  # fmt: skip
ITEM_KEYS = [
    "from", "id", "timestamp", "type", "text", "button", "interactive", "context", "errors", "status", "recipient_id",
    "conversation", "pricing", "wa_id", "value", "restriction_type", "expiration", "referral", "from_user_id",
]  # fmt: skip


def _shaped(keys: list[str], leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), leaves, max_size=6)


items = _shaped(ITEM_KEYS, json_values | _shaped(["body", "title", "id", "type", "details"], json_values))
values = _shaped(VALUE_KEYS, json_values | st.lists(items | json_values, max_size=3))
changes = st.fixed_dictionaries({"field": st.sampled_from(FIELDS), "value": values | json_values})
entries = st.fixed_dictionaries(
    {"id": st.text(max_size=6) | json_values, "changes": st.lists(changes, max_size=3)},
    optional={"time": json_values},
)
bodies = st.fixed_dictionaries({"object": st.just("whatsapp_business_account"), "entry": st.lists(entries, max_size=3)})


def _check(events: list[Any]) -> None:
    for event in events:
        assert isinstance(event, WebhookEvent)
        assert len(event.change_id) == 64
        if isinstance(event, Unknown):
            assert isinstance(event.reason, str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_parse_never_raises_on_arbitrary_json(value: Any) -> None:
    _check(parse_webhook(value))
    _check(parse_webhook({"entry": [value], "object": "whatsapp_business_account"}))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_parse_never_raises_on_webhook_shaped_trees(body: dict[str, Any]) -> None:
    _check(parse_webhook(body))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_bytes_entry_point_raises_only_webhook_error(raw: bytes) -> None:
    try:
        events = parse_webhook_bytes(raw)
    except WebhookError:
        return
    _check(events)


@functools.cache
def _corpus() -> list[dict[str, Any]]:
    return [body for path in sorted(CORPUS.glob("*.json")) for body in json.loads(path.read_text()).values()]


def _replace_somewhere(tree: Any, choices: st.DataObject, replacement: Any) -> Any:
    """A copy of ``tree`` with one node (chosen by hypothesis) replaced by ``replacement``."""
    if not isinstance(tree, dict | list) or not tree or choices.draw(st.booleans()):
        return replacement
    keys = list(tree) if isinstance(tree, dict) else list(range(len(tree)))
    key = choices.draw(st.sampled_from(keys))
    copy: Any = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[key] = _replace_somewhere(tree[key], choices, replacement)
    return copy


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), json_values)
def test_parse_never_raises_on_mutated_real_payloads(data: st.DataObject, replacement: Any) -> None:
    corpus = _corpus()
    assert corpus, f"conformance payloads missing under {CORPUS}"
    body = data.draw(st.sampled_from(corpus))
    mutated = _replace_somewhere(body, data, replacement)
    _check(parse_webhook(mutated))
    raw = json.dumps(mutated).encode()  # NaN/Infinity are not JSON: the bytes path must refuse them cleanly
    with contextlib.suppress(WebhookError):
        _check(parse_webhook_bytes(raw))
