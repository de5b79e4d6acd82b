"""MongoDB outages: chatd stays up, says it is not ready, refuses what it cannot store,
loses nothing it acknowledged, and recovers by itself when the server is back."""

from __future__ import annotations

import time

import pytest

from chat_client import ChatClient, in_thread, open_expect_close, seqs, texts
from ferretdb import readyz, unique_database, wait_readyz


def wait_log(server, needle: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.log_contains(needle):
        assert time.monotonic() < deadline, \
            f"{server.label} never logged {needle!r}\n--- log ---\n{server.log_text(30)}"
        time.sleep(0.05)


@pytest.mark.e2e_timeout(60)
async def test_mongo_down_at_start_then_up(chatd, ferretdb):
    database = unique_database()
    ferretdb.stop()
    server = chatd(env={"MONGO_URI": ferretdb.uri(database)})  # listens all the same
    assert readyz(server) == 503, "no store yet: not ready"
    reason = await open_expect_close(server.ws_url("alice", "bob"), 1013, "alice while down")
    assert "store" in reason, f"close reason should name the store: {reason!r}"
    # The first attempt takes the driver's server selection (2 s) to give up.
    await in_thread(wait_log, server, "cannot set up MongoDB")

    await in_thread(ferretdb.start)
    await in_thread(wait_readyz, server, 200, 30.0)  # reconnects by itself
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    await alice.send_message("alice", "first after the outage")
    frame = await bob.recv_message("alice", "first after the outage")
    assert frame["seq"] == 1


@pytest.mark.e2e_timeout(60)
async def test_mongo_lost_mid_run_refuses_sends_and_recovers(chatd, ferretdb):
    database = unique_database()
    server = chatd(env={"MONGO_URI": ferretdb.uri(database)})
    await in_thread(wait_readyz, server, 200)
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    acknowledged = []
    for text in ("before 1", "before 2"):
        await alice.send_message("alice", text)
        acknowledged.append(await bob.recv_message("alice", text))

    await in_thread(ferretdb.kill)
    await alice.send_message("alice", "while down")
    await alice.expect_error("store_unavailable")
    await bob.expect_silence()  # nothing unstored is delivered
    await in_thread(wait_readyz, server, 503, 10.0)
    await open_expect_close(server.ws_url("carol", "dave"), 1013, "new session while down")
    await alice.send_message("alice", "still down")
    await alice.expect_error("store_unavailable")

    await in_thread(ferretdb.start)
    await in_thread(wait_readyz, server, 200, 30.0)
    await alice.send_message("alice", "after 1")
    acknowledged.append(await bob.recv_message("alice", "after 1"))

    reader = await ChatClient.open(server, "bob", "alice", "bob reconnected")
    history = await reader.recv_messages(3)
    assert history == acknowledged, \
        f"everything delivered before and after the outage is stored: {texts(history)}"
    assert seqs(history) == [1, 2, 3], "a refused message leaves no hole in the order"
