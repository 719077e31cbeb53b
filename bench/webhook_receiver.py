"""A fast webhook receiver for the bench (uvicorn in its own process, so the receiver's own
speed does not cap what is measured). POST anything → 200; GET → {"count", "distinct"}."""

from __future__ import annotations

import json

received = {"count": 0}
ids: set[bytes] = set()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        body = json.dumps({"count": received["count"], "distinct": len(ids)}).encode()
    else:
        received["count"] += 1
        ids.add(dict(scope["headers"]).get(b"webhook-id", b""))
        body = b"ok"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})
