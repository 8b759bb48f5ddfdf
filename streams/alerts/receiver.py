"""A small webhook receiver that records and verifies notifications (tests, local trials). I/O (HTTP).

`python -m streams.alerts.receiver --port 9095 --secret s3cret` prints every notification it
gets and whether its X-Surplus-Signature verifies. In tests, `Recorder` runs in a thread on
127.0.0.1 and answers each request with the next scripted status (then `default_status`).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.alerts.sign import HEADER, verify


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def signature(self) -> str:
        return self.headers.get(HEADER.lower(), "")


class Recorder:
    """An HTTP server on 127.0.0.1 that records POSTs and answers with scripted statuses."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None, default_status: int = 200):
        self.received: list[Received] = []
        self.statuses: deque[int] = deque(statuses or [])
        self.default_status = default_status
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with recorder._lock:
                    recorder.received.append(Received(self.path, headers, body))
                    status = recorder.statuses.popleft() if recorder.statuses else recorder.default_status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.received]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--secret", default="", help="verify X-Surplus-Signature with this key")
    args = parser.parse_args()
    with Recorder(args.port) as recorder:
        print(f"listening on {recorder.url}", flush=True)
        seen = 0
        try:
            while True:
                time.sleep(0.2)
                for item in recorder.received[seen:]:
                    ok = verify(args.secret.encode(), item.signature, item.body, now=int(time.time()))
                    body = item.json()
                    names = [a["labels"].get("alertname") for a in body.get("alerts", [])]
                    print(f"{body.get('status')} {body.get('groupKey')} {names} "
                          f"signature {'ok' if ok else 'BAD'}", flush=True)
                seen = len(recorder.received)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
