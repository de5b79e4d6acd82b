"""History on connect, HISTORY_LIMIT, and persistence across a restart."""

from __future__ import annotations

from chat_client import ChatClient, in_thread, seqs, texts


async def send_and_confirm(sender: ChatClient, receiver: ChatClient, who: str,
                           messages: list[str]) -> list[dict]:
    """Sends each message and waits until the peer got it (so it is committed)."""
    frames = []
    for text in messages:
        await sender.send_message(who, text)
        frames.append(await receiver.recv_message(who, text))
    return frames


async def test_history_is_sent_on_connect_oldest_first(chatd):
    server = chatd()
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "alice", "bob", "bob")
    live = await send_and_confirm(alice, bob, "alice", ["m1", "m2"])
    live += await send_and_confirm(bob, alice, "bob", ["m3"])
    live += await send_and_confirm(alice, bob, "alice", ["m4"])

    reader = await ChatClient.open(server, "bob", "alice", "reconnected bob")
    history = await reader.recv_messages(4)
    assert history == live, "history must repeat the live frames exactly, oldest first"
    assert seqs(history) == [1, 2, 3, 4]
    # Nothing after the history: the next frame is a new live message.
    await alice.send_message("alice", "m5")
    await reader.recv_message("alice", "m5")
    await bob.recv_message("alice", "m5")


async def test_history_limit_sends_only_the_latest_messages(chatd):
    server = chatd("--history-limit", "5")
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "alice", "bob", "bob")
    live = await send_and_confirm(alice, bob, "alice", [f"message {n}" for n in range(1, 9)])
    assert seqs(live) == list(range(1, 9))

    reader = await ChatClient.open(server, "alice", "bob", "reconnected alice")
    history = await reader.recv_messages(5)
    assert seqs(history) == [4, 5, 6, 7, 8], f"got {texts(history)}"
    assert history == live[3:]
    # Positive marker: after the five, the next frame is live (no sixth history frame).
    await bob.send_message("bob", "live after history")
    frame = await reader.recv_message("bob", "live after history")
    assert frame["seq"] == 9


async def test_history_survives_a_restart(chatd):
    first = chatd()
    alice = await ChatClient.open(first, "alice", "bob", "alice")
    bob = await ChatClient.open(first, "alice", "bob", "bob")
    live = await send_and_confirm(alice, bob, "alice", ["before restart 1", "before restart 2"])
    live += await send_and_confirm(bob, alice, "bob", ["before restart 3 😀"])

    first.send_sigterm()
    await alice.expect_close(1001)
    await bob.expect_close(1001)
    code = await in_thread(first.wait_exit)
    assert code == 0, f"chatd exit code after SIGTERM: {code}"

    second = chatd(sqlite_path=first.sqlite_path)
    reader = await ChatClient.open(second, "bob", "alice", "bob after restart")
    history = await reader.recv_messages(3)
    assert history == live, "restarted server must return the same stored messages"

    # The sequence continues where it stopped.
    writer = await ChatClient.open(second, "alice", "bob", "alice after restart")
    await writer.send_message("alice", "after restart")
    frame = await reader.recv_message("alice", "after restart")
    assert frame["seq"] == 4
    assert frame["id"] not in {old["id"] for old in live}
