"""OpenAPI description of device authentication (loaded by EnergyConfig.ready)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class DeviceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "energy.api.authentication.DeviceKeyAuthentication"
    name = "deviceKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Device-Key",
            "description": "Meter or gateway key (UUID). Optionally sign the raw body: "
            "X-Signature = hex(HMAC-SHA256(device_secret, body)).",
        }
