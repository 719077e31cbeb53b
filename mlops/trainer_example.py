"""A reference external trainer: `python -m mlops.trainer_example --port 9100 --secret whsec_…`.

Standalone on purpose (no Django, no project imports): it is what an integrator's trainer looks
like. It accepts a job spec POSTed by Joulepoint (verifying its Standard Webhooks signature),
answers 202 at once, then in a thread downloads the dataset with the spec's download token,
trains an IsolationForest on the first numeric field, exports it to ONNX with skl2onnx and
completes the job at the callback URL with the completion token (multipart: model, metrics,
features, threshold). Configure Joulepoint with MLOPS_EXTERNAL_TRAINER_URL=http://127.0.0.1:9100/
and the same MLOPS_EXTERNAL_TRAINER_SECRET.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pandas as pd
from skl2onnx import to_onnx
from sklearn.ensemble import IsolationForest

TOLERANCE_SECONDS = 300


def signature_valid(*, secret: str, body: bytes, headers) -> bool:
    """Standard Webhooks: v1,base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), fresh."""
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not (msg_id and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return any(
        hmac.compare_digest(part.removeprefix("v1,").encode(), expected)
        for part in headers.get("webhook-signature", "").split()
    )


def train(spec: dict) -> dict:
    """Download, train, upload; returns the completion response's JSON."""
    dataset = spec["dataset"]
    download = httpx.get(dataset["url"], headers={"Authorization": f"Bearer {dataset['token']}"}, timeout=60)
    download.raise_for_status()
    frame = pd.read_parquet(io.BytesIO(download.content))
    field = next(c for c in frame.columns if c not in ("meter_id", "ts") and frame[c].dtype.kind == "f")
    values = frame[[field]].dropna().to_numpy(dtype=np.float32)
    forest = IsolationForest(n_estimators=int(spec["params"].get("n_estimators", 20)), random_state=0).fit(values)
    scores = -forest.decision_function(values)
    threshold = float(np.quantile(scores, 0.995))
    model = to_onnx(forest, values[:1], target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString()
    callback = spec["callback"]
    response = httpx.post(
        callback["url"],
        headers={"Authorization": f"Bearer {callback['token']}"},
        files={"model": ("model.onnx", model, "application/octet-stream")},
        data={
            "metrics": json.dumps({"rows": len(values), "threshold": threshold, "trainer": "trainer_example"}),
            "features": json.dumps([field]),
            "threshold": str(threshold),
        },
        timeout=60,
    )
    return {"status": response.status_code, "body": response.json()}


def make_server(*, host: str, port: int, secret: str, results: list | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not signature_valid(secret=secret, body=body, headers=self.headers):
                self.send_response(401)
                self.end_headers()
                return
            spec = json.loads(body)
            self.send_response(202)
            self.end_headers()

            def work():
                outcome = train(spec)
                if results is not None:
                    results.append(outcome)

            threading.Thread(target=work, daemon=True).start()

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--secret", required=True, help="MLOPS_EXTERNAL_TRAINER_SECRET (whsec_…)")
    args = parser.parse_args()
    server = make_server(host=args.host, port=args.port, secret=args.secret)
    print(f"reference trainer on http://{args.host}:{args.port}/")
    server.serve_forever()


if __name__ == "__main__":
    main()
