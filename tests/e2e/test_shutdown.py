"""SIGTERM drains: sessions are closed with 1001 and the process exits 0."""

from __future__ import annotations

from chat_client import ChatClient, in_thread


async def test_sigterm_closes_sessions_with_1001_and_exits_0(chatd):
    server = chatd()
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    await alice.send_message("alice", "last words")
    await bob.recv_message("alice", "last words")

    server.send_sigterm()
    await alice.expect_close(1001)
    await bob.expect_close(1001)
    code = await in_thread(server.wait_exit)
    assert code == 0, f"exit code after SIGTERM: {code}"


async def test_sigterm_during_a_pending_lookup_still_exits_0(chatd, user_search):
    user_search.delays = {"slowpoke": 4.0}
    server = chatd("--user-search-timeout-ms", "20000", user_search=user_search)
    pending = await ChatClient.open(server, "slowpoke", "bob", "pending slowpoke")
    assert await in_thread(user_search.wait_for_request, "slowpoke", 1, 5.0)

    server.send_sigterm()
    await pending.expect_close(1001)
    assert user_search.answered_count("slowpoke") == 0, (
        "the pending session was closed only after its user lookup finished")
    code = await in_thread(server.wait_exit)
    assert code == 0, f"exit code after SIGTERM: {code}"
    # Ordering, not a stopwatch: the process is gone before the stub (still sleeping on
    # the lookup) has answered. A drain that waits for in-flight lookups fails here.
    assert user_search.answered_count("slowpoke") == 0, (
        "chatd exited only after the in-flight user-search lookup had been answered: "
        "shutdown waits for pending lookups (of an already closed session) instead of "
        "cancelling them")
