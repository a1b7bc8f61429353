"""Fuzzing the intake parsers: phone numbers, CSV files, template payloads.

Each parser either returns something the rest of tiergate can rely on or refuses with its own
4xx error (``IntakeError`` / ``ApiError``) naming the field: never another exception (that would
be a 500), whatever bytes, types, sizes or nesting it is given.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiergate.api.app import ApiError, parse_recipients_csv
from tiergate.core.shapes import validate_send_body
from tiergate.service.intake import IntakeError, build_body, normalize_phone

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
             | st.floats(allow_nan=True) | st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=5)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=25)

digits = st.text(alphabet="0123456789", min_size=0, max_size=18)
phone_like = (
    digits
    | digits.map(lambda d: "+" + d)
    | st.from_regex(r"\A\+?[0-9 ()\-.]{0,25}\Z")
    | st.sampled_from(["+5511911112222", "5511911112222", " +44 7700 900123 ", "+1 (555) 078-3881", "+999123",
                       "12", "", "+", "++44", "0044 7700 900123", "+44 7700 900123 ext. 4", "١٢٣٤٥٦٧٨٩٠"])
)


@FAST
@given(raw=phone_like | st.text(max_size=40) | st.integers() | json_value)
def test_a_phone_number_is_e164_digits_or_a_clear_error(raw: Any) -> None:
    try:
        wa_id = normalize_phone(raw)
    except IntakeError as exc:
        assert exc.status == 422 and exc.field == "to" and str(exc)
        return
    assert wa_id.isascii() and wa_id.isdigit() and len(wa_id) <= 15, wa_id  # E.164: at most 15 digits
    assert phonenumbers.is_valid_number(phonenumbers.parse("+" + wa_id))
    assert normalize_phone(wa_id) == wa_id == normalize_phone("+" + wa_id)  # a fixed point


@FAST
@given(raw=st.binary(max_size=2_000))
def test_csv_from_arbitrary_bytes(raw: bytes) -> None:
    _csv_contract(raw, max_rows=50)


cell = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20) | phone_like
header = st.lists(st.sampled_from(["to", "phone", "TO", " to ", "param1", "param2", "name", "", "x"]),
                  min_size=0, max_size=5)


@FAST
@given(head=header, rows=st.lists(st.lists(cell, max_size=6), max_size=60), bom=st.booleans(),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_csv_from_csv_like_text(head: list[str], rows: list[list[str]], bom: bool, newline: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(head)
    writer.writerows(rows)
    raw = out.getvalue().encode()
    _csv_contract((b"\xef\xbb\xbf" if bom else b"") + raw, max_rows=50)


def _csv_contract(raw: bytes, max_rows: int) -> None:
    try:
        rows, errors = parse_recipients_csv(raw, max_rows)
    except ApiError as exc:
        assert exc.status in (413, 422) and exc.field == "file" and exc.message
        return
    assert len(rows) + len(errors) <= max_rows
    for row in rows:
        assert isinstance(row["to"], str) and row["to"].strip() == row["to"] and row["to"]
        for comp in row.get("components", []):
            assert all(isinstance(p["text"], str) and p["text"] for p in comp["parameters"])
    for error in errors:
        assert isinstance(error["row"], int) and error["row"] >= 1 and error["error"]


def test_csv_limits_and_encodings() -> None:
    many = ("to\n" + "".join(f"+55119{i:08d}\n" for i in range(11))).encode()
    try:
        parse_recipients_csv(many, 10)
        raise AssertionError("11 rows passed a limit of 10")
    except ApiError as exc:
        assert exc.status == 413
    for bad, why in ((b"to\n\xff\xfe+5511911112222\n", "UTF-8"), (b"name\nbob\n", "'to' column"), (b"", "'to' column")):
        try:
            parse_recipients_csv(bad, 10)
            raise AssertionError(f"accepted {bad!r}")
        except ApiError as exc:
            assert exc.status == 422 and why in exc.message, exc.message
    rows, errors = parse_recipients_csv(b"\xef\xbb\xbfTO,param1\n+5511911112222,Ana\n,\n+1,x,extra\n", 10)
    assert rows == [{"to": "+5511911112222", "row": 1, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}]
    assert [e["row"] for e in errors] == [2, 3]


@FAST
@given(template=json_value | st.fixed_dictionaries({"name": json_value}, optional={
    "language": json_value, "components": json_value}), text=st.none() | st.text(max_size=5000))
def test_template_payloads_build_a_valid_body_or_refuse(template: Any, text: str | None) -> None:
    tpl = template if isinstance(template, dict) else None
    try:
        kind, body = build_body("5511911112222", tpl, text)
    except IntakeError as exc:
        assert exc.status == 422 and exc.field and str(exc)
        return
    except (AttributeError, TypeError) as exc:  # pragma: no cover - the bug this test exists for
        raise AssertionError(f"template {tpl!r} crashed intake: {exc!r}") from None
    assert validate_send_body(body) is None, body
    assert kind == body["type"]
