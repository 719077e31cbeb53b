"""Request signatures: `X-Signature` is hex(HMAC-SHA256(device_secret, raw body)), optionally
prefixed `sha256=` (GitHub's form), compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def signature_is_valid(*, secret: str, body: bytes, signature: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    # Compare bytes: compare_digest raises TypeError on non-ASCII str, and headers may carry any.
    return hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace"))
