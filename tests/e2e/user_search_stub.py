"""Stand-in for the external user-search service (SPEC §1), for the e2e tests.

It answers exactly what the deployed service answers:

* ``GET <path>?username=<name>`` for a known user: HTTP 200, ``text/xml``, a SOAP
  envelope with indentation between the elements and the name XML-escaped;
* an unknown user: HTTP 500, ``text/plain``,
  ``Database query error: sql: no rows in result set``;
* no ``username`` parameter: HTTP 400.

Tests switch it into the other behaviours the real world shows: the legacy answer
for unknown users (HTTP 200 ``Usuario no encontrado``), a malformed envelope, and an
artificial delay per name. Each request is counted per name and timestamped so a test
can wait on "the request for X arrived" / "the answer for X was sent" instead of
sleeping.

The server is a ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive: a delayed
answer holds only its own thread, so other lookups keep flowing.
"""

from __future__ import annotations

import collections
import http.server
import sys
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape as _xml_escape

SEARCH_PATH = "/user/soap"
NOT_FOUND_BODY = "Database query error: sql: no rows in result set"
LEGACY_NOT_FOUND_BODY = "Usuario no encontrado"
MISSING_USERNAME_BODY = "username query parameter is required"

_ENVELOPE = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:web="http://www.example.org/webservice">
    <soapenv:Header/>
    <soapenv:Body>
        <web:getUserByUsernameResponse>
            <web:id>{id}</web:id>
            <web:username>{username}</web:username>
        </web:getUserByUsernameResponse>
    </soapenv:Body>
</soapenv:Envelope>
"""

# Broken answers. Both contain a complete, correct <web:username> element, so a
# client that "parses" by substring search would wrongly accept them.
_MALFORMED = {
    # The envelope is cut after the username element: unclosed elements.
    "truncated": """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:web="http://www.example.org/webservice">
    <soapenv:Header/>
    <soapenv:Body>
        <web:getUserByUsernameResponse>
            <web:id>{id}</web:id>
            <web:username>{username}</web:username>
""",
    # Closing tags that do not match their opening tags.
    "mismatched": """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:web="http://www.example.org/webservice">
    <soapenv:Body>
        <web:getUserByUsernameResponse>
            <web:id>{id}</web:username>
            <web:username>{username}</web:username>
        </soapenv:Body>
    </web:getUserByUsernameResponse>
</soapenv:Envelope>
""",
}


def xml_escape(text: str) -> str:
    return _xml_escape(text, {'"': "&quot;", "'": "&apos;"})


class UserSearchStub:
    """Configurable fake user-search service. All knobs are safe to change from tests
    while the server runs (they are read under a lock per request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        # Configuration.
        self.unknown: set[str] = set()      # names answered as "no such user"
        self.known: set[str] | None = None  # None: every name not in `unknown` exists
        self.legacy = False                 # unknown -> 200 "Usuario no encontrado"
        self.malformed: str | None = None   # None or a key of _MALFORMED
        self.delays: dict[str, float] = {}  # name -> seconds before answering
        # Close each connection right after answering, without announcing it with
        # "Connection: close" (what a service's idle keep-alive timeout looks like).
        self.drop_keepalive = False
        # Observations.
        self._requests: collections.Counter[str] = collections.Counter()
        self._answered: collections.Counter[str] = collections.Counter()
        self.log: list[str] = []
        self._ids: dict[str, int] = {}
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "UserSearchStub":
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="user-search-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cuts artificial delays short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None, "stub not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SEARCH_PATH}"

    # ------------------------------------------------------------------ observations

    def request_count(self, name: str) -> int:
        with self._lock:
            return self._requests[name]

    def answered_count(self, name: str) -> int:
        with self._lock:
            return self._answered[name]

    def wait_for_request(self, name: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Blocks until at least `count` requests for `name` arrived."""
        with self._changed:
            return self._changed.wait_for(lambda: self._requests[name] >= count, timeout)

    def wait_for_answer(self, name: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Blocks until at least `count` answers for `name` were written."""
        with self._changed:
            return self._changed.wait_for(lambda: self._answered[name] >= count, timeout)

    # ------------------------------------------------------------------ behaviour

    def _record(self, line: str) -> None:
        self.log.append(f"{time.monotonic():.3f} {line}")

    def _respond_to(self, name: str | None) -> tuple[int, str, str, float]:
        """(status, content type, body, delay) for one request; counts it."""
        with self._changed:
            if name is None:
                self._record("request without username -> 400")
                return 400, "text/plain; charset=utf-8", MISSING_USERNAME_BODY, 0.0
            self._requests[name] += 1
            self._changed.notify_all()
            delay = self.delays.get(name, 0.0)
            exists = name not in self.unknown and (self.known is None or name in self.known)
            user_id = self._ids.setdefault(name, 1000 + len(self._ids))
            if self.malformed is not None:
                body = _MALFORMED[self.malformed].format(id=user_id, username=xml_escape(name))
                result = 200, "text/xml; charset=utf-8", body
            elif exists:
                body = _ENVELOPE.format(id=user_id, username=xml_escape(name))
                result = 200, "text/xml; charset=utf-8", body
            elif self.legacy:
                result = 200, "text/plain; charset=utf-8", LEGACY_NOT_FOUND_BODY
            else:
                result = 500, "text/plain; charset=utf-8", NOT_FOUND_BODY
            self._record(f"username={name!r} -> {result[0]} (delay {delay}s)")
            return (*result, delay)

    def _answered_one(self, name: str | None) -> None:
        if name is None:
            return
        with self._changed:
            self._answered[name] += 1
            self._changed.notify_all()


class _QuietServer(http.server.ThreadingHTTPServer):
    """Records handler errors (e.g. chatd hung up before a delayed answer was written)
    in the stub's log instead of printing tracebacks over the test output."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops connection attempts when chatd opens
    # dozens of lookups at once; a real HTTP server listens with a deep backlog.
    request_queue_size = 1024
    owner: UserSearchStub

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        error = sys.exc_info()[1]
        self.owner._record(f"connection from {client_address} ended: {error!r}")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real HTTP server offers
    # Headers and body go out in two writes; with Nagle on, the body would wait
    # for chatd's delayed ACK (40 ms a lookup on a kept-alive connection).
    disable_nagle_algorithm = True
    server_version = "user-search-stub/1.0"
    owner: UserSearchStub

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        if url.path != SEARCH_PATH:
            self._send(404, "text/plain; charset=utf-8", "404 page not found\n")
            return
        values = urllib.parse.parse_qs(url.query, keep_blank_values=True).get("username")
        name = values[0] if values and values[0] != "" else None
        status, content_type, body, delay = self.owner._respond_to(name)
        if delay > 0 and self.owner._stopping.wait(delay):
            self.close_connection = True
            return
        self._send(status, content_type, body)
        self.owner._answered_one(name)
        if self.owner.drop_keepalive:
            self.close_connection = True

    def _send(self, status: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.owner._record("http " + (format % args))
