"""Blocking raw-socket clients for what a well-behaved library will not do: a WebSocket
that completes its handshake and then never answers (not even a ping or the server's
close), hand-written HTTP requests (odd headers, oversize blocks), and waiting for the
server to drop a connection.

Every call blocks: run it through `in_thread` from an async test. Every wait has a socket
timeout, so a server that never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


# ---------------------------------------------------------------------- HTTP

def upgrade_request(server, path: str, headers: dict[str, str] | None = None) -> bytes:
    """A WebSocket upgrade request for `path` with `headers` added (e.g. Origin)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw_head: bytes = field(repr=False, default=b"")

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), (
            f"expected a JSON answer, got Content-Type {self.headers.get('content-type')!r}: "
            f"{self.raw_head[:300]!r}")
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"the body is not JSON: {self.body[:200]!r}") from None


def read_http_response(sock: socket.socket, timeout: float = 5.0) -> HttpResponse:
    """Reads one response: the head, then Content-Length bytes of body (to EOF when the
    length is absent). A reset after the whole response arrived is not an error: a server
    that refuses a request it did not read to the end may close with unread input."""
    sock.settimeout(timeout)
    data = b""
    ended = False

    def more() -> bool:
        nonlocal data, ended
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            ended = True
            return False
        data += chunk
        return True

    while b"\r\n\r\n" not in data:
        assert more(), f"the connection ended before a complete response head: {data[:300]!r}"
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), f"bad status line {status_line!r}"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(parts[1])
    if status == 101:
        return HttpResponse(status, headers, b"", head)
    length = headers.get("content-length")
    if length is None:
        while more():
            pass
        body = data.partition(b"\r\n\r\n")[2]
    else:
        while len(data.partition(b"\r\n\r\n")[2]) < int(length):
            assert more(), f"the connection ended inside the body: {data[:300]!r}"
        body = data.partition(b"\r\n\r\n")[2][: int(length)]
    return HttpResponse(status, headers, body, head)


def http_exchange(server, request: bytes, timeout: float = 5.0) -> HttpResponse:
    """Sends `request` verbatim on a new connection and reads the response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before reading all of it
        return read_http_response(sock, timeout)


# ---------------------------------------------------------------------- WebSocket

def open_unresponsive_websocket(server, path: str, receive_buffer: int = 0,
                                headers: dict[str, str] | None = None) -> socket.socket:
    """A WebSocket client that completes the handshake, then never answers anything
    (not even the server's close frame). `receive_buffer` shrinks SO_RCVBUF."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(upgrade_request(server, path, headers))
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        # A byte at a time: the frames that follow the response stay in the socket.
        chunk = sock.recv(1)
        assert chunk, f"connection closed during the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response[:200]
    return sock


def send_client_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    """Sends one final, masked (as clients must) frame with these bytes as they are."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


class _FrameReader:
    """Server frames off a raw socket (server frames are never masked)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def _need(self, n: int) -> bool:
        while len(self.data) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            self.data += chunk
        return True

    def next(self) -> tuple[int, bytes] | None:
        """(opcode, payload), or None when the connection ended."""
        if not self._need(2):
            return None
        opcode, length = self.data[0] & 0x0F, self.data[1] & 0x7F
        header = 2
        if length == 126:
            if not self._need(4):
                return None
            length, header = int.from_bytes(self.data[2:4], "big"), 4
        elif length == 127:
            if not self._need(10):
                return None
            length, header = int.from_bytes(self.data[2:10], "big"), 10
        if not self._need(header + length):
            return None
        payload = self.data[header:header + length]
        self.data = self.data[header + length:]
        return opcode, payload


def read_close_frame(sock: socket.socket, timeout: float = 10.0,
                     frames: list[tuple[int, bytes]] | None = None) -> int:
    """Reads server frames until a close frame; returns its code. The frames before it
    are appended to `frames` when given."""
    sock.settimeout(timeout)
    reader = _FrameReader(sock)
    while True:
        frame = reader.next()
        assert frame is not None, "connection ended without a close frame"
        opcode, payload = frame
        if opcode == OP_CLOSE:
            return int.from_bytes(payload[:2], "big")
        if frames is not None:
            frames.append(frame)


def read_frames_until_eof(sock: socket.socket, timeout: float = 10.0) -> list[tuple[int, bytes]]:
    """Reads (and never answers) server frames until the server drops the connection;
    returns them. Fails if nothing ends it within `timeout` seconds of silence."""
    sock.settimeout(timeout)
    reader = _FrameReader(sock)
    frames = []
    while True:
        try:
            frame = reader.next()
        except socket.timeout:
            raise AssertionError(f"the connection was still open after {timeout}s of silence "
                                 f"(frames so far: {frames[:5]})") from None
        if frame is None:
            return frames
        frames.append(frame)


# ---------------------------------------------------------------------- TCP

def wait_disconnected(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Blocks until the server ends the connection (EOF or reset); returns what it sent
    before. Fails if it is still open after `timeout` seconds."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except socket.timeout:
            raise AssertionError(f"the server kept the connection open for {timeout}s "
                                 f"(received {received[:200]!r})") from None
        if not chunk:
            return received
        received += chunk


def trickle_until_disconnected(sock: socket.socket, data: bytes, every: float,
                               timeout: float = 10.0) -> float:
    """Sends `data` one byte at a time, one every `every` seconds (a slowloris client:
    it is never silent for long), until the server ends the connection; returns the
    seconds that took. Each pause is a wait for the server's EOF, so the end is seen
    at once. Fails if the server still listens after `timeout` seconds."""
    started = time.monotonic()
    sock.settimeout(every)
    for byte in data:
        if time.monotonic() - started > timeout:
            break
        try:
            sock.sendall(bytes([byte]))
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        if not chunk:
            return time.monotonic() - started
        raise AssertionError(f"the server answered a request it could not have read yet: "
                             f"{chunk[:200]!r}")
    raise AssertionError(f"the server still accepted bytes after "
                         f"{time.monotonic() - started:.1f}s of trickling")
