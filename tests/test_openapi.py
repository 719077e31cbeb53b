"""The OpenAPI schema (/api/schema/, rendered at /api/docs/) can be used as it stands: every
security scheme an operation names is defined, device endpoints can be authorized from Swagger
UI with their key, and the description promises only what is served."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

DEVICE_OPERATIONS = {
    ("post", "/api/energy/energy-data/"),
    ("post", "/api/energy/energy-data/bulk/"),
    ("post", "/api/energy/protection/events/"),
    ("get", "/api/energy/devices/commands/"),
    ("post", "/api/energy/devices/commands/{id}/ack/"),
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_every_security_scheme_an_operation_names_is_defined(schema):
    defined = set(schema["components"]["securitySchemes"])
    named = {
        name
        for *_, operation in operations(schema)
        for requirement in operation.get("security", [])
        for name in requirement
    }
    assert named, "operations name their security"
    assert named <= defined, f"referenced but not defined: {sorted(named - defined)}"


def test_device_endpoints_take_the_device_key_and_document_the_signature(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["deviceKey"] | {"description": None} == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Device-Key",
        "description": None,
    }
    assert (schemes["deviceSignature"]["type"], schemes["deviceSignature"]["in"]) == ("apiKey", "header")
    assert schemes["deviceSignature"]["name"] == "X-Signature"
    assert "HMAC-SHA256" in schemes["deviceSignature"]["description"]
    device = {
        (method, path)
        for method, path, operation in operations(schema)
        if any("deviceKey" in r for r in operation.get("security", []))
    }
    assert device == DEVICE_OPERATIONS
    for method, path, operation in operations(schema):
        if (method, path) in DEVICE_OPERATIONS:
            assert operation["security"] == [{"deviceKey": []}, {"deviceKey": [], "deviceSignature": []}]


def test_the_description_names_only_apps_that_serve_routes(schema):
    description = schema["info"]["description"].lower()
    promises = (("billing", "/api/energy/billing/"), ("mlops", "/api/ml/"), ("automations", "/api/automations/"))
    for word, prefix in promises:
        if word in description:
            served = any(path.startswith(prefix) for path in schema["paths"])
            assert served, f"the description promises {word}, which serves no route yet"


def test_swagger_ui_is_served(client):
    assert client.get("/api/docs/").status_code == 200
