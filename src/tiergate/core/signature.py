"""The platform's webhook signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``.

Pure (stdlib hmac only); verification compares in constant time so a forger learns nothing from timing.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def _key(app_secret: bytes | str) -> bytes:
    key = app_secret.encode("utf-8") if isinstance(app_secret, str) else bytes(app_secret)
    if not key:
        raise ValueError("the app secret is empty")
    return key


def sign(app_secret: bytes | str, body: bytes) -> str:
    """The header value the platform sends for ``body``: ``sha256=`` and 64 lower-case hex digits."""
    return _PREFIX + hmac.new(_key(app_secret), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: bytes | str, body: bytes, header: str | bytes | None) -> bool:
    """True when ``header`` is the signature of ``body``; False when missing, malformed or wrong.

    An empty app secret never verifies: anyone could sign with it.
    """
    if not header or not app_secret:
        return False
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return False
    header = header.strip()
    if header[: len(_PREFIX)].lower() != _PREFIX:
        return False
    given = header[len(_PREFIX) :].lower().encode("ascii", "replace")
    expected = hmac.new(_key(app_secret), body, hashlib.sha256).hexdigest().encode("ascii")
    return hmac.compare_digest(given, expected)
