"""An asyncio client for protocol v2 (subprotocol `chat.v2`, docs/protocol.md).

V2Client is a ChatClient (same timeouts, failure messages and clean-up) that opens with
`subprotocols=["chat.v2"]`, reads the hello (and the history frame of a fresh
connection) on connect, and reads and sends typed frames. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterable

import pytest
from websockets.exceptions import ConnectionClosed

from chat_client import (ID_PATTERN, RECV_TIMEOUT_S, TS_PATTERN, ChatClient,
                         assert_message_frame, parse_ts)

SUBPROTOCOL = "chat.v2"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class V2Client(ChatClient):
    hello: dict[str, Any]
    history: dict[str, Any] | None

    # ------------------------------------------------------------------ opening

    @classmethod
    async def connect(cls, server: Any, user1: str, user2: str, label: str | None = None, *,
                      after: int | None = None, token: str | None = None,
                      subprotocols: list[str] | None = None, **kwargs: Any) -> "V2Client":
        """Opens /ws/user1/user2 as v2 (`after`: a resume; `token`: in the query), checks
        that chat.v2 was selected, and reads the hello, then the history frame of a fresh
        connection (kept in .hello and .history; .history is None on a resume)."""
        query = []
        if token is not None:
            query.append(f"token={token}")
        if after is not None:
            query.append(f"after={after}")
        url = server.ws_url(user1, user2) + ("?" + "&".join(query) if query else "")
        label = label or f"v2 /ws/{user1}/{user2}" + (f"?after={after}" if after is not None
                                                      else "")
        client = await cls.open_url(url, label, subprotocols=subprotocols or [SUBPROTOCOL],
                                    **kwargs)
        assert client.ws.subprotocol == SUBPROTOCOL, (
            f"{label}: chatd selected subprotocol {client.ws.subprotocol!r}, expected "
            f"{SUBPROTOCOL!r}")
        client.hello = await client.recv_frame("hello")
        assert client.hello.get("protocol") == SUBPROTOCOL, f"{label}: {client.hello!r}"
        if after is None:
            assert "resume_after" not in client.hello, (
                f"{label}: hello of a fresh connection has resume_after: {client.hello!r}")
            client.history = await client.recv_history()
        else:
            assert client.hello.get("resume_after") == after, (
                f"{label}: expected resume_after {after} in the hello: {client.hello!r}")
            client.history = None
        return client

    # ------------------------------------------------------------------ sending

    async def send_frame(self, type_: str, **fields: Any) -> None:
        await self.send_json({"type": type_, **fields})

    async def send_text(self, client_id: str, text: str, **extra: Any) -> None:
        await self.send_frame("send", client_id=client_id, text=text, **extra)

    async def send_and_ack(self, client_id: str, text: str, *, duplicate: bool = False,
                           **extra: Any) -> dict[str, Any]:
        """Sends one message; its ack must be the next frame."""
        await self.send_text(client_id, text, **extra)
        return await self.recv_ack(client_id, duplicate=duplicate)

    async def request_history(self, **fields: Any) -> dict[str, Any]:
        """Sends a history request; the answer must be the next frame."""
        await self.send_frame("history", **fields)
        return await self.recv_history()

    # ------------------------------------------------------------------ receiving

    async def recv_frame(self, type_: str | None = None, timeout: float = RECV_TIMEOUT_S,
                         **fields: Any) -> dict[str, Any]:
        """The next frame; it must be of `type_` (when given) and have `fields`."""
        what = f"a {type_!r} frame" if type_ else "a frame"
        while True:
            frame = await self.recv_json(timeout, what)
            assert isinstance(frame, dict) and isinstance(frame.get("type"), str), (
                f"{self.label}: frame is not a typed object: {frame!r}")
            # Presence follows connections opening and closing, which other tests'
            # reconnects do at their own pace: skipped unless asked for.
            if frame["type"] != "presence" or type_ in (None, "presence"):
                break
        if type_ is not None:
            assert frame["type"] == type_, (
                f"{self.label}: expected {what}{' with ' + repr(fields) if fields else ''}, "
                f"got {frame!r}")
        for key, value in fields.items():
            assert key in frame and frame[key] == value and type(frame[key]) is type(value), (
                f"{self.label}: expected {key}={value!r} in {frame!r}")
        return frame

    async def recv_ack(self, client_id: str | None = None, *, duplicate: bool | None = None,
                       timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        frame = await self.recv_frame("ack", timeout)
        assert_ack_frame(frame, self.label)
        if client_id is not None:
            assert frame["client_id"] == client_id, (
                f"{self.label}: expected the ack of {client_id!r}, got {frame!r}")
        if duplicate is not None:
            assert frame["duplicate"] is duplicate, (
                f"{self.label}: expected duplicate {duplicate}, got {frame!r}")
        return frame

    async def recv_history(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        frame = await self.recv_frame("history", timeout)
        assert isinstance(frame.get("messages"), list), f"{self.label}: {frame!r}"
        assert isinstance(frame.get("has_more"), bool), f"{self.label}: {frame!r}"
        for message in frame["messages"]:
            assert_message_frame(message, f"{self.label} (history)")
        seq_list = [message["seq"] for message in frame["messages"]]
        assert seq_list == sorted(set(seq_list)), (
            f"{self.label}: history page is not oldest first: {seq_list}")
        return frame

    async def expect_v2_error(self, code: str, client_id: str | None = None,
                              timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        frame = await self.expect_error(code, timeout)
        if client_id is not None:
            assert frame.get("client_id") == client_id, (
                f"{self.label}: error {code!r} must name client_id {client_id!r}: {frame!r}")
        return frame

    async def frames_before_pong(self, timeout: float = RECV_TIMEOUT_S,
                                 ignore_presence: bool = True) -> list[dict]:
        """Sends a ping and returns every frame that arrived before the pong: a positive
        marker for "nothing else arrived" (the pong answers a frame sent after).
        Presence frames, which follow other connections' comings and goings, are left
        out unless `ignore_presence` is False."""
        await self.send_frame("ping")
        frames = []
        while True:
            frame = await self.recv_frame(timeout=timeout)
            if frame["type"] == "pong":
                return frames
            if frame["type"] != "presence" or not ignore_presence:
                frames.append(frame)

    async def expect_nothing_before_pong(self, what: str = "",
                                         ignore_presence: bool = True) -> None:
        frames = await self.frames_before_pong(ignore_presence=ignore_presence)
        assert frames == [], (
            f"{self.label}: expected nothing before the pong{' (' + what + ')' if what else ''}"
            f", got {frames!r}")

    async def skip_until(self, type_: str, skip: Iterable[str] = ("presence",),
                         timeout: float = RECV_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        """The next frame of `type_`, passing over frames whose type is in `skip` (any
        other frame fails the test)."""
        skip = set(skip)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv_frame(timeout=max(deadline - loop.time(), 0.01))
            if frame["type"] == type_:
                for key, value in fields.items():
                    assert frame.get(key) == value, (
                        f"{self.label}: expected {key}={value!r} in {frame!r}")
                return frame
            if frame["type"] not in skip:
                pytest.fail(f"{self.label}: waiting for a {type_!r} frame, got {frame!r}")


def assert_ack_frame(frame: Any, label: str = "") -> None:
    """{"type":"ack","client_id","id" (24 hex),"seq","ts" (ms, Z),"duplicate"}."""
    assert isinstance(frame, dict) and frame.get("type") == "ack", f"{label}: {frame!r}"
    assert isinstance(frame.get("client_id"), str) and frame["client_id"], (
        f"{label}: bad client_id in {frame!r}")
    assert isinstance(frame.get("id"), str) and ID_PATTERN.match(frame["id"]), (
        f"{label}: id must be 24 lowercase hex digits: {frame!r}")
    assert is_int(frame.get("seq")) and frame["seq"] >= 1, (
        f"{label}: seq must be a positive integer: {frame!r}")
    assert isinstance(frame.get("ts"), str) and TS_PATTERN.match(frame["ts"]), (
        f"{label}: ts must be ISO-8601 UTC with milliseconds and Z: {frame!r}")
    parse_ts(frame["ts"])
    assert isinstance(frame.get("duplicate"), bool), f"{label}: bad duplicate in {frame!r}"


async def send_many(client: V2Client, items: list[tuple[str, str]], *, window: int = 32,
                    skip: Iterable[str] = ("presence",), collect: Iterable[str] = (),
                    received: list[dict[str, Any]] | None = None,
                    timeout: float = RECV_TIMEOUT_S) -> list[dict[str, Any]]:
    """Sends (client_id, text) pairs with up to `window` unacknowledged; returns the acks
    in arrival order. Frames of the types in `skip` are passed over, those of the types in
    `collect` appended to `received`; anything else that is not an ack fails the test."""
    skip, collect = set(skip), set(collect)
    acks: list[dict[str, Any]] = []
    sent = 0
    while len(acks) < len(items):
        while sent < len(items) and sent - len(acks) < window:
            await client.send_text(*items[sent])
            sent += 1
        frame = await client.recv_frame(timeout=timeout)
        if frame["type"] in collect and received is not None:
            if frame["type"] == "message":
                assert_message_frame(frame, client.label)
            received.append(frame)
            continue
        if frame["type"] in skip:
            continue
        assert frame["type"] == "ack", f"{client.label}: expected an ack, got {frame!r}"
        assert_ack_frame(frame, client.label)
        acks.append(frame)
    return acks


async def expect_nothing_more(clients, why: str = "no duplicate, stray or filler frame") -> None:
    """Nothing further on any connection: v2 a ping as the positive marker, v1 a short
    silence window (after a positive marker the caller already read)."""
    async def one(client: ChatClient) -> None:
        if isinstance(client, V2Client):
            await client.expect_nothing_before_pong(why)
        else:
            await client.expect_silence()
    await asyncio.gather(*(one(client) for client in clients))


async def drain_until_closed(client: ChatClient, timeout: float = 10.0) -> list[dict]:
    """What a connection still gets until its server's death closes it (any frames)."""
    frames = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            raw = await asyncio.wait_for(client.ws.recv(), max(deadline - loop.time(), 0.01))
        except ConnectionClosed:
            return frames
        except asyncio.TimeoutError:
            pytest.fail(f"{client.label}: still open {timeout}s after its chatd was killed")
        frames.append(json.loads(raw))
