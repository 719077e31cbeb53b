"""Conformance vectors of the JsonLogic and Standard Webhooks specifications (tests/conformance/)."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime

import pytest

from automations import jsonlogic, signing
from tests.conformance import vectors

JSONLOGIC = [case for case in vectors("jsonlogic-tests.json") if not isinstance(case, str)]
VECTORS = vectors("standard-webhooks-vectors.json")["cases"]


def test_the_jsonlogic_file_has_every_case():
    assert len(JSONLOGIC) == 277


@pytest.mark.parametrize(("rule", "data", "expected"), JSONLOGIC, ids=[json.dumps(c[0])[:60] for c in JSONLOGIC])
@pytest.mark.parametrize("engine", ["library", "compiled"])
def test_jsonlogic_conformance(rule, data, expected, engine):
    """Both paths: the library's apply() (dry runs) and the engine's compiled closures."""
    got = jsonlogic.evaluate(rule, data) if engine == "library" else jsonlogic.compile_logic(rule)(data)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
        assert type(got) is type(expected) or {type(got), type(expected)} <= {int, float}


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_standard_webhooks_vectors(case):
    valid = signing.verify(
        secret=case["secret"], body=case["payload"].encode(), headers=case["headers"], now=case["now"]
    )
    assert valid is case["expected_valid"]


@pytest.mark.parametrize("case", [c for c in VECTORS if c["expected_valid"]], ids=lambda c: c["name"])
def test_signing_reproduces_the_known_answers(case):
    headers = case["headers"]
    ours = signing.sign(
        secret=case["secret"],
        msg_id=headers["webhook-id"],
        timestamp=int(headers["webhook-timestamp"]),
        body=case["payload"].encode(),
    )
    assert ours in headers["webhook-signature"].split(" ")


def test_signing_agrees_with_the_standardwebhooks_package():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    secret = signing.secret_generate()
    body = b'{"type":"alert.triggered","data":{"x":1}}'
    ours = signing.headers(secret=secret, msg_id="msg_1", body=body, timestamp=1_700_000_000)
    theirs = standardwebhooks.Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(1_700_000_000, tz=UTC), body.decode()
    )
    assert ours["webhook-signature"] == theirs
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24


@pytest.mark.parametrize(
    ("logic", "message"),
    [
        ({"frobnicate": [1, 2]}, "unknown operator 'frobnicate'"),
        ({">": [1]}, "operator '>' takes 2 argument(s), got 1"),
        ({"and": [{"==": [1, 1, 1]}]}, "operator '==' takes 2 argument(s), got 3 at and[0].=="),
        ({">": [1, 2], "<": [1, 2]}, "exactly one key"),
        ({"log": ["x"]}, "unknown operator 'log'"),
    ],
)
def test_validate_names_the_problem(logic, message):
    with pytest.raises(jsonlogic.JsonLogicError) as excinfo:
        jsonlogic.validate(logic)
    assert message in str(excinfo.value)


def test_validate_accepts_the_seed_rule():
    jsonlogic.validate({">": [{"var": ["event.total_power", 0]}, 5000]})
