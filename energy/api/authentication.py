"""Device authentication: `X-Device-Key` names a meter or gateway; `X-Signature` proves the body.

`X-Signature` is hex(HMAC-SHA256(device_secret, raw body)), optionally prefixed `sha256=`
(GitHub's form), compared in constant time. It is checked whenever sent, and required when
the device has `require_signature` set.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from rest_framework import authentication, exceptions

from energy import services

SIGNATURE_PREFIX = "sha256="


def signature_is_valid(*, secret: str, body: bytes, signature: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    # Compare bytes: compare_digest raises TypeError on non-ASCII str, and headers may carry any.
    return hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace"))


class DeviceKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates devices; requests without `X-Device-Key` fall through to OAuth2."""

    def authenticate(self, request):
        raw_key = request.headers.get("X-Device-Key")
        if raw_key is None:
            return None
        try:
            device_key = uuid.UUID(raw_key.strip())
        except ValueError:
            raise exceptions.AuthenticationFailed("X-Device-Key must be a UUID.") from None
        device = services.device_for_key(device_key=device_key)
        if device is None:
            raise exceptions.AuthenticationFailed("Unknown or disabled device key.")
        signature = request.headers.get("X-Signature")
        if signature is None:
            if device.require_signature:
                raise exceptions.PermissionDenied("This device must sign its requests with X-Signature.")
        else:
            signature = signature.strip()
            if signature.lower().startswith(SIGNATURE_PREFIX):
                signature = signature[len(SIGNATURE_PREFIX) :]
            if len(signature) != 64:
                raise exceptions.PermissionDenied("X-Signature must be 64 hex characters (HMAC-SHA256).")
            if not signature_is_valid(secret=device.device_secret, body=request.body, signature=signature):
                raise exceptions.PermissionDenied("X-Signature does not match the request body.")
        return (None, device)

    def authenticate_header(self, request) -> str:
        return 'DeviceKey header="X-Device-Key"'
