"""A fast stand-in for the user-search service, for benchmarking: every username exists.
Prints its URL, then serves until SIGTERM/SIGINT.

    python3 bench/baseline/user_search_stub.py [--port PORT]
    -> user-search stub listening on http://127.0.0.1:PORT/user/soap

It answers exactly what the e2e tests' stub (tests/e2e/user_search_stub.py) answers for a
known user: `GET /user/soap?username=<name>` -> HTTP 200, `text/xml`, the same SOAP
envelope with the name XML-escaped; no `username` -> 400; another path -> 404. HTTP/1.1
with keep-alive (and pipelining), as a real service offers.

Why not the tests' stub: it is a `ThreadingHTTPServer` (a thread and `http.server`'s
parsing per request), built to be configurable, not fast. It answered about 1,200
lookups a second here, so a cold storm of 2,000 new names queued far past chatd's bound
on waiting lookups (USER_SEARCH_MAX_IN_FLIGHT x 10) and about half the connections were
closed with 1013: the storm measured the stub. This one is one asyncio event loop with a
minimal parser, so the lookups cost chatd about what a deployed service answering in well
under a millisecond would.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import urllib.parse
from xml.sax.saxutils import escape as _xml_escape

SEARCH_PATH = "/user/soap"
# The envelope of tests/e2e/user_search_stub.py, byte for byte.
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
MAX_HEADER_BYTES = 16 * 1024


def response(status: str, content_type: str, body: str, keep_alive: bool) -> bytes:
    data = body.encode("utf-8")
    head = (f"HTTP/1.1 {status}\r\nServer: user-search-stub/2.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
            f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
    return head.encode("ascii") + data


class Stub:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def answer(self, target: str, keep_alive: bool) -> bytes:
        path, _, query = target.partition("?")
        if path != SEARCH_PATH:
            return response("404 Not Found", "text/plain; charset=utf-8",
                            "404 page not found\n", keep_alive)
        values = urllib.parse.parse_qs(query, keep_blank_values=True).get("username")
        name = values[0] if values and values[0] != "" else None
        if name is None:
            return response("400 Bad Request", "text/plain; charset=utf-8",
                            "username query parameter is required", keep_alive)
        user_id = self.ids.setdefault(name, 1000 + len(self.ids))
        escaped = _xml_escape(name, {'"': "&quot;", "'": "&apos;"})
        return response("200 OK", "text/xml; charset=utf-8",
                        _ENVELOPE.format(id=user_id, username=escaped), keep_alive)


class Connection(asyncio.Protocol):
    """One client connection: requests are GETs without a body, answered in order."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        close = False
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    close = True
                    out.append(response("431 Request Header Fields Too Large",
                                        "text/plain; charset=utf-8", "", False))
                break
            head = self.buffer[:end].decode("latin-1")
            self.buffer = self.buffer[end + 4:]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or parts[0] != "GET":
                out.append(response("400 Bad Request", "text/plain; charset=utf-8", "", False))
                close = True
                break
            keep_alive = parts[2] == "HTTP/1.1"
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "connection":
                    keep_alive = value.strip().lower() != "close"
            out.append(self.stub.answer(parts[1], keep_alive))
            if not keep_alive:
                close = True
                break
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if close and self.transport is not None:
            self.transport.close()


async def serve(port: int) -> None:
    stub = Stub()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(stub), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"user-search stub listening on http://127.0.0.1:{bound}{SEARCH_PATH}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
