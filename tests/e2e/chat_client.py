"""A small asyncio WebSocket client for the e2e tests.

Every wait carries a timeout, so a hung server fails a test instead of hanging the run.
Assertion helpers (`recv_message`, `expect_error`, `expect_close`) fail with a message
that says which connection waited for what.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

RECV_TIMEOUT_S = 5.0
SILENCE_S = 0.3  # how long "nothing arrives" is watched; positive markers do the rest

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")
TS_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Connections opened by the running test; the test runner closes them at the end.
_open_clients: list["ChatClient"] = []


class ChatClient:
    def __init__(self, ws: Any, label: str) -> None:
        self.ws = ws
        self.label = label

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open_url(cls, url: str, label: str | None = None, *,
                       timeout: float = RECV_TIMEOUT_S, **kwargs: Any) -> "ChatClient":
        label = label or url
        try:
            ws = await asyncio.wait_for(
                websockets.connect(url, open_timeout=timeout, close_timeout=2,
                                   ping_interval=None, max_size=2**22, max_queue=1024,
                                   **kwargs),
                timeout + 1)
        except InvalidStatusCode as error:
            pytest.fail(f"{label}: WebSocket handshake rejected with HTTP {error.status_code}")
        except asyncio.TimeoutError:
            pytest.fail(f"{label}: WebSocket handshake did not complete within {timeout}s")
        except (OSError, ConnectionClosed) as error:
            pytest.fail(f"{label}: WebSocket handshake failed: {error!r}")
        client = cls(ws, label)
        _open_clients.append(client)
        return client

    @classmethod
    async def open(cls, server: Any, user1: str, user2: str, label: str | None = None,
                   **kwargs: Any) -> "ChatClient":
        return await cls.open_url(server.ws_url(user1, user2),
                                  label or f"/ws/{user1}/{user2}", **kwargs)

    # ------------------------------------------------------------------ sending

    async def send_json(self, value: Any, *, ensure_ascii: bool = False) -> None:
        await self.send_raw(json.dumps(value, ensure_ascii=ensure_ascii))

    async def send_message(self, sender: str, text: str, *, ensure_ascii: bool = False) -> None:
        await self.send_json({"sender": sender, "text": text}, ensure_ascii=ensure_ascii)

    async def send_raw(self, data: str | bytes) -> None:
        try:
            await asyncio.wait_for(self.ws.send(data), RECV_TIMEOUT_S)
        except asyncio.TimeoutError:
            pytest.fail(f"{self.label}: send did not complete within {RECV_TIMEOUT_S}s")
        except ConnectionClosed as closed:
            pytest.fail(f"{self.label}: connection closed while sending: {describe(closed)}")

    # ------------------------------------------------------------------ receiving

    async def recv_json(self, timeout: float = RECV_TIMEOUT_S, what: str = "a frame") -> Any:
        try:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"{self.label}: waited {timeout}s for {what}, nothing arrived")
        except ConnectionClosed as closed:
            pytest.fail(f"{self.label}: connection closed while waiting for {what}: "
                        f"{describe(closed)}")
        if isinstance(frame, bytes):
            pytest.fail(f"{self.label}: expected a text frame, got binary {frame[:80]!r}")
        try:
            return json.loads(frame)
        except ValueError:
            pytest.fail(f"{self.label}: server sent a frame that is not JSON: {frame[:200]!r}")

    async def recv_message(self, sender: str | None = None, text: str | None = None,
                           timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        """Next frame, which must be a chat message (optionally from `sender` with `text`)."""
        what = "a message" if text is None else f"message {text[:60]!r}"
        frame = await self.recv_json(timeout, what)
        assert_message_frame(frame, self.label)
        if sender is not None:
            assert frame["sender"] == sender, f"{self.label}: unexpected sender in {frame!r}"
        if text is not None:
            assert frame["text"] == text, (
                f"{self.label}: expected text {text!r}, got frame {frame!r}")
        return frame

    async def recv_messages(self, count: int, timeout: float = RECV_TIMEOUT_S) -> list[dict]:
        return [await self.recv_message(timeout=timeout) for _ in range(count)]

    async def expect_error(self, code: str, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        frame = await self.recv_json(timeout, f"error frame {code!r}")
        assert isinstance(frame, dict) and frame.get("type") == "error", (
            f"{self.label}: expected an error frame with code {code!r}, got {frame!r}")
        assert frame.get("code") == code, (
            f"{self.label}: expected error code {code!r}, got {frame.get('code')!r} "
            f"in {frame!r}")
        assert isinstance(frame.get("message"), str) and frame["message"], (
            f"{self.label}: error frame lacks a human-readable message: {frame!r}")
        return frame

    async def expect_silence(self, duration: float = SILENCE_S) -> None:
        try:
            frame = await asyncio.wait_for(self.ws.recv(), duration)
        except asyncio.TimeoutError:
            return
        except ConnectionClosed as closed:
            pytest.fail(f"{self.label}: connection closed unexpectedly: {describe(closed)}")
        pytest.fail(f"{self.label}: expected no frame, got {frame!r}")

    async def expect_close(self, code: int, timeout: float = RECV_TIMEOUT_S,
                           allow_messages: bool = False) -> str:
        """Waits for the server's close frame; returns its reason. Data frames before
        the close fail the test unless `allow_messages`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                frame = await asyncio.wait_for(self.ws.recv(), max(remaining, 0.01))
            except asyncio.TimeoutError:
                pytest.fail(f"{self.label}: expected close {code} within {timeout}s; "
                            "the connection stayed open")
            except ConnectionClosed as closed:
                received = closed.rcvd
                assert received is not None, (
                    f"{self.label}: expected close {code}, but the connection ended without "
                    f"a close frame from the server ({describe(closed)})")
                assert received.code == code, (
                    f"{self.label}: expected close code {code}, got {received.code} "
                    f"(reason {received.reason!r})")
                return received.reason
            if not allow_messages:
                pytest.fail(f"{self.label}: expected close {code}, got a frame first: "
                            f"{frame!r}")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except (asyncio.TimeoutError, ConnectionClosed, OSError):
            pass


async def close_all_clients() -> None:
    clients = list(_open_clients)
    _open_clients.clear()
    if clients:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def open_expect_close(url: str, code: int, label: str | None = None,
                            timeout: float = RECV_TIMEOUT_S, **kwargs: Any) -> str:
    """The contract for rejected connections: the handshake is accepted (so a browser can
    read the close code), then the server closes with `code`. Returns the reason.
    `kwargs` go to websockets.connect (e.g. `extra_headers`, `subprotocols`)."""
    label = label or url
    try:
        client = await ChatClient.open_url(url, label, timeout=timeout, **kwargs)
    except pytest.fail.Exception as failure:
        pytest.fail(f"expected the WebSocket to be accepted then closed with {code}; "
                    f"{failure.msg}")
    return await client.expect_close(code, timeout)


def describe(closed: ConnectionClosed) -> str:
    if closed.rcvd is None:
        return f"no close frame received (abnormal closure 1006); {closed}"
    return f"close code {closed.rcvd.code} reason {closed.rcvd.reason!r}"


def assert_message_frame(frame: Any, label: str = "") -> None:
    """The v1 message frame: sender/text plus type, id (24 hex), seq, ts (ms, Z)."""
    assert isinstance(frame, dict), f"{label}: frame is not an object: {frame!r}"
    assert frame.get("type") == "message", f"{label}: expected type 'message': {frame!r}"
    assert isinstance(frame.get("sender"), str), f"{label}: bad sender in {frame!r}"
    assert isinstance(frame.get("text"), str), f"{label}: bad text in {frame!r}"
    assert isinstance(frame.get("id"), str) and ID_PATTERN.match(frame["id"]), (
        f"{label}: id must be 24 lowercase hex digits: {frame!r}")
    seq = frame.get("seq")
    assert isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1, (
        f"{label}: seq must be a positive integer: {frame!r}")
    assert isinstance(frame.get("ts"), str) and TS_PATTERN.match(frame["ts"]), (
        f"{label}: ts must be ISO-8601 UTC with milliseconds and Z: {frame!r}")
    parse_ts(frame["ts"])


def parse_ts(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def texts(frames: list[dict]) -> list[str]:
    return [frame["text"] for frame in frames]


def seqs(frames: list[dict]) -> list[int]:
    return [frame["seq"] for frame in frames]


def in_thread(function: Any, *args: Any, timeout: float = 15.0) -> Any:
    """Runs a blocking call (process wait, stub wait) without blocking the event loop."""
    return asyncio.wait_for(asyncio.to_thread(function, *args), timeout)


async def open_v1(server, user1: str, user2: str, label: str) -> ChatClient:
    """A v1 client, returned once its session has joined the chat (the 101 comes first)."""
    from server_metrics import metric, wait_metric  # noqa: PLC0415 (server_metrics is standalone)
    before = metric(server, "chatd_sessions_opened_total") or 0
    client = await ChatClient.open(server, user1, user2, label)
    await wait_metric(server, "chatd_sessions_opened_total", lambda v: v > before,
                      f"> {before} ({label} joined)")
    return client
