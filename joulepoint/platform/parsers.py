"""The API's JSON parser (DEFAULT_PARSER_CLASSES): DRF's, made strict (joulepoint.platform.jsonbody)."""

from __future__ import annotations

import orjson
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from joulepoint.platform.jsonbody import DuplicateKey, charset_is_utf8, json_loads_strict


class StrictJSONParser(JSONParser):
    """application/json in UTF-8 only (415 otherwise, rather than reading UTF-16 as UTF-8), and
    no object naming a key twice (400 naming the key)."""

    def parse(self, stream, media_type=None, parser_context=None):
        if media_type and not charset_is_utf8(media_type):
            raise exceptions.UnsupportedMediaType(media_type, detail="JSON bodies must be UTF-8 (charset=utf-8).")
        raw = stream.read() if stream is not None else b""
        try:
            return json_loads_strict(raw)
        except DuplicateKey as exc:
            raise exceptions.ParseError(str(exc)) from None
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
