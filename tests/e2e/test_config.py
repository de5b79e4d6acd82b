"""Settings come from flags, the environment and a `.env` file in the working
directory (SPEC §1 and §7)."""

from __future__ import annotations

from chat_client import ChatClient, open_expect_close, seqs


async def history_after_three_messages(server) -> list[int]:
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "alice", "bob", "bob")
    for n in range(1, 4):
        await alice.send_message("alice", f"m{n}")
        await bob.recv_message("alice", f"m{n}")
    reader = await ChatClient.open(server, "bob", "alice", "reader")
    history = [await reader.recv_message() for _ in range(2)]
    await alice.send_message("alice", "marker")
    frame = await reader.recv_message()
    return seqs(history) + [frame["seq"]]


async def test_history_limit_from_environment(chatd):
    server = chatd(env={"HISTORY_LIMIT": "2"})
    # Two history frames (seq 2, 3), then the live marker (seq 4): no third history frame.
    assert await history_after_three_messages(server) == [2, 3, 4]


async def test_user_search_url_from_environment(chatd, user_search):
    user_search.unknown = {"ghost"}
    server = chatd(env={"USER_SEARCH_URL": user_search.url})
    reason = await open_expect_close(server.ws_url("alice", "ghost"), 4404, "/ws/alice/ghost")
    assert "ghost" in reason
    assert user_search.request_count("ghost") == 1


async def test_user_search_url_from_dotenv_file(chatd, user_search):
    user_search.unknown = {"ghost"}
    server = chatd(dotenv=f"# written by the e2e suite\nUSER_SEARCH_URL={user_search.url}\n"
                          "HISTORY_LIMIT=2\n")
    reason = await open_expect_close(server.ws_url("ghost", "alice"), 4404, "/ws/ghost/alice")
    assert "ghost" in reason
    assert user_search.request_count("ghost") == 1
    assert await history_after_three_messages(server) == [2, 3, 4]
