"""X-Hub-Signature-256: HMAC-SHA256 of the raw body with the app secret, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fakes.webhook_bodies import APP_SECRET, inbound_text_change, signed

from tiergate.core.signature import SIGNATURE_HEADER, sign, verify_signature

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def test_sign_matches_a_reference_hmac() -> None:
    expected = hmac.new(b"secret", BODY, hashlib.sha256).hexdigest()
    assert sign("secret", BODY) == "sha256=" + expected
    assert sign(b"secret", BODY) == sign("secret", BODY)
    assert sign(bytearray(b"secret"), BODY) == sign("secret", BODY)  # type: ignore[arg-type]


def test_known_vector() -> None:
    # RFC 4231 test case 2
    digest = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign("Jefe", b"what do ya want for nothing?") == "sha256=" + digest


def test_verify_accepts_the_right_signature_in_any_case_and_with_spaces() -> None:
    header = sign("secret", BODY)
    assert verify_signature("secret", BODY, header)
    assert verify_signature(b"secret", BODY, header.encode())
    assert verify_signature("secret", BODY, "SHA256=" + header[7:].upper())
    assert verify_signature("secret", BODY, f"  {header}\n")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        sign("other-secret", BODY),
        sign("secret", BODY + b" "),
        sign("secret", BODY)[7:],  # no prefix
        sign("secret", BODY)[:-1],  # truncated
        sign("secret", BODY) + "0",
        "sha256=" + "é" * 64,
        b"sha256=\xff\xfe",
    ],
)
def test_verify_rejects_missing_malformed_or_wrong_signatures(header: str | bytes | None) -> None:
    assert not verify_signature("secret", BODY, header)


def test_an_empty_secret_never_verifies_and_cannot_sign() -> None:
    assert not verify_signature("", BODY, sign("x", BODY))
    assert not verify_signature(b"", BODY, "sha256=" + hmac.new(b"", BODY, hashlib.sha256).hexdigest())
    with pytest.raises(ValueError, match="empty"):
        sign("", BODY)


def test_fake_bodies_are_signed_with_the_test_secret() -> None:
    request = signed(inbound_text_change("1555", "hi"))
    assert request.headers[SIGNATURE_HEADER] == request.signature
    assert verify_signature(APP_SECRET, request.body, request.signature)
    assert not verify_signature("wrong", request.body, request.signature)
    assert request.headers["Content-Type"] == "application/json"


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=512), st.integers(min_value=0, max_value=511))
def test_any_flipped_byte_breaks_the_signature(secret: bytes, body: bytes, position: int) -> None:
    header = sign(secret, body)
    assert verify_signature(secret, body, header)
    if body:
        index = position % len(body)
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        assert not verify_signature(secret, tampered, header)
