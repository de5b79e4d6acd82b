"""Protocol v2 (subprotocol chat.v2, docs/protocol.md): hello, history, acknowledged and
idempotent sends, one order, history paging, resume, typing, presence, read, errors,
identity, and v1 and v2 clients in one chat.

"Nothing else arrived" is checked with a positive marker: a ping sent after the event
must be answered by a pong that is the connection's next frame (frames_before_pong).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from chat_client import (ChatClient, assert_message_frame, open_expect_close, parse_ts, seqs,
                         texts)
from server_metrics import poll, scrape
from tokens import SECRET, token_for
from v2_client import SUBPROTOCOL, V2Client, send_many

connect = V2Client.connect


def ids_for(prefix: str, count: int, start: int = 1) -> list[tuple[str, str]]:
    """(client_id, text) pairs: f"{prefix}-{n}" and f"{prefix} message {n}"."""
    return [(f"{prefix}-{n}", f"{prefix} message {n}") for n in range(start, start + count)]


async def send_one(client: V2Client, client_id: str, text: str, **extra) -> dict:
    """One send; its ack (presence frames before it are passed over)."""
    await client.send_text(client_id, text, **extra)
    return await client.skip_until("ack", client_id=client_id)


async def only_presence_before_pong(client: V2Client) -> list[dict]:
    """Drains what the connection got so far; all of it must be presence frames."""
    frames = await client.frames_before_pong()
    assert all(frame["type"] == "presence" for frame in frames), (
        f"{client.label}: expected only presence frames, got {frames!r}")
    return frames


def same_message(frame: dict, ack: dict, sender: str, text: str) -> None:
    """`frame` is the committed message `ack` acknowledged."""
    assert_message_frame(frame)
    assert (frame["id"], frame["seq"], frame["ts"]) == (ack["id"], ack["seq"], ack["ts"]), (
        f"message {frame!r} is not the one acknowledged by {ack!r}")
    assert (frame["sender"], frame["text"]) == (sender, text), frame


# ---------------------------------------------------------------------- 1. subprotocol

@pytest.mark.parametrize("offered", [["chat.v2"], ["x-chat.v9", "chat.v2"]],
                         ids=["chat.v2 only", "among others"])
async def test_offering_chat_v2_selects_it_and_hello_comes_first(chatd, offered):
    server = chatd()
    client = await ChatClient.open(server, "alice", "bob", f"offering {offered}",
                                   subprotocols=offered)
    assert client.ws.subprotocol == SUBPROTOCOL
    assert client.ws.response_headers.get_all("Sec-WebSocket-Protocol") == [SUBPROTOCOL], (
        client.ws.response_headers)
    first = await client.recv_json(what="the hello")
    assert isinstance(first, dict) and first.get("type") == "hello", first
    assert first.get("protocol") == SUBPROTOCOL, first


async def test_no_subprotocol_gets_v1_without_hello(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice v2")
    ack = await alice.send_and_ack("c-1", "said before bob connected")

    bob = await ChatClient.open(server, "bob", "alice", "bob v1 (no subprotocol)")
    assert bob.ws.subprotocol is None
    assert "Sec-WebSocket-Protocol" not in bob.ws.response_headers
    # v1: the history comes as plain message frames, no hello and no history frame.
    first = await bob.recv_message("alice", "said before bob connected")
    same_message(first, ack, "alice", "said before bob connected")
    assert set(first) == {"sender", "text", "type", "id", "seq", "ts"}, first

    await bob.send_message("bob", "a v1 frame")
    frame = await alice.skip_until("message")
    assert (frame["sender"], frame["text"], frame["seq"]) == ("bob", "a v1 frame", 2)
    # v1 gets no ack: bob's next frame is alice's next message.
    await alice.send_and_ack("c-2", "second from alice")
    assert (await bob.recv_message("alice", "second from alice"))["seq"] == 3
    await bob.expect_silence()


# ---------------------------------------------------------------------- 2. hello, history

async def test_hello_describes_the_chat_and_the_peer(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice")
    assert alice.hello == {
        "type": "hello", "protocol": "chat.v2", "chat": alice.hello.get("chat"),
        "me": "alice", "peer": "bob", "peer_online": False, "peer_devices": 0,
        "last_seq": 0, "first_seq": 0, "my_read_seq": 0, "peer_read_seq": 0,
        "blocking": False, "blocked": False}, alice.hello
    chat_key = alice.hello["chat"]
    assert isinstance(chat_key, str) and "alice" in chat_key and "bob" in chat_key, chat_key
    assert alice.history == {"type": "history", "messages": [], "has_more": False}

    bob = await connect(server, "bob", "alice", "bob via /ws/bob/alice")
    assert bob.hello["chat"] == chat_key, "the chat key must not depend on the path order"
    assert (bob.hello["me"], bob.hello["peer"]) == ("bob", "alice"), bob.hello
    assert bob.hello["peer_online"] is True and bob.hello["peer_devices"] == 1, bob.hello
    assert bob.hello["last_seq"] == 0, bob.hello

    await send_one(alice, "c-1", "one")
    await send_one(alice, "c-2", "two")
    alice2 = await connect(server, "alice", "bob", "alice's second device")
    assert alice2.hello["last_seq"] == 2 and alice2.hello["peer_devices"] == 1, alice2.hello
    bob2 = await connect(server, "bob", "alice", "bob's second device")
    assert bob2.hello["peer_devices"] == 2 and bob2.hello["peer_online"] is True, bob2.hello
    assert bob2.hello["last_seq"] == 2, bob2.hello
    assert (bob2.hello["me"], bob2.hello["peer"]) == ("bob", "alice")

    # Another chat of alice's has its own key, seq and presence.
    carol = await connect(server, "alice", "carol", "alice with carol")
    assert carol.hello["chat"] != chat_key
    assert carol.hello["peer_devices"] == 0 and carol.hello["last_seq"] == 0, carol.hello


async def test_history_on_connect_is_the_newest_history_limit_oldest_first(chatd):
    server = chatd("--history-limit", "3")
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(alice)
    live = []
    for client_id, text in ids_for("a", 3):
        ack = await alice.send_and_ack(client_id, text)
        frame = await bob.recv_message("alice", text)
        same_message(frame, ack, "alice", text)
        live.append(frame)

    exactly = await connect(server, "bob", "alice", "reader with exactly 3 stored")
    assert exactly.hello["last_seq"] == 3
    assert exactly.history["messages"] == live and exactly.history["has_more"] is False, (
        f"3 messages and HISTORY_LIMIT 3: all of them and has_more false, got "
        f"{exactly.history!r}")

    for client_id, text in ids_for("a", 2, start=4):
        await send_one(alice, client_id, text)
        live.append(await bob.skip_until("message"))
    reader = await connect(server, "bob", "alice", "reader with 5 stored")
    assert reader.hello["last_seq"] == 5, reader.hello
    history = reader.history
    assert seqs(history["messages"]) == [3, 4, 5], history
    assert history["messages"] == live[2:], "history must repeat the live frames exactly"
    assert history["has_more"] is True, history
    # The history frame is the only one: a live message is the next frame.
    ack = await send_one(alice, "a-6", "live after the history")
    same_message(await reader.recv_message(), ack, "alice", "live after the history")


# ---------------------------------------------------------------------- 3. send, ack

async def test_send_is_acked_to_the_sender_and_delivered_to_every_other_connection(chatd):
    server = chatd()
    phone = await connect(server, "alice", "bob", "alice phone")
    laptop = await connect(server, "alice", "bob", "alice laptop")
    bob = await connect(server, "bob", "alice", "bob")
    for client in (phone, laptop, bob):
        await only_presence_before_pong(client)

    ack = await phone.send_and_ack("c-7f3a", "hello bob")
    assert ack["client_id"] == "c-7f3a" and ack["duplicate"] is False and ack["seq"] == 1
    assert set(ack) == {"type", "client_id", "id", "seq", "ts", "duplicate"}, ack
    now = dt.datetime.now(dt.timezone.utc)
    assert abs(now - parse_ts(ack["ts"])) < dt.timedelta(minutes=5), ack

    at_bob = await bob.recv_message("alice", "hello bob")
    at_laptop = await laptop.recv_message("alice", "hello bob")
    same_message(at_bob, ack, "alice", "hello bob")
    assert at_laptop == at_bob, "both receivers must see the same stored message"

    # The sending connection gets the ack and not the message; the others get no ack.
    for client in (phone, laptop, bob):
        await client.expect_nothing_before_pong("after alice's send")

    reply = await bob.send_and_ack("c-b1", "hi alice")
    assert reply["seq"] == 2
    for client in (phone, laptop):
        same_message(await client.recv_message(), reply, "bob", "hi alice")
        await client.expect_nothing_before_pong("after bob's reply")
    await bob.expect_nothing_before_pong("after its own send")


# ---------------------------------------------------------------------- 4. idempotency

async def test_same_client_id_is_stored_once_and_gets_the_first_ack(chatd):
    server = chatd()
    phone = await connect(server, "alice", "bob", "alice phone")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(phone)

    first = await phone.send_and_ack("c-1", "only once", duplicate=False)
    same_message(await bob.recv_message("alice", "only once"), first, "alice", "only once")

    again = await phone.send_and_ack("c-1", "only once", duplicate=True)
    assert {k: again[k] for k in ("client_id", "id", "seq", "ts")} == \
        {k: first[k] for k in ("client_id", "id", "seq", "ts")}, (again, first)
    # Same client id with another text: still the first send's ack, nothing stored.
    changed = await phone.send_and_ack("c-1", "a different text", duplicate=True)
    assert (changed["id"], changed["seq"]) == (first["id"], first["seq"]), changed
    await bob.expect_nothing_before_pong("after the retries")

    # After reconnecting, the retry is still recognised.
    await phone.close()
    phone = await connect(server, "alice", "bob", "alice phone, reconnected")
    assert phone.hello["last_seq"] == 1, phone.hello
    after_reconnect = await phone.send_and_ack("c-1", "only once", duplicate=True)
    assert (after_reconnect["id"], after_reconnect["seq"], after_reconnect["ts"]) == \
        (first["id"], first["seq"], first["ts"])
    frames = await bob.frames_before_pong()
    assert [f for f in frames if f["type"] != "presence"] == [], (
        f"bob must not receive the retried message again: {frames!r}")

    # A different client id with the same text is a new message.
    second = await phone.send_and_ack("c-2", "only once", duplicate=False)
    assert second["seq"] == 2 and second["id"] != first["id"], second
    same_message(await bob.skip_until("message"), second, "alice", "only once")
    # Client ids are unique per sender and chat: bob's "c-1" and alice's "c-1" in another
    # chat are new messages.
    bobs = await bob.send_and_ack("c-1", "bob's c-1", duplicate=False)
    assert bobs["seq"] == 3, bobs
    other_chat = await connect(server, "alice", "carol", "alice with carol")
    elsewhere = await other_chat.send_and_ack("c-1", "only once", duplicate=False)
    assert elsewhere["seq"] == 1 and elsewhere["id"] != first["id"], elsewhere

    reader = await connect(server, "bob", "alice", "history reader")
    assert [(m["seq"], m["sender"], m["text"]) for m in reader.history["messages"]] == [
        (1, "alice", "only once"), (2, "alice", "only once"), (3, "bob", "bob's c-1")], (
        reader.history)


async def test_same_client_id_after_a_restart_is_still_a_duplicate(chatd):
    first_server = chatd()
    alice = await connect(first_server, "alice", "bob", "alice")
    first = await alice.send_and_ack("c-restart", "before the restart")
    await alice.close()
    first_server.stop_and_check()

    server = chatd(sqlite_path=first_server.sqlite_path)
    alice = await connect(server, "alice", "bob", "alice after the restart")
    assert alice.hello["last_seq"] == 1, alice.hello
    again = await alice.send_and_ack("c-restart", "before the restart", duplicate=True)
    assert (again["id"], again["seq"], again["ts"]) == (first["id"], first["seq"], first["ts"])
    new = await alice.send_and_ack("c-new", "after the restart", duplicate=False)
    assert new["seq"] == 2, new


# ---------------------------------------------------------------------- 5. one order

@pytest.mark.e2e_timeout(120)
async def test_two_concurrent_senders_one_gapless_order_everywhere(chatd):
    count = 200
    server = chatd("--messages-per-second", "0")
    alice = await connect(server, "alice", "bob", "alice (sender)")
    bob = await connect(server, "bob", "alice", "bob (sender)")
    alice2 = await connect(server, "alice", "bob", "alice's other device")
    bob2 = await connect(server, "bob", "alice", "bob's other device")
    observer = await ChatClient.open(server, "alice", "bob", "v1 observer")
    # The observer is alice's third device: its join is announced to the v2
    # clients. chatd answers a WebSocket ping only once the session has joined,
    # so after the pong that presence frame is on its way before any pong below.
    await (await observer.ws.ping())
    for client in (alice, bob, alice2, bob2):
        await only_presence_before_pong(client)

    alice_items, bob_items = ids_for("alice", count), ids_for("bob", count)
    seen_by_alice: list[dict] = []
    seen_by_bob: list[dict] = []

    async def sender(client, items, seen, peer_count):
        acks = await send_many(client, items, window=16, collect=("message",),
                               received=seen)
        while len(seen) < peer_count:
            seen.append(await client.recv_message())
        return acks

    async def reader(client):
        return await client.recv_messages(2 * count, timeout=30)

    alice_acks, bob_acks, at_alice2, at_bob2, at_observer = await asyncio.gather(
        sender(alice, alice_items, seen_by_alice, count),
        sender(bob, bob_items, seen_by_bob, count),
        reader(alice2), reader(bob2), reader(observer))

    everything = list(range(1, 2 * count + 1))
    assert seqs(at_observer) == everything, "the v1 observer saw gaps or disorder"
    assert at_alice2 == at_observer, "alice's other device saw another order"
    assert at_bob2 == at_observer, "bob's other device saw another order"
    by_seq = {frame["seq"]: frame for frame in at_observer}

    for name, items, acks, seen, peer in (("alice", alice_items, alice_acks, seen_by_alice,
                                          "bob"),
                                         ("bob", bob_items, bob_acks, seen_by_bob, "alice")):
        assert [ack["client_id"] for ack in acks] == [cid for cid, _ in items], (
            f"{name}: acks not in the order of the sends")
        texts_by_id = dict(items)
        for ack in acks:
            assert ack["duplicate"] is False, ack
            same_message(by_seq[ack["seq"]], ack, name, texts_by_id[ack["client_id"]])
        assert seqs(acks) == sorted(seqs(acks)), f"{name}: ack seqs go backwards"
        own_in_order = [frame["text"] for frame in at_observer if frame["sender"] == name]
        assert own_in_order == [text for _, text in items], (
            f"{name}'s messages are not in the order they were sent")
        # The sender's connection saw the peer's messages (in the order) and its acks.
        assert seen == [frame for frame in at_observer if frame["sender"] == peer], (
            f"{name}'s sending connection saw the peer's messages differently")
        assert sorted(seqs(acks) + seqs(seen)) == everything

    for client in (alice, bob, alice2, bob2):
        await client.expect_nothing_before_pong("after the 400 messages")


# ---------------------------------------------------------------------- 6. paging

async def test_history_paging_walks_back_without_gaps_or_overlap(chatd):
    server = chatd("--messages-per-second", "0", "--history-limit", "10")
    alice = await connect(server, "alice", "bob", "alice")
    acks = await send_many(alice, ids_for("p", 25), window=8)
    assert seqs(acks) == list(range(1, 26))
    reader = await connect(server, "bob", "alice", "pager")
    assert seqs(reader.history["messages"]) == list(range(16, 26))
    stored = {ack["seq"]: ack for ack in acks}

    pages = []
    request: dict = {"limit": 10}  # before omitted: the newest page
    while True:
        page = await reader.request_history(**request)
        pages.append(page)
        assert len(pages) <= 5, f"paging does not end: {pages!r}"
        if not page["has_more"]:
            break
        assert page["messages"], f"an empty page says has_more: {page!r}"
        request = {"before": page["messages"][0]["seq"], "limit": 10}
    assert [seqs(page["messages"]) for page in pages] == [
        list(range(16, 26)), list(range(6, 16)), list(range(1, 6))]
    assert [page["has_more"] for page in pages] == [True, True, False]
    walked = [m for page in reversed(pages) for m in page["messages"]]
    for message in walked:
        same_message(message, stored[message["seq"]], "alice",
                     f"p message {message['seq']}")

    assert await reader.request_history(before=0, limit=10) == pages[0], \
        "before 0 must be the newest page"
    newest_default = await reader.request_history()
    assert newest_default == pages[0], "limit absent must be HISTORY_LIMIT (10)"
    assert await reader.request_history(before=0, limit=0) == pages[0]
    assert await reader.request_history(before=1000, limit=10) == pages[0]
    assert await reader.request_history(before=1, limit=10) == {
        "type": "history", "messages": [], "has_more": False}
    middle = await reader.request_history(before=13, limit=3)
    assert seqs(middle["messages"]) == [10, 11, 12] and middle["has_more"] is True
    capped = await reader.request_history(limit=100000)
    assert seqs(capped["messages"]) == list(range(1, 26)) and capped["has_more"] is False
    await reader.expect_nothing_before_pong("after the history requests")


# ---------------------------------------------------------------------- 7. resume

async def test_resume_replays_what_was_missed_then_goes_live(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(alice)
    for client_id, text in ids_for("before", 3):
        await alice.send_and_ack(client_id, text)
        await bob.recv_message("alice", text)
    await bob.close()

    missed = await send_many(alice, ids_for("away", 4))
    assert seqs(missed) == [4, 5, 6, 7]
    bob = await connect(server, "bob", "alice", "bob resuming", after=3)
    assert bob.hello["resume_after"] == 3 and bob.hello["last_seq"] == 7, bob.hello
    assert (bob.hello["me"], bob.hello["peer"]) == ("bob", "alice"), bob.hello
    for ack, (_, text) in zip(missed, ids_for("away", 4)):
        same_message(await bob.recv_message(), ack, "alice", text)
    live = await send_one(alice, "live-8", "live after the resume")
    same_message(await bob.recv_message(), live, "alice", "live after the resume")
    await bob.expect_nothing_before_pong("after the replay and one live message")

    # Resuming from the newest seq replays nothing; from 0 replays everything.
    up_to_date = await connect(server, "bob", "alice", "bob up to date", after=8)
    assert up_to_date.hello["last_seq"] == 8
    await up_to_date.expect_nothing_before_pong("a resume from the newest seq")
    everything = await connect(server, "bob", "alice", "bob from 0", after=0)
    assert seqs(await everything.recv_messages(8)) == list(range(1, 9))
    await everything.expect_nothing_before_pong("after the full replay")


class StreamWriter:
    """alice writing continuously (window 3, no pause) until stopped: the stream the
    reconnecting readers below join, at every point of a commit."""

    def __init__(self, client: V2Client, limit: int = 20000) -> None:
        self.client = client
        self.limit = limit
        self.acked: list[dict] = []
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def text(self, seq: int) -> str:
        return f"stream message {seq}"

    async def _run(self) -> None:
        sent = 0
        while len(self.acked) < sent or (sent < self.limit and not self.stopping.is_set()):
            while sent < self.limit and sent - len(self.acked) < 3 and \
                    not self.stopping.is_set():
                sent += 1
                await self.client.send_text(f"stream-{sent}", self.text(sent))
            frame = await self.client.skip_until("ack", timeout=10)
            assert frame["duplicate"] is False and frame["client_id"] == \
                f"stream-{len(self.acked) + 1}", frame
            self.acked.append(frame)

    @property
    def busy(self) -> bool:
        return not self.task.done() and not self.stopping.is_set()

    async def stop(self) -> int:
        """Stops after the messages in flight; returns how many were stored."""
        self.stopping.set()
        await asyncio.wait_for(self.task, 30)
        assert seqs(self.acked) == list(range(1, len(self.acked) + 1))
        return len(self.acked)

    def cancel(self) -> None:
        """At the end of a test: stops the writer; fails with its error if it had one
        (a reader waiting for messages that never come is the writer's failure)."""
        if not self.task.done():
            self.task.cancel()
        elif not self.task.cancelled() and self.task.exception() is not None:
            raise self.task.exception()


@pytest.mark.e2e_timeout(120)
async def test_resume_while_messages_keep_arriving_loses_and_repeats_nothing(chatd):
    reconnects, chunk = 100, 5
    server = chatd("--messages-per-second", "0")
    alice = await connect(server, "alice", "bob", "alice (writer)")
    writer = StreamWriter(alice)
    # One entry per reader connection: its after, the hello's last_seq, the seqs it saw,
    # and whether the writer was still writing when it ended.
    connections: list[dict] = []
    last, total = 0, None
    try:
        while total is None or last < total:
            client = await connect(server, "bob", "alice",
                                   f"bob reader #{len(connections) + 1}", after=last)
            seen: list[int] = []
            connections.append({"after": last, "last_seq": client.hello["last_seq"],
                                "seen": seen})
            if len(connections) > reconnects and total is None:
                total = await writer.stop()
            # Past the replay (hello's last_seq) into live messages, so that every
            # connection crosses the point where the replay hands over to live delivery.
            edge = client.hello["last_seq"] + 2
            while (len(seen) < chunk or last < edge) if total is None else (last < total):
                frame = await client.skip_until("message", timeout=10)
                assert frame["sender"] == "alice" and frame["text"] == writer.text(
                    frame["seq"]), f"{client.label}: {frame!r}"
                seen.append(frame["seq"])
                last = frame["seq"]
            connections[-1]["writer_busy"] = writer.busy
            if len(connections) % 2:
                await client.close()
            else:
                client.ws.transport.abort()  # gone without a close handshake
    finally:
        writer.cancel()

    for connection in connections:
        after, seen = connection["after"], connection["seen"]
        assert seen == list(range(after + 1, after + 1 + len(seen))), (
            f"the connection resuming after {after} (hello last_seq "
            f"{connection['last_seq']}) saw {seen}: a gap, a repeat or disorder")
    union = [seq for connection in connections for seq in connection["seen"]]
    assert union == list(range(1, total + 1)), "the reader's connections missed or repeated"
    mid_stream = sum(1 for connection in connections[:-1] if connection["writer_busy"])
    assert mid_stream >= reconnects * 0.9, (
        f"only {mid_stream} of the reconnects happened while the writer was writing (the "
        f"test did not exercise what it is meant to)")


@pytest.mark.e2e_timeout(120)
@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_connecting_while_messages_keep_arriving_history_then_live_once(chatd,
                                                                             protocol):
    """A fresh connection joins, reads the history, then gets live messages: the message
    committed as it joins is in the history or live, never both, never neither."""
    connections, history_limit = 100, 50
    server = chatd("--messages-per-second", "0", "--history-limit", str(history_limit))
    alice = await connect(server, "alice", "bob", "alice (writer)")
    writer = StreamWriter(alice)
    problems = []
    try:
        for n in range(1, connections + 1):
            label = f"bob {protocol} #{n}"
            if protocol == "v2":
                client = await connect(server, "bob", "alice", label)
                last_seq = client.hello["last_seq"]
                stream = seqs(client.history["messages"])
                assert stream == list(range(max(1, last_seq - history_limit + 1),
                                            last_seq + 1)), (
                    f"{label}: history {stream} does not end at last_seq {last_seq}")
                while not stream or stream[-1] < last_seq + 3:
                    stream.append((await client.skip_until("message", timeout=10))["seq"])
            else:
                floor = len(writer.acked)  # acked before the connection opened
                client = await ChatClient.open(server, "bob", "alice", label)
                stream = [(await client.recv_message(timeout=10))["seq"]]
                # The history (the newest 50) and then live ones, well past the handover.
                while len(stream) < history_limit + 5 or stream[-1] < floor + 3:
                    stream.append((await client.recv_message(timeout=10))["seq"])
            if stream != list(range(stream[0], stream[0] + len(stream))):
                repeated = sorted({s for s in stream if stream.count(s) > 1})
                problems.append(f"{label}: seqs {stream[0]}..{stream[-1]}, repeated "
                                f"{repeated}, missing "
                                f"{sorted(set(range(stream[0], stream[-1])) - set(stream))}")
            assert writer.busy, "the writer stopped before the readers were done"
            await client.close()
        await writer.stop()
    finally:
        writer.cancel()
    assert not problems, "connections saw a gap or a repeat:\n" + "\n".join(problems)


@pytest.mark.e2e_timeout(180)
async def test_resume_of_1000_messages_is_complete_and_history_pages_cap_at_500(chatd):
    total = 1000
    server = chatd("--messages-per-second", "0")
    alice = await connect(server, "alice", "bob", "alice")
    acks = await send_many(alice, ids_for("m", total), window=64, timeout=20)
    assert seqs(acks) == list(range(1, total + 1))

    bob = await connect(server, "bob", "alice", "bob resuming from 0", after=0)
    assert bob.hello["last_seq"] == total, bob.hello
    replay = await bob.recv_messages(total, timeout=20)
    assert seqs(replay) == list(range(1, total + 1))
    assert texts(replay) == [f"m message {n}" for n in range(1, total + 1)]
    live = await send_one(alice, "m-live", "live after 1000")
    same_message(await bob.recv_message(), live, "alice", "live after 1000")
    await bob.expect_nothing_before_pong("after the replay")

    page = await bob.request_history(limit=1000)
    assert len(page["messages"]) == 500, (
        f"limit 1000 must be capped at 500, got {len(page['messages'])} messages")
    assert seqs(page["messages"]) == list(range(502, 1002)) and page["has_more"] is True
    older = await bob.request_history(before=502, limit=501)
    assert seqs(older["messages"]) == list(range(2, 502)) and older["has_more"] is True


@pytest.mark.parametrize("after", ["abc", "-1", "12abc", "1.5"])
async def test_bad_after_closes_4400(chatd, after):
    server = chatd()
    url = f"{server.ws_url('alice', 'bob')}?after={after}"
    await open_expect_close(url, 4400, f"v2 ?after={after}", subprotocols=[SUBPROTOCOL])


# ---------------------------------------------------------------------- 8. typing

async def test_typing_is_relayed_and_never_stored(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice")
    laptop = await connect(server, "alice", "bob", "alice's laptop")
    bob = await connect(server, "bob", "alice", "bob")
    for client in (alice, laptop):
        await only_presence_before_pong(client)

    await alice.send_frame("typing", typing=True)
    await bob.recv_frame("typing", user="alice", typing=True)
    await laptop.recv_frame("typing", user="alice", typing=True)
    await alice.send_frame("typing", typing=False)
    await bob.recv_frame("typing", user="alice", typing=False)
    await laptop.recv_frame("typing", user="alice", typing=False)
    await bob.send_frame("typing", typing=True)
    await alice.recv_frame("typing", user="bob", typing=True)
    await alice.expect_nothing_before_pong("its own typing is not echoed")

    reader = await connect(server, "bob", "alice", "reader")
    assert reader.hello["last_seq"] == 0 and reader.history["messages"] == [], (
        "typing must not be stored", reader.hello, reader.history)
    ack = await send_one(alice, "c-1", "a real message")
    assert ack["seq"] == 1, "typing must not take a sequence number"


async def test_typing_burst_is_thinned_and_does_not_count_against_the_rate(chatd):
    server = chatd("--message-burst", "10", "--messages-per-second", "1")
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(alice)

    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(50):
        await alice.send_frame("typing", typing=True)
    # 50 typing frames would have used up a burst of 10 if they counted: this send is
    # accepted.
    ack = await alice.send_and_ack("c-after-burst", "after the burst")
    typing_frames = 0
    while True:
        frame = await bob.recv_frame()
        if frame["type"] == "message":
            same_message(frame, ack, "alice", "after the burst")
            break
        assert frame == {"type": "typing", "user": "alice", "typing": True}, frame
        typing_frames += 1
    elapsed = loop.time() - started
    late = await bob.frames_before_pong()
    typing_frames += len(late)
    assert all(f == {"type": "typing", "user": "alice", "typing": True} for f in late), late
    allowed = 5 + int(2 * (loop.time() - started)) + 1
    assert 5 <= typing_frames <= allowed, (
        f"bob got {typing_frames} of 50 typing frames in {elapsed:.2f}s; expected the burst "
        f"of 5 plus at most 2/s ({allowed})")
    await alice.expect_nothing_before_pong("no error after the typing burst")


# ---------------------------------------------------------------------- 9. presence

async def test_presence_counts_devices_including_v1(chatd):
    server = chatd()
    bob = await connect(server, "bob", "alice", "bob")
    phone = await connect(server, "alice", "bob", "alice phone")
    await bob.recv_frame("presence", user="alice", online=True, devices=1)
    laptop = await connect(server, "alice", "bob", "alice laptop")
    await bob.recv_frame("presence", user="alice", online=True, devices=2)
    await phone.recv_frame("presence", user="alice", online=True, devices=2)

    await laptop.close()
    await bob.recv_frame("presence", user="alice", online=True, devices=1)
    await phone.close()
    await bob.recv_frame("presence", user="alice", online=False, devices=0)
    await bob.expect_nothing_before_pong("after alice left", ignore_presence=False)

    # A v1 connection of alice is a device too.
    v1 = await ChatClient.open(server, "alice", "bob", "alice v1")
    await bob.recv_frame("presence", user="alice", online=True, devices=1)
    bob2 = await connect(server, "bob", "alice", "bob's second device")
    assert bob2.hello["peer_online"] is True and bob2.hello["peer_devices"] == 1, bob2.hello
    # bob's own second device is announced to his first one.
    await bob.recv_frame("presence", user="bob", online=True, devices=2)
    await v1.close()
    await bob.recv_frame("presence", user="alice", online=False, devices=0)
    await bob2.recv_frame("presence", user="alice", online=False, devices=0)

    # A connection that vanishes without a close handshake is counted out too.
    dropped = await connect(server, "alice", "bob", "alice (dropped)")
    await bob.recv_frame("presence", user="alice", online=True, devices=1)
    dropped.ws.transport.abort()
    await bob.recv_frame("presence", user="alice", online=False, devices=0, timeout=10)
    await bob2.close()
    await bob.recv_frame("presence", user="bob", online=True, devices=1)


# ---------------------------------------------------------------------- 10. read

async def test_read_is_relayed_to_the_peer(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(alice)
    await send_many(bob, ids_for("b", 3))
    for n in range(1, 4):
        await alice.recv_message("bob", f"b message {n}")

    await alice.send_frame("read", seq=3)
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": 3}
    await alice.expect_nothing_before_pong("its own read is not echoed")
    await bob.send_frame("read", seq=1)
    assert await alice.recv_frame("read") == {"type": "read", "user": "bob", "seq": 1}


async def test_read_receipts_are_stored_only_move_forward_and_come_back_in_the_hello(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(alice)
    await send_many(bob, ids_for("b", 5))
    for n in range(1, 6):
        await alice.recv_message("bob", f"b message {n}")
    await alice.send_frame("read", seq=4)
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": 4}
    # An older receipt (another device lagging) does not take the mark back.
    await alice.send_frame("read", seq=2)
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": 4}
    # A receipt past what the connection was ever sent is capped there.
    await alice.send_frame("read", seq=1000)
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": 5}
    await alice.close()
    await bob.close()

    # Restarted on the same data: the receipts were stored, not only relayed.
    assert server.stop() == 0
    again = chatd(sqlite_path=server.sqlite_path)
    bob_again = await connect(again, "bob", "alice", "bob again")
    assert (bob_again.hello["my_read_seq"], bob_again.hello["peer_read_seq"]) == (0, 5)
    alice_again = await connect(again, "alice", "bob", "alice again")
    assert (alice_again.hello["my_read_seq"], alice_again.hello["peer_read_seq"]) == (5, 0)


# ---------------------------------------------------------------------- 11. errors

ERROR_FRAMES = [
    ("invalid JSON", '{"type":"send",', "invalid_json", None),
    ("not an object", '["send"]', "invalid_frame", None),
    ("missing type", '{"client_id":"e-0","text":"no type"}', "invalid_type", None),
    ("type not a string", '{"type":7}', "invalid_type", None),
    ("unknown type", '{"type":"shout","text":"x"}', "unknown_type", None),
    ("send without client_id", '{"type":"send","text":"no id"}', "invalid_client_id", None),
    ("empty client_id", '{"type":"send","client_id":"","text":"x"}', "invalid_client_id",
     None),
    ("client_id over 128 bytes", '{"type":"send","client_id":"' + "x" * 129
     + '","text":"x"}', "invalid_client_id", None),
    ("text missing", '{"type":"send","client_id":"e-1"}', "invalid_text", "e-1"),
    ("empty text", '{"type":"send","client_id":"e-2","text":""}', "empty_text", "e-2"),
    ("text over MAX_TEXT_BYTES", '{"type":"send","client_id":"e-3","text":"'
     + "é" * 5 + 'a"}', "text_too_long", "e-3"),
    ("history with negative before", '{"type":"history","before":-1}', "invalid_history",
     None),
    ("history with a string limit", '{"type":"history","limit":"10"}', "invalid_history",
     None),
    ("typing not a boolean", '{"type":"typing","typing":"yes"}', "invalid_typing", None),
    ("read without seq", '{"type":"read"}', "invalid_read", None),
]


async def test_refused_frames_get_error_frames_keep_the_connection_and_store_nothing(chatd):
    server = chatd("--max-text-bytes", "10")
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    await only_presence_before_pong(alice)

    for what, raw, code, client_id in ERROR_FRAMES:
        await alice.send_raw(raw)
        error = await alice.expect_v2_error(code, client_id)
        if client_id is None:
            assert "client_id" not in error, f"{what}: error names no send: {error!r}"
        await alice.expect_nothing_before_pong(f"{what}: one error frame only")
    await bob.expect_nothing_before_pong("nothing refused reaches the peer")

    reader = await connect(server, "bob", "alice", "reader")
    assert reader.hello["last_seq"] == 0 and reader.history["messages"] == [], (
        reader.hello, reader.history)
    # 10 bytes (5 × "é") is not too long; a refused client id was not used up.
    ack = await send_one(alice, "e-3", "é" * 5)
    assert ack["duplicate"] is False, ack
    assert ack["seq"] == 1
    same_message(await bob.skip_until("message"), ack, "alice", "é" * 5)
    retry = await alice.send_and_ack("e-2", "retried", duplicate=False)
    assert retry["seq"] == 2


# ---------------------------------------------------------------------- 12. identity

async def test_identity_is_the_token_subject_and_a_sender_field_is_ignored(chatd):
    server = chatd("--secret-key", SECRET)
    alice = await connect(server, "alice", "bob", "alice (token alice)",
                          token=token_for("alice"))
    bob = await connect(server, "alice", "bob", "bob on /ws/alice/bob (token bob)",
                        token=token_for("bob"))
    assert (bob.hello["me"], bob.hello["peer"]) == ("bob", "alice"), bob.hello
    assert bob.hello["peer_devices"] == 1, bob.hello
    assert (alice.hello["me"], alice.hello["peer"]) == ("alice", "bob"), alice.hello
    await only_presence_before_pong(alice)

    ack = await bob.send_and_ack("b-1", "from bob")
    same_message(await alice.recv_message(), ack, "bob", "from bob")
    spoof = await bob.send_and_ack("b-2", "claims to be alice", sender="alice")
    same_message(await alice.recv_message(), spoof, "bob", "claims to be alice")

    reader = await connect(server, "bob", "alice", "reader (token alice)",
                           token=token_for("alice"))
    assert [(m["sender"], m["text"]) for m in reader.history["messages"]] == [
        ("bob", "from bob"), ("bob", "claims to be alice")], reader.history

    # Resuming with a token in the query.
    resumed = await connect(server, "alice", "bob", "bob resuming (token bob)",
                            token=token_for("bob"), after=1)
    assert resumed.hello["me"] == "bob", resumed.hello
    assert (await resumed.recv_message())["seq"] == 2


async def test_token_in_the_subprotocol_list_selects_only_chat_v2(chatd):
    server = chatd("--secret-key", SECRET)
    token = token_for("bob")
    bob = await connect(server, "alice", "bob", "bob (bearer subprotocol)",
                        subprotocols=[SUBPROTOCOL, f"bearer.{token}"])
    assert bob.ws.response_headers.get_all("Sec-WebSocket-Protocol") == [SUBPROTOCOL], (
        bob.ws.response_headers)
    assert token.rsplit(".", 1)[1] not in str(bob.ws.response_headers)
    assert bob.hello["me"] == "bob", bob.hello
    ack = await bob.send_and_ack("b-1", "via subprotocol token")
    alice = await connect(server, "bob", "alice", "alice", token=token_for("alice"))
    assert [(m["sender"], m["seq"]) for m in alice.history["messages"]] == [
        ("bob", ack["seq"])], alice.history


async def test_without_secret_key_me_is_the_first_user_of_the_path(chatd):
    server = chatd()
    client = await connect(server, "bob", "alice", "/ws/bob/alice")
    assert (client.hello["me"], client.hello["peer"]) == ("bob", "alice")
    ack = await client.send_and_ack("c-1", "hi", sender="alice")
    reader = await connect(server, "alice", "bob", "reader")
    assert [(m["sender"], m["id"]) for m in reader.history["messages"]] == [("bob", ack["id"])]


# ---------------------------------------------------------------------- 13. v1 and v2

async def test_v1_and_v2_clients_share_the_chat(chatd):
    server = chatd()
    v1 = await ChatClient.open(server, "alice", "bob", "alice v1")
    # The 101 comes before the session joins the chat: wait until it has.
    await poll(lambda: scrape(server), lambda m: m.value("chatd_sessions_opened_total") >= 1,
               "alice's v1 session joined")
    bob = await connect(server, "bob", "alice", "bob v2")
    assert bob.hello["peer_devices"] == 1, "the v1 connection counts as alice's device"

    await v1.send_message("alice", "from v1")
    frame = await bob.recv_message("alice", "from v1")
    assert frame["seq"] == 1

    ack = await bob.send_and_ack("b-1", "from v2")
    frame = await v1.recv_message("bob", "from v2")
    same_message(frame, ack, "bob", "from v2")
    assert set(frame) == {"sender", "text", "type", "id", "seq", "ts"}, frame

    # Everything v2-only that happens in the chat passes v1 by: typing, read, presence
    # (a second v2 device of bob's comes and goes), a duplicate ack, errors, pongs.
    await bob.send_frame("typing", typing=True)
    await bob.send_frame("read", seq=1)
    bob2 = await connect(server, "bob", "alice", "bob's second v2 device")
    await bob.recv_frame("presence", user="bob", online=True, devices=2)
    await bob2.send_frame("typing", typing=False)
    await bob.recv_frame("typing", user="bob", typing=False)
    await bob2.close()
    await bob.recv_frame("presence", user="bob", online=True, devices=1)
    await bob.send_and_ack("b-1", "from v2", duplicate=True)
    await bob.send_raw("{not json")
    await bob.expect_v2_error("invalid_json")
    await bob.expect_nothing_before_pong()
    marker = await bob.send_and_ack("b-2", "marker")
    first_after = await v1.recv_message("bob", "marker")
    same_message(first_after, marker, "bob", "marker")
    await v1.expect_silence()

    # And a late v1 client gets both protocols' messages as v1 history.
    late = await ChatClient.open(server, "bob", "alice", "late v1 reader")
    history = await late.recv_messages(3)
    assert [(m["sender"], m["text"]) for m in history] == [
        ("alice", "from v1"), ("bob", "from v2"), ("bob", "marker")]
    await late.expect_silence()


async def test_a_send_refused_for_the_rate_names_its_client_id(chatd):
    server = chatd("--message-burst", "1", "--messages-per-second", "1")
    alice = await connect(server, "alice", "bob", "alice")
    await alice.send_text("c-first", "first")
    await alice.send_text("c-second", "second")
    # The refusal is immediate, the ack waits for the commit: either may come first.
    frames = []
    while len(frames) < 2:
        frame = await alice.recv_frame()
        if frame["type"] != "presence":
            frames.append(frame)
    by_type = {frame["type"]: frame for frame in frames}
    assert set(by_type) == {"ack", "error"}, frames
    assert by_type["ack"]["client_id"] == "c-first", frames
    error = by_type["error"]
    assert (error["code"], error.get("client_id")) == ("rate_limited", "c-second"), (
        f"a client must learn which send was not stored: {error!r}")


async def test_a_resume_past_the_chats_end_still_gets_every_new_message(chatd):
    # A client that holds more than the chat has (the store was replaced): the hello
    # says so, and what is committed from then on reaches it whatever its seq.
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice", after=5)
    assert (alice.hello["last_seq"], alice.hello["resume_after"]) == (0, 5), alice.hello
    bob = await connect(server, "bob", "alice", "bob")
    acks = [await bob.send_and_ack(f"c-{n}", f"new {n}") for n in range(1, 8)]
    got = [await alice.recv_frame("message") for _ in acks]
    assert [f["seq"] for f in got] == [1, 2, 3, 4, 5, 6, 7], got
