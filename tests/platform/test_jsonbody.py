"""Strict JSON: the cheap duplicate-key check agrees with Python's exact parser on any JSON, and
every parser of the API (DRF's parser setting) refuses duplicate keys and non-UTF-8 charsets."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy.models import Site
from joulepoint.platform.jsonbody import DuplicateKey, charset_is_utf8, json_loads_strict

# Strings with colons, quotes, escapes and non-ASCII, as keys and values.
text = st.text(alphabet=st.sampled_from(list('ab:"\\\\é\\n{}[],x')), max_size=6)
scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    scalars | text, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20
)


def _exact_has_duplicates(raw: bytes) -> bool:
    def hook(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise DuplicateKey(keys[0])
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except DuplicateKey:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(values)
def test_unique_keys_parse_as_orjson_does(value):
    raw = orjson.dumps(value)
    assert json_loads_strict(raw) == orjson.loads(raw)


@settings(max_examples=300, deadline=None)
@given(values, text, scalars | text, scalars | text, st.booleans())
def test_a_repeated_key_is_always_found(value, key, first, second, escape):
    """Splice a duplicated member into the JSON of any value: refused, whatever else it holds."""
    name = orjson.dumps(key)
    if escape and key:
        name = b'"' + "".join(f"\\u{ord(c):04x}" for c in key).encode() + b'"'  # same key, escaped
    member = name + b":" + orjson.dumps(first) + b", " + orjson.dumps(key) + b" :" + orjson.dumps(second)
    raw = b'{"outer": ' + orjson.dumps(value) + b", " + member + b"}"
    assert _exact_has_duplicates(raw)
    with pytest.raises(DuplicateKey) as caught:
        json_loads_strict(raw)
    assert caught.value.key == key


def test_charsets():
    assert charset_is_utf8("application/json")
    assert charset_is_utf8("application/json; charset=UTF-8")
    assert charset_is_utf8('application/json; charset="utf8"')
    assert not charset_is_utf8("application/json; charset=utf-16")
    assert not charset_is_utf8("application/json;charset=iso-8859-1")


@pytest.mark.django_db
def test_api_parser_refuses_duplicate_keys_naming_the_key(api):
    raw = b'{"name": "A", "timezone": "UTC", "name": "B"}'
    response = api.post("/api/energy/sites/", data=raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "Duplicate key 'name'" in response.json()["detail"]
    assert not Site.objects.exists()


@pytest.mark.django_db
def test_api_parser_refuses_another_charset_with_415(api):
    raw = '{"name": "A", "timezone": "UTC"}'.encode("utf-16")
    response = api.post("/api/energy/sites/", data=raw, content_type="application/json; charset=utf-16")
    assert response.status_code == 415, response.content
    assert "UTF-8" in response.json()["detail"]
    assert not Site.objects.exists()


@pytest.mark.django_db
def test_api_parser_still_takes_utf8_json(api):
    response = api.post(
        "/api/energy/sites/", data=b'{"name": "A", "timezone": "UTC"}', content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 201, response.content
