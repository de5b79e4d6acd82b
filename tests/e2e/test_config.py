"""Settings come from flags, the environment and a `.env` file in the working
directory (SPEC §1 and §7)."""

from __future__ import annotations

import pytest

from chat_client import ChatClient, in_thread, open_expect_close, seqs
from server_metrics import scrape


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


@pytest.mark.parametrize("setting", ["STORE_MAX_QUEUED_APPENDS", "STORE_MAX_QUEUED_READS"])
@pytest.mark.parametrize("value", ["0", "many"])
async def test_store_queue_bound_must_be_a_positive_number(chatd, setting, value):
    server = chatd(env={setting: value}, wait=False)
    code = await in_thread(server.wait_exit)
    log = server.log_text()
    assert code == 2, f"{setting}={value}: expected exit code 2, got {code}\n{log}"
    assert setting in log, f"the message must name {setting}:\n{log}"


async def test_store_queues_show_in_metrics(chatd):
    server = chatd(env={"STORE_MAX_QUEUED_APPENDS": "1000", "STORE_MAX_QUEUED_READS": "1000"})
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    await alice.send_message("alice", "counted")
    await bob.recv_message("alice", "counted")
    metrics = scrape(server)
    for queue in ("appends", "reads"):
        assert metrics.value("chatd_store_queued", queue=queue) >= 0
        assert metrics.value("chatd_store_refused_total", queue=queue) == 0
