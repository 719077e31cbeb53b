"""The frame protocol shared by WebSocket ingest and the MQTT bridge (docs/live.md).

A frame (one WebSocket text/binary message, or one MQTT payload) is JSON and one of:
  {"timestamp": …, "total_power": …}              one reading (the HTTP body)
  [{…}, {…}]                                       several readings (the bulk body)
  {"id": X, "readings": {…} | [{…}]}               the same with an id echoed in the ack
  {"id": X, "body": "<JSON text>", "signature": "<hex HMAC-SHA256(secret, body)>"}
                                                   signed: the HMAC covers the body string's UTF-8
A batch is all or nothing, as over HTTP. The answer to each frame is an ack
{"type": "ack", "id": X, "stored": n, "duplicates": m} or an error
{"type": "error", "id": X, "code": "...", "detail": "...", "errors": [...]}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from django.conf import settings

from energy.devices.signatures import SIGNATURE_PREFIX, signature_is_valid
from energy.models import Gateway, Meter
from joulepoint.platform.jsonbody import DuplicateKey, json_loads_strict


@dataclass
class FrameError(Exception):
    code: str
    detail: str
    id: object = None
    errors: list = field(default_factory=list)

    def as_frame(self) -> dict:
        frame = {"type": "error", "id": self.id, "code": self.code, "detail": self.detail}
        if self.errors:
            frame["errors"] = self.errors
        return frame


@dataclass
class Frame:
    """A decoded readings frame: the client's id (echoed) and its readings, not yet validated."""

    id: object
    items: list


def frame_loads(raw: bytes | str) -> object:
    if isinstance(raw, str):
        raw = raw.encode()  # the limit is in bytes, as on the wire
    if len(raw) > settings.WS_MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"Frames are at most {settings.WS_MAX_FRAME_BYTES} bytes; got {len(raw)}.")
    try:
        return json_loads_strict(raw)
    except DuplicateKey as exc:
        raise FrameError("duplicate_key", str(exc)) from None
    except orjson.JSONDecodeError as exc:
        raise FrameError("malformed_json", f"Malformed JSON: {exc}") from None


def frame_decode(data: object, *, device: Meter | Gateway) -> Frame:
    """Unwrap a parsed frame into its readings, checking the signature envelope if any."""
    frame_id = None
    if isinstance(data, dict) and ("readings" in data or "body" in data or "signature" in data):
        frame_id = data.get("id")
        if "body" in data or "signature" in data:
            body, signature = data.get("body"), data.get("signature")
            if not isinstance(body, str) or not isinstance(signature, str):
                raise FrameError(
                    "bad_envelope", "A signed frame carries 'body' (a JSON string) and 'signature'.", frame_id
                )
            signature = signature.strip()
            if signature.lower().startswith(SIGNATURE_PREFIX):
                signature = signature[len(SIGNATURE_PREFIX) :]
            if len(signature) != 64 or not signature_is_valid(
                secret=device.device_secret, body=body.encode(), signature=signature
            ):
                raise FrameError("bad_signature", "signature is not hex(HMAC-SHA256(device_secret, body)).", frame_id)
            try:
                data = json_loads_strict(body)
            except DuplicateKey as exc:
                raise FrameError("duplicate_key", str(exc), frame_id) from None
            except orjson.JSONDecodeError as exc:
                raise FrameError("malformed_json", f"Malformed JSON in body: {exc}", frame_id) from None
        else:
            if device.require_signature:
                raise FrameError("signature_required", "This device must sign its frames.", frame_id)
            data = data["readings"]
    elif device.require_signature:
        raise FrameError("signature_required", "This device must sign its frames.", frame_id)
    if isinstance(data, dict):
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise FrameError("bad_frame", "A frame is a reading object, an array of readings or an envelope.", frame_id)
    if not items:
        raise FrameError("empty_batch", "The array of readings is empty.", frame_id)
    if len(items) > settings.INGEST_MAX_BATCH:
        raise FrameError(
            "batch_too_large", f"At most {settings.INGEST_MAX_BATCH} readings per frame; got {len(items)}.", frame_id
        )
    return Frame(id=frame_id, items=items)


def ack_frame(*, frame_id: object, stored: int, duplicates: int) -> dict:
    return {"type": "ack", "id": frame_id, "stored": stored, "duplicates": duplicates}


def invalid_frame(*, frame_id: object, errors: list) -> dict:
    return FrameError("invalid_readings", "Invalid readings; nothing was stored.", frame_id, errors).as_frame()
