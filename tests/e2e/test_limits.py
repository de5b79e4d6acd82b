"""Limits that protect chatd and its users from floods (docs: README, Settings)."""

from __future__ import annotations

import asyncio
import json

from websockets.exceptions import ConnectionClosed

from chat_client import ChatClient, open_expect_close
from server_metrics import poll, scrape


async def wait_sessions_opened(server, count: int) -> None:
    """The 101 comes before chatd counts a connection against the limits: wait
    until `count` sessions are counted, so the next one is the one refused."""
    await poll(lambda: scrape(server),
               lambda m: m.value("chatd_sessions_opened_total") >= count,
               f"{count} sessions opened")


async def test_flood_past_the_rate_gets_errors_then_close_4429(chatd):
    server = chatd("--messages-per-second", "1", "--message-burst", "5")
    flooder = await ChatClient.open(server, "mallory", "bob", "mallory")
    bob = await ChatClient.open(server, "bob", "mallory", "bob")

    # The burst passes; the next frame is refused with an error and not stored.
    for i in range(5):
        await flooder.send_message("mallory", f"burst {i}")
    await flooder.send_message("mallory", "one too many")
    error = await flooder.expect_error("rate_limited")
    assert "slow down" in error["message"]
    received = await bob.recv_messages(5)
    assert [frame["text"] for frame in received] == [f"burst {i}" for i in range(5)]

    # A client that keeps flooding is closed with 4429.
    for i in range(200):
        try:
            await flooder.ws.send(json.dumps({"sender": "mallory", "text": f"flood {i}"}))
        except ConnectionClosed:  # the server closed the connection mid-flood
            break
    reason = await flooder.expect_close(4429, allow_messages=True)
    assert "rate" in reason
    # Nothing of the refused flood was delivered; the burst was.
    await bob.expect_silence()


async def test_a_rate_of_zero_means_no_limit(chatd):
    server = chatd("--messages-per-second", "0", "--message-burst", "1")
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    for i in range(300):
        await alice.send_message("alice", f"m{i}")
    received = await bob.recv_messages(300)
    assert [frame["seq"] for frame in received] == list(range(1, 301))


async def test_too_many_connections_of_one_user_close_4429(chatd):
    server = chatd("--max-connections-per-user", "2")
    first = await ChatClient.open(server, "alice", "bob", "alice 1")
    second = await ChatClient.open(server, "alice", "carol", "alice 2")
    await wait_sessions_opened(server, 2)
    reason = await open_expect_close(server.ws_url("alice", "dave"), 4429, "alice 3")
    assert "user" in reason
    # Bob is not affected, and a freed slot can be used again.
    await ChatClient.open(server, "bob", "alice", "bob")
    await second.close()
    await _eventually_open(server, "alice", "erin")
    await first.send_message("alice", "still here")


async def test_connection_limits_per_address_and_in_all(chatd):
    server = chatd("--max-connections-per-ip", "3")
    clients = [await ChatClient.open(server, f"u{i}", "x", f"u{i}") for i in range(3)]
    await wait_sessions_opened(server, 3)
    reason = await open_expect_close(server.ws_url("u3", "x"), 4429, "4th from 127.0.0.1")
    assert "address" in reason
    assert len(clients) == 3

    total = chatd("--max-connections", "2")
    await ChatClient.open(total, "a", "b", "a")
    await ChatClient.open(total, "b", "a", "b")
    await wait_sessions_opened(total, 2)
    reason = await open_expect_close(total.ws_url("c", "d"), 4429, "3rd in all")
    assert "limit" in reason


async def test_new_connections_per_second_from_one_address(chatd):
    # A burst of 5 s worth (rate 1 -> 5 connections), then refusals.
    server = chatd("--new-connections-per-ip-per-second", "1")
    for i in range(5):
        await ChatClient.open(server, f"n{i}", "x", f"n{i}")
    reason = await open_expect_close(server.ws_url("n5", "x"), 4429, "6th new connection")
    assert "new connections" in reason


async def _eventually_open(server, user1: str, user2: str) -> ChatClient:
    """The server releases a closed connection's slot when its session ends,
    a moment after the client's close returns: retry until it is admitted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        client = await ChatClient.open(server, user1, user2, f"{user1} again")
        try:
            frame = await asyncio.wait_for(client.ws.recv(), 0.2)
        except asyncio.TimeoutError:
            return client  # admitted: nothing to say, no close
        except Exception:
            if loop.time() > deadline:
                raise
            continue
        raise AssertionError(f"unexpected frame {frame!r}")
