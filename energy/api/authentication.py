"""Device authentication: `X-Device-Key` names a meter or gateway; `X-Signature` proves the body.

`X-Signature` is hex(HMAC-SHA256(device_secret, raw body)), optionally prefixed `sha256=`
(GitHub's form), compared in constant time. It is checked whenever sent, and required when
the device has `require_signature` set.
"""

from __future__ import annotations

import uuid

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import authentication, exceptions, permissions

from energy.api.throttling import WINDOW_SECONDS, DeviceRateThrottle, device_rate_key
from energy.devices import services as devices
from energy.devices.signatures import SIGNATURE_PREFIX, signature_is_valid
from energy.models import DeviceCredential
from joulepoint.tenancy.permissions import OrganizationTokenHasScope


class DeviceKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates devices; requests without `X-Device-Key` fall through to OAuth2."""

    def authenticate(self, request):
        # META rather than request.headers: building the headers mapping parses every META key,
        # a measurable share of a device request's CPU, for two headers.
        raw_key = request.META.get("HTTP_X_DEVICE_KEY")
        if raw_key is None:
            return None
        try:
            device_key = uuid.UUID(raw_key.strip())
        except ValueError:
            raise exceptions.AuthenticationFailed("X-Device-Key must be a UUID.") from None
        device, hit = devices.device_for_key_with_hit(
            device_key=device_key, rate_key=device_rate_key(device_key), window_seconds=WINDOW_SECONDS
        )
        request.device_rate_hit = (device_key, hit)
        if device is None:
            raise exceptions.AuthenticationFailed("Unknown or disabled device key.")
        signature = request.META.get("HTTP_X_SIGNATURE")
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


class IsDevice(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, DeviceCredential):
            raise exceptions.NotAuthenticated("Devices authenticate with the X-Device-Key header.")
        return True


class DeviceWritesMixin:
    """For viewsets where devices write with their key (the actions in `device_actions`) and
    integrators read with OAuth2. Choosing per action keeps a stray X-Device-Key header from
    hiding a valid bearer token on GET."""

    device_actions: frozenset[str] = frozenset()

    @property
    def is_device_action(self) -> bool:
        # DRF picks authenticators before it sets `self.action`, so look the action up here.
        action = getattr(self, "action", None)
        if action is None and getattr(self, "request", None) is not None:
            action = self.action_map.get(self.request.method.lower())
        return action in self.device_actions

    def dangerously_get_authenticators(self):
        if self.is_device_action:
            return [DeviceKeyAuthentication()]
        return [OAuth2Authentication()]

    def dangerously_get_permissions(self):
        if self.is_device_action:
            return [IsDevice()]
        return [OrganizationTokenHasScope()]

    def perform_content_negotiation(self, request, force=False):
        # Devices are answered in JSON whatever they accept: DRF's Accept parsing is a measurable
        # share of a single reading's server CPU, and a device has nothing to choose between.
        if self.is_device_action:
            renderer = self.get_renderers()[0]
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)

    def get_throttles(self):
        if self.is_device_action:
            return [DeviceRateThrottle()]
        return super().get_throttles()
