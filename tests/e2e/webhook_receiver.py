"""A real HTTP/1.1 receiver for chatd's outgoing webhooks (docs: /work/spec/webhooks.md).

`WebhookReceiver` listens on 127.0.0.1 (port 0 the first time, the same port after a
restart) in a thread of its own (http.server.ThreadingHTTPServer, keep-alive, no
Nagle delay) and records every request it is sent: method, path, headers, the raw body
bytes, the body parsed as JSON, arrival time, and the status it answered.

What a test can make it do:

* `respond_with(500, 500, default=200)`: answer the next requests with these statuses
  in turn, then with `default` (200 unless told);
* `hang()`: requests are read and recorded but not answered until `release()` (they are
  then answered as usual);
* `down()` / `up()`: stop listening (every open connection is cut, hanging requests are
  dropped unanswered) and listen again on the same port: "the receiver is down for a
  while";
* wait, with a timeout, for N requests, for an event id, or for any predicate over the
  requests (a threading.Condition; never a sleep). `until*` are the asyncio versions.

`verify_signature(secret, headers, raw_body, tolerance_s=300)` implements the
documented scheme: `Chatd-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(secret, "<t>.<raw body>"), compared in constant time, and t must not be
older than the tolerance.

The `webhook_receiver` fixture (registered in conftest.py) starts one per test and stops
it at teardown; a failing test's request log goes to tests/e2e/artifacts/.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import http.server
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PATH = "/hooks/chatd"
QUERY = "source=e2e&x=1"
DEFAULT_TIMEOUT_S = 10.0

_SIGNATURE_PART = re.compile(r"^\s*([A-Za-z0-9_]+)=(.*?)\s*$")


# ---------------------------------------------------------------------- signatures

def sign(secret: str | bytes, t: int | str, raw_body: bytes) -> str:
    """The v1 value of the documented scheme: lowercase hex HMAC-SHA256 over
    "<t>.<raw body>" keyed with the secret's bytes."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, str(t).encode("ascii") + b"." + raw_body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    found = [value for key, value in items if key.lower() == name.lower()]
    return found[0] if len(found) == 1 else None  # missing or repeated: no signature


def parse_signature(value: str) -> tuple[str, list[str]] | None:
    """("t", [v1, ...]) from "t=1700000000,v1=ab12..."; None when malformed."""
    t = None
    v1: list[str] = []
    for part in value.split(","):
        match = _SIGNATURE_PART.match(part)
        if not match:
            return None
        key, item = match.groups()
        if key == "t":
            if t is not None:
                return None
            t = item
        elif key == "v1":
            v1.append(item)
        # other schemes (v0, v2...) are ignored, as a receiver would
    if t is None or not re.fullmatch(r"[0-9]{1,12}", t) or not v1:
        return None
    return t, v1


def verify_signature(secret: str | bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]],
                     raw_body: bytes, tolerance_s: float = 300, *,
                     now: float | None = None) -> bool:
    """True when `Chatd-Signature` carries a v1 HMAC-SHA256 of "<t>.<raw body>" under
    `secret` (constant-time compare) and t is not older than `tolerance_s` (nor further
    than that in the future) at `now` (default: the wall clock)."""
    value = _header(headers, "Chatd-Signature")
    if value is None:
        return False
    parsed = parse_signature(value)
    if parsed is None:
        return False
    t, candidates = parsed
    current = time.time() if now is None else now
    if abs(current - int(t)) > tolerance_s:
        return False
    expected = sign(secret, t, raw_body)
    matched = False
    for candidate in candidates:
        # every candidate is compared (no early exit), each in constant time
        matched |= hmac.compare_digest(expected.encode("ascii"),
                                       candidate.encode("ascii", errors="replace"))
    return matched


# ---------------------------------------------------------------------- requests

@dataclass
class WebhookRequest:
    index: int                      # 0, 1, ... in arrival order
    method: str
    target: str                     # path and query as sent
    headers: list[tuple[str, str]]  # as sent, in order
    body: bytes                     # raw
    json: Any                       # parsed body, None if it is not JSON
    arrived: float                  # time.monotonic()
    arrived_wall: float             # time.time()
    status: int | None = None       # what was answered (None: not, or not yet)
    answered: float | None = None   # time.monotonic() of the answer
    json_error: str | None = None
    connection: int = 0             # which TCP connection it came on

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def event_id(self) -> str | None:
        return self.header("Chatd-Event-Id")

    @property
    def event_type(self) -> str | None:
        return self.header("Chatd-Event-Type")

    @property
    def attempt(self) -> int | None:
        value = self.header("Chatd-Delivery-Attempt")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def data(self) -> dict[str, Any]:
        return self.json.get("data", {}) if isinstance(self.json, dict) else {}

    @property
    def message(self) -> dict[str, Any]:
        message = self.data.get("message")
        return message if isinstance(message, dict) else {}

    def describe(self) -> str:
        body = self.body[:300].decode("utf-8", errors="replace")
        return (f"#{self.index} conn{self.connection} {self.method} {self.target} "
                f"id={self.event_id} type={self.event_type} attempt={self.attempt} "
                f"-> {self.status} {body}")


# ---------------------------------------------------------------------- the server

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # listen again on the same port right after a stop
    request_queue_size = 1024
    owner: "WebhookReceiver"

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        self.owner._opened(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # noqa: ANN001
        self.owner._closed(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        self.owner._note(f"connection from {client_address} ended: {sys.exc_info()[1]!r}")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "webhook-receiver/1.0"
    owner: "WebhookReceiver"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle()

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        owner = self.owner
        request = owner._record(self, body)
        status = owner._await_answer(request)
        if status is None:  # dropped: the receiver went down while it hung
            self.close_connection = True
            return
        payload = json.dumps({"received": request.event_id}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError as error:
            owner._note(f"#{request.index}: answer {status} not written: {error!r}")
            self.close_connection = True
            return
        owner._answered(request, status)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.owner._note("http " + (format % args))


class WebhookReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self.requests: list[WebhookRequest] = []
        self.log: list[str] = []
        self.port: int | None = None
        self._statuses: collections.deque[int] = collections.deque()
        self.default_status = 200
        self._hanging = False
        self._generation = 0            # bumped by down(): hanging requests are dropped
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[int, socket.socket] = {}
        self._connection_ids: dict[int, int] = {}
        self._next_connection = 0
        self.connections_opened = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, port: int | None = None) -> "WebhookReceiver":
        assert self._server is None, "the receiver is already listening"
        receiver = self

        class Handler(_Handler):
            owner = receiver

        bind_port = port if port is not None else (self.port or 0)
        deadline = time.monotonic() + 5
        while True:
            try:
                server = _Server(("127.0.0.1", bind_port), Handler, bind_and_activate=True)
                break
            except OSError as error:  # the port is ours; a lingering close may hold it
                if time.monotonic() > deadline:
                    raise AssertionError(f"webhook receiver cannot listen on port "
                                         f"{bind_port} again: {error!r}") from error
                time.sleep(0.02)
        server.owner = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name=f"webhook-receiver:{self.port}", daemon=True)
        self._thread.start()
        self._note(f"listening on 127.0.0.1:{self.port}")
        return self

    up = start

    def down(self) -> None:
        """Stops listening and cuts every open connection; requests hanging are dropped
        without an answer. `up()` listens on the same port again."""
        server, thread = self._server, self._thread
        if server is None:
            return
        with self.changed:
            self._generation += 1
            self.changed.notify_all()
            connections = list(self._connections.values())
        server.shutdown()
        server.server_close()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None
        self._note("down (not listening, connections cut)")

    def stop(self) -> None:
        self.release()
        self.down()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        assert self.port is not None, "receiver not started"
        return f"http://127.0.0.1:{self.port}{PATH}?{QUERY}"

    @property
    def target(self) -> str:
        """The request target chatd must POST to: WEBHOOK_URL's path and query."""
        return f"{PATH}?{QUERY}"

    # ------------------------------------------------------------------ behaviour

    def respond_with(self, *statuses: int, default: int | None = None) -> None:
        """The next requests are answered with `statuses` in turn, then `default`."""
        with self.changed:
            self._statuses = collections.deque(statuses)
            if default is not None:
                self.default_status = default

    def hang(self) -> None:
        """Requests from now on get no answer until `release()`."""
        with self.changed:
            self._hanging = True

    def release(self) -> None:
        """Answers the hanging requests (as usual), and the later ones at once."""
        with self.changed:
            self._hanging = False
            self.changed.notify_all()

    # ------------------------------------------------------------------ observations

    def snapshot(self) -> list[WebhookRequest]:
        with self._lock:
            return list(self.requests)

    def answered_count(self) -> int:
        with self._lock:
            return sum(1 for request in self.requests if request.status is not None)

    def events(self, event_id: str | None = None, type_: str | None = None
               ) -> list[WebhookRequest]:
        with self._lock:
            return [request for request in self.requests
                    if (event_id is None or request.event_id == event_id)
                    and (type_ is None or request.event_type == type_)]

    def wait_for(self, predicate: Callable[[list[WebhookRequest]], Any], what: str,
                 timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """Blocks until `predicate(requests)` is truthy (re-checked on every request and
        answer); returns its value. Fails with the request log after `timeout`."""
        with self.changed:
            result = self.changed.wait_for(lambda: predicate(list(self.requests)), timeout)
            if result:
                return result
            log = "\n".join(request.describe() for request in self.requests[-40:])
        raise AssertionError(f"webhook receiver: {what}: not within {timeout}s; "
                             f"{len(self.requests)} request(s), the last ones:\n{log}")

    def wait_for_count(self, count: int, timeout: float = DEFAULT_TIMEOUT_S,
                       answered: bool = False) -> list[WebhookRequest]:
        def enough(requests: list[WebhookRequest]):
            done = [r for r in requests if r.status is not None] if answered else requests
            return requests if len(done) >= count else None
        return self.wait_for(enough, f"{count} request(s){' answered' if answered else ''}",
                             timeout)

    def wait_for_event(self, event_id: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT_S,
                       answered: bool = False) -> list[WebhookRequest]:
        """The requests carrying `event_id` once there are `count` of them (answered,
        when asked: its status is then known)."""
        def enough(requests: list[WebhookRequest]):
            mine = [r for r in requests if r.event_id == event_id]
            done = [r for r in mine if r.status is not None] if answered else mine
            return mine if len(done) >= count else None
        return self.wait_for(enough, f"{count} request(s) of event {event_id}"
                             f"{' answered' if answered else ''}", timeout)

    async def until(self, predicate: Callable[[list[WebhookRequest]], Any], what: str,
                    timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        return await asyncio.to_thread(self.wait_for, predicate, what, timeout)

    async def until_count(self, count: int, timeout: float = DEFAULT_TIMEOUT_S,
                          answered: bool = False) -> list[WebhookRequest]:
        return await asyncio.to_thread(self.wait_for_count, count, timeout, answered)

    async def until_event(self, event_id: str, count: int = 1,
                          timeout: float = DEFAULT_TIMEOUT_S,
                          answered: bool = False) -> list[WebhookRequest]:
        return await asyncio.to_thread(self.wait_for_event, event_id, count, timeout, answered)

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.log + ["--- requests ---"] +
                             [request.describe() for request in self.requests])

    # ------------------------------------------------------------------ internals

    def _note(self, line: str) -> None:
        with self._lock:
            self.log.append(f"{time.monotonic():.3f} {line}")

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._next_connection += 1
            self.connections_opened += 1
            self._connections[id(connection)] = connection
            self._connection_ids[id(connection)] = self._next_connection

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(id(connection), None)

    def _record(self, handler: _Handler, body: bytes) -> WebhookRequest:
        parsed, error = None, None
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as problem:
            error = repr(problem)
        with self.changed:
            request = WebhookRequest(
                index=len(self.requests), method=handler.command, target=handler.path,
                headers=list(handler.headers.items()), body=body, json=parsed,
                arrived=time.monotonic(), arrived_wall=time.time(), json_error=error,
                connection=self._connection_ids.get(id(handler.connection), 0))
            self.requests.append(request)
            self.log.append(f"{request.arrived:.3f} received {request.describe()}")
            self.changed.notify_all()
        return request

    def _await_answer(self, request: WebhookRequest) -> int | None:
        """The status to answer with, after any hang; None when dropped by down()."""
        with self.changed:
            generation = self._generation
            self.changed.wait_for(lambda: not self._hanging or self._generation != generation)
            if self._generation != generation:
                self.log.append(f"{time.monotonic():.3f} #{request.index} dropped unanswered")
                return None
            return self._statuses.popleft() if self._statuses else self.default_status

    def _answered(self, request: WebhookRequest, status: int) -> None:
        with self.changed:
            request.status = status
            request.answered = time.monotonic()
            self.log.append(f"{request.answered:.3f} answered #{request.index} {status}")
            self.changed.notify_all()


# ---------------------------------------------------------------------- fixture

@pytest.fixture
def webhook_receiver(request: pytest.FixtureRequest):
    """A started WebhookReceiver; stopped at teardown (hanging requests released). List
    it before `chatd` so that chatd is stopped first. A failing test's request log is
    written to tests/e2e/artifacts/."""
    receiver = WebhookReceiver().start()
    request.node._webhook_receiver = receiver
    failed_before = request.session.testsfailed
    yield receiver
    receiver.stop()
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        (ARTIFACTS / f"{safe}.webhook_receiver.log").write_text(receiver.log_text() + "\n",
                                                                encoding="utf-8")
