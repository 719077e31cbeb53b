"""OpenAPI description of device authentication (loaded by EnergyConfig.ready).

drf-spectacular calls this extension for every operation whose view authenticates with
`DeviceKeyAuthentication` (device actions of the mixed viewsets included: it asks the view for
its authenticators per action), which both names the requirement on the operation and defines
the schemes under components.securitySchemes. Operations must not override `auth=` with these
names: an override skips the extension, and the schema then references a scheme it never defines.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

DEVICE_KEY = "deviceKey"
DEVICE_SIGNATURE = "deviceSignature"


class DeviceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "energy.api.authentication.DeviceKeyAuthentication"
    name = [DEVICE_KEY, DEVICE_SIGNATURE]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Device-Key",
                "description": "The meter's or gateway's key (a UUID), shown once when the device is "
                "created or its key rotated. Unknown key: 401.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Signature",
                "description": "hex(HMAC-SHA256(device_secret, raw request body)), a `sha256=` prefix "
                "accepted; checked whenever sent, required when the device has `require_signature`. "
                "A bad or missing-but-required signature: 403. It signs one body, so paste it here "
                "only for the body you send.",
            },
        ]

    def get_security_requirement(self, auto_schema):
        # Either the key alone (devices without require_signature) or the key and a signature.
        return [{DEVICE_KEY: []}, {DEVICE_KEY: [], DEVICE_SIGNATURE: []}]
