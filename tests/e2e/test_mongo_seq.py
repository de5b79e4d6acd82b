"""How the MongoDB writer allocates seqs, seen from outside: chatd instances on one
FerretDB and one Redis, with a MongoDB wire-protocol proxy (mongo_proxy.py) in front of
FerretDB for the instance under test, to hold, slow down and count its commands.

What is checked:

* an instance SIGKILLed after reserving a chat's seqs in `chats` (last_seq moved) and
  before inserting the messages (its insert held in the proxy, never forwarded) leaves a
  hole; the other instances seal it once the entries after it are older than
  MONGO_SEAL_SECONDS (1 s here) with invisible fillers (kind 6 in `messages`), so a
  receiver on a third instance gets every later message once, in order, and never a
  filler; the history (REST) holds every acknowledged message once with increasing
  seqs, never the unacknowledged one; `chats.last_seq` is the highest seq of
  `messages`, every seq up to it is there once, and the later messages are above the
  hole;
* a slow commit (the replies to the instance's inserts held 18 s by the proxy: longer
  than the 15 s a store copy of the instance's own message waits for the commit's own
  copy) never gives a sender's connection its own message back, v1 or v2, while the
  sender's other devices and the peer on another instance get it once;
* the commands of the write path per group commit (v1, 100 messages in flight): at most
  two through the proxy per commit, and chatd's chatd_mongo_write_commands_total /
  chatd_mongo_write_batches_total say the same and agree with the proxy's count;
* the proxy itself: it forwards, counts, holds (and drops what a vanished client sent),
  delays, and parses OP_MSG with a checksum.

Like test_mongo*.py these choose their store themselves (MONGO_URI on the `ferretdb`
fixture's server) and run in the default pass; conftest.py skips test_mongo*.py in the
CHATD_E2E_STORE=mongodb pass, which would only repeat them. Fixtures are listed chatd
last so that the chatd instances are stopped before the proxy, Redis and FerretDB.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid
from typing import Any

import pytest
from bson import ObjectId

import figures
from chat_client import ChatClient, in_thread, open_v1
from ferretdb import mongo_client, unique_database, wait_readyz
from mongo_proxy import mongo_proxy  # noqa: F401  (the fixture: a proxy in front of `ferretdb`)
from mongo_proxy import CHECKSUM_PRESENT, OP_MSG, command, parse_request, read_message
from server_metrics import chat_history, poll, scrape, wait_metric
from v2_client import V2Client, drain_until_closed, expect_nothing_more

SEAL_SECONDS = 1
FILLER_KIND = 6  # chat::EntryKind::filler
REDIS_CONNECT_TIMEOUT_S = 15.0
# Delivery past a hole waits for the seal (1 s) and a gap fill or two; the rest is slack
# for a loaded machine and sanitizer builds.
SEALED_DELIVERY_TIMEOUT_S = 20.0
STAND_IN_WAIT_S = 15.0  # kStandInWait (fanout/redis/redis_fanout.cpp)
COMMIT_DELAY_S = 18.0   # the proxy holds the slow commit's insert reply this long
SLOW_SOCKET_TIMEOUT_MS = 60_000  # chatd's default socketTimeoutMS (10 s) would cut it
INSERT_MESSAGES = command("insert", "messages")
# Commands of the write path, by (command, collection).
WRITE_PATH = (("insert", "messages"), ("update", "chats"), ("findAndModify", "chats"),
              ("find", "chats"), ("find", "messages"))
COMMAND_NOISE = 2  # handshakes and pings the metric may count differently


# ---------------------------------------------------------------------- instances

def start_instance(chatd, mongo_uri: str, *args: str, name: str,
                   env: dict[str, str] | None = None):
    """One chatd on `mongo_uri` (the proxy's or FerretDB's), once its store is ready."""
    server = chatd(*args, env={"MONGO_URI": mongo_uri, **(env or {})})
    wait_readyz(server, 200)
    server.name = name
    return server


async def wait_redis_connected(server) -> None:
    await wait_metric(server, "chatd_redis_connected", lambda v: v == 1, "== 1",
                      REDIS_CONNECT_TIMEOUT_S)


def client_id() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


async def next_message(client: ChatClient, timeout: float) -> dict[str, Any]:
    """The next message frame (v2: presence frames passed over, nothing else allowed)."""
    if isinstance(client, V2Client):
        return await client.recv_frame("message", timeout)
    return await client.recv_message(timeout=timeout)


def summary(messages: list[dict]) -> list[tuple]:
    return [(m["id"], m["seq"], m["text"]) for m in messages]


# ---------------------------------------------------------------------- 1. killed

@pytest.mark.e2e_timeout(75)
async def test_instance_killed_between_reserve_and_insert_leaves_no_hole_that_stops_delivery(
        ferretdb, redis, mongo_proxy, chatd):
    database = unique_database("chatd_seq")
    seal = {"MONGO_SEAL_SECONDS": str(SEAL_SECONDS)}
    a = start_instance(chatd, mongo_proxy.uri(database), "--redis-url", redis.url, name="A",
                       env=seal)
    b = start_instance(chatd, ferretdb.uri(database), "--redis-url", redis.url, name="B",
                       env=seal)
    c = start_instance(chatd, ferretdb.uri(database), "--redis-url", redis.url, name="C",
                       env=seal)
    await asyncio.gather(*(wait_redis_connected(server) for server in (a, b, c)))
    receivers = [await V2Client.connect(c, "bob", "alice", "bob v2 @C"),
                 await open_v1(c, "bob", "alice", "bob v1 @C")]
    alice_a = await V2Client.connect(a, "alice", "bob", "alice @A")
    alice_b = await V2Client.connect(b, "alice", "bob", "alice @B")

    first = await alice_a.send_and_ack(client_id(), "before the kill")
    for receiver in receivers:
        frame = await next_message(receiver, 10)
        assert (frame["id"], frame["seq"]) == (first["id"], first["seq"]), frame
    assert (await alice_b.recv_frame("message", text="before the kill"))["seq"] == first["seq"]

    mongo = mongo_client(ferretdb)
    try:
        db = mongo[database]
        stored_first = await in_thread(db.messages.find_one, {"_id": ObjectId(first["id"])})
        chat_key = stored_first["chat"]

        # A reserves the seq of its next message, then its insert is held in the proxy,
        # and A dies with it: the insert never reaches the store.
        mongo_proxy.hold(INSERT_MESSAGES, count=1)
        lost_client_id = client_id()
        await alice_a.send_text(lost_client_id, "never acknowledged")
        held = await in_thread(mongo_proxy.wait_held, 10.0)
        assert held.documents == 1, f"A's held insert: {held}"
        reserved = (await in_thread(db.chats.find_one, {"_id": chat_key}))["last_seq"]
        write_path_before_insert = [str(cmd) for cmd in mongo_proxy.commands()
                                    if cmd.connection == held.connection][-4:]
        a.kill()
        a.stop()  # collects the exit: the teardown expects no SIGTERM exit from it
        for frame in await drain_until_closed(alice_a):
            assert not (frame.get("type") == "ack" and frame.get("client_id") == lost_client_id), (
                f"alice @A was acknowledged a message whose insert never left the proxy: "
                f"{frame!r}")
        await poll(mongo_proxy.dropped, lambda dropped: len(dropped) == 1,
                   "A's held insert dropped with its connection (never forwarded)")

        # Alice goes on on B: the receivers on C get all of it, past the hole, in order.
        texts = [f"on B after the kill {n}" for n in range(5)]
        started = time.monotonic()
        acks = [await alice_b.send_and_ack(client_id(), text) for text in texts]
        for receiver in receivers:
            got = [await next_message(receiver, SEALED_DELIVERY_TIMEOUT_S) for _ in acks]
            assert summary(got) == [(ack["id"], ack["seq"], text)
                                    for ack, text in zip(acks, texts)], (
                f"{receiver.label}: expected B's messages once, in order, past the hole; "
                f"got {got!r}")
        figures.report(f"mongo seq: {len(acks)} messages past a dead instance's hole on "
                       f"both receivers {time.monotonic() - started:.2f}s after the first "
                       f"was sent (MONGO_SEAL_SECONDS={SEAL_SECONDS})")
        marker = await alice_b.send_and_ack(client_id(), "marker")
        for receiver in receivers:
            frame = await next_message(receiver, 10)
            assert (frame["id"], frame["seq"], frame["text"]) == (
                marker["id"], marker["seq"], "marker"), f"{receiver.label}: {frame!r}"
        await expect_nothing_more(receivers + [alice_b])

        # The history: every acknowledged message once, in seq order; not A's lost one.
        expected = [(first["id"], first["seq"], "before the kill")] + [
            (ack["id"], ack["seq"], text) for ack, text in zip(acks, texts)] + [
            (marker["id"], marker["seq"], "marker")]
        for server in (b, c):
            _, read = await in_thread(chat_history, server, "alice", "bob")
            assert summary(read) == expected, (
                f"{server.label}: history\nread:     {summary(read)}\nexpected: {expected}")

        # The store: last_seq is the highest seq; every seq up to it once, the hole's
        # seqs as fillers; B's messages above the hole.
        documents = await in_thread(
            lambda: list(db.messages.find({"chat": chat_key}).sort("seq", 1)))
        chat = await in_thread(db.chats.find_one, {"_id": chat_key})
    finally:
        mongo.close()
    seqs = [document["seq"] for document in documents]
    described = [(d["seq"], d.get("kind", 0), d.get("text")) for d in documents]
    assert chat["last_seq"] == max(seqs), (
        f"chats.last_seq is {chat['last_seq']}, the highest seq in messages {max(seqs)}: "
        f"{described}")
    assert seqs == list(range(1, max(seqs) + 1)), (
        f"the chat's seqs in messages are not 1..{max(seqs)} once each: {described}")
    acked = {seq for _, seq, _ in expected}
    fillers = {d["seq"] for d in documents if d.get("kind") == FILLER_KIND}
    assert {d["seq"] for d in documents if d.get("kind") != FILLER_KIND} == acked, described
    assert "never acknowledged" not in {d.get("text") for d in documents}, described
    hole = set(range(first["seq"] + 1, reserved + 1))
    assert fillers == hole, (
        f"fillers at {sorted(fillers)}, the seqs A reserved and never wrote {sorted(hole)}: "
        f"{described}")
    assert all(ack["seq"] > reserved for ack in acks), (
        f"B's messages {[ack['seq'] for ack in acks]} must be above A's reservation "
        f"(last_seq {reserved})")
    # Checked last so that the rest shows what happens either way: the kill must have
    # come between the reservation (chats.last_seq moved past the delivered seq) and
    # the insert.
    assert reserved > first["seq"], (
        f"while A's insert was held, chats.last_seq was {reserved}: A had not reserved "
        f"the seq of its message first; A's last commands: {write_path_before_insert}")


# ---------------------------------------------------------------------- 2. no echo

async def collect(client: ChatClient, wanted: set[int], own_text: str,
                  ack_client_id: str | None, timeout: float) -> tuple[list[dict], dict | None]:
    """Message frames until their seqs cover `wanted` (and, for a v2 sender, the ack of
    `ack_client_id` came); a frame of the connection's own message (`own_text`) fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    messages: list[dict] = []
    ack = None
    while not wanted <= {m["seq"] for m in messages} or (ack_client_id and ack is None):
        remaining = max(deadline - loop.time(), 0.01)
        if isinstance(client, V2Client):
            frame = await client.recv_frame(timeout=remaining)
            if frame["type"] == "presence":  # connections coming and going: not counted
                continue
            if frame["type"] == "ack":
                assert frame["client_id"] == ack_client_id and ack is None, (
                    f"{client.label}: unexpected ack {frame!r}")
                ack = frame
                continue
            assert frame["type"] == "message", f"{client.label}: unexpected {frame!r}"
        else:
            frame = await client.recv_message(timeout=remaining)
        assert frame["text"] != own_text, (
            f"{client.label}: its own message came back to it (the slow commit's store "
            f"copy was delivered to the sending connection): {frame!r}")
        messages.append(frame)
    return messages, ack


@pytest.mark.e2e_timeout(100)
async def test_sender_never_gets_its_own_message_back_when_the_commit_is_slow(
        ferretdb, redis, mongo_proxy, chatd):
    database = unique_database("chatd_seq")
    a = start_instance(chatd, mongo_proxy.uri(database, socketTimeoutMS=SLOW_SOCKET_TIMEOUT_MS),
                       "--redis-url", redis.url, name="A")
    b = start_instance(chatd, ferretdb.uri(database), "--redis-url", redis.url, name="B")
    await asyncio.gather(wait_redis_connected(a), wait_redis_connected(b))
    alice_v2 = await V2Client.connect(a, "alice", "bob", "alice v2 @A (sends X)")
    alice_v1 = await open_v1(a, "alice", "bob", "alice v1 @A (sends Y)")
    phone = await V2Client.connect(a, "alice", "bob", "alice's other device v2 @A")
    bob = await V2Client.connect(b, "bob", "alice", "bob v2 @B")
    others = [alice_v2, alice_v1, bob]

    hello = await phone.send_and_ack(client_id(), "hello")
    for client in others:
        assert (await next_message(client, 10))["seq"] == hello["seq"], client.label

    # X (v2) and Y (v1) in one commit: they queue while W's insert is held, then the
    # reply to their insert is held COMMIT_DELAY_S (the insert itself is done at once).
    mongo_proxy.hold(INSERT_MESSAGES, count=1)
    w_client_id, x_client_id = client_id(), client_id()
    await phone.send_text(w_client_id, "W")
    await in_thread(mongo_proxy.wait_held, 10.0)
    await alice_v2.send_text(x_client_id, "X from alice v2")
    await alice_v1.send_message("alice", "Y from alice v1")
    await wait_metric(a, "chatd_store_queued", lambda v: v == 2,
                      "== 2 (X and Y wait for the next commit)", queue="appends")
    mongo_proxy.delay_replies(COMMIT_DELAY_S, INSERT_MESSAGES, count=1)
    assert mongo_proxy.release() == 1
    w = await phone.recv_ack(w_client_id, timeout=10)
    for client in others:
        assert (await next_message(client, 10))["seq"] == w["seq"], client.label
    delayed = await in_thread(mongo_proxy.wait_delayed, 20.0)
    assert delayed.command.documents == 2, (
        f"X and Y were to be one insert: {delayed.command}; A's commands:\n"
        f"{mongo_proxy.log_text(20)}")

    # Bob commits after them on B: A sees the gap and reads X and Y from the store long
    # before its own commit is done.
    z_client_id = client_id()
    await bob.send_text(z_client_id, "Z from bob on B")
    bob_got, z = await collect(bob, set(), "Z from bob on B", z_client_id, 10)
    after_reply = time.monotonic() - delayed.held_at
    assert z["seq"] == w["seq"] + 3, (w, z, bob_got)
    assert after_reply < COMMIT_DELAY_S - STAND_IN_WAIT_S - 0.5, (
        f"Z was acknowledged {after_reply:.1f}s after X and Y's insert: too late for the "
        f"store copies of X and Y to wait out the {STAND_IN_WAIT_S}s before their commit "
        f"({COMMIT_DELAY_S}s) ends")

    x_seq, y_seq, z_seq = w["seq"] + 1, w["seq"] + 2, w["seq"] + 3
    wait = COMMIT_DELAY_S + 25
    started = time.monotonic()
    (v2_got, x_ack), (v1_got, _), (phone_got, _), (bob_rest, _) = await asyncio.gather(
        collect(alice_v2, {y_seq, z_seq}, "X from alice v2", x_client_id, wait),
        collect(alice_v1, {x_seq, z_seq}, "Y from alice v1", None, wait),
        collect(phone, {x_seq, y_seq, z_seq}, "W", None, wait),
        collect(bob, {x_seq, y_seq} - {m["seq"] for m in bob_got}, "Z from bob on B", None,
                wait))
    figures.report(f"mongo seq: a commit held {COMMIT_DELAY_S:.0f}s delivered to the sender's "
                   f"other devices after {time.monotonic() - started:.1f}s, never echoed")
    assert x_ack["seq"] == x_seq, x_ack
    expected = {x_seq: "X from alice v2", y_seq: "Y from alice v1", z_seq: "Z from bob on B"}
    for client, got, want in ((alice_v2, v2_got, [y_seq, z_seq]),
                              (alice_v1, v1_got, [x_seq, z_seq]),
                              (phone, phone_got, [x_seq, y_seq, z_seq]),
                              (bob, bob_got + bob_rest, [x_seq, y_seq])):
        assert [(m["seq"], m["text"]) for m in got] == [(s, expected[s]) for s in want], (
            f"{client.label}: expected {want} once each, in order; got {got!r}")
    assert next(m for m in phone_got if m["seq"] == x_seq)["id"] == x_ack["id"]

    # Bob's marker is everyone's next message: no late copy of X or Y before or after.
    marker = await bob.send_and_ack(client_id(), "marker")
    for client in (alice_v2, alice_v1, phone):
        frame = await next_message(client, 10)
        assert (frame["seq"], frame["text"]) == (marker["seq"], "marker"), (
            f"{client.label}: expected the marker next, got {frame!r}")
    await expect_nothing_more([alice_v2, alice_v1, phone, bob])
    for server in (a, b):
        _, read = await in_thread(chat_history, server, "alice", "bob")
        assert [(m["seq"], m["text"]) for m in read] == [
            (hello["seq"], "hello"), (w["seq"], "W"), *sorted(expected.items()),
            (marker["seq"], "marker")], f"{server.label}: history {read!r}"


# ---------------------------------------------------------------------- 3. commands

@pytest.mark.e2e_timeout(60)
async def test_commands_per_batch(ferretdb, mongo_proxy, chatd):
    total, window = 500, 100
    a = start_instance(chatd, mongo_proxy.uri(unique_database("chatd_seq")),
                       "--messages-per-second", "0", name="A")
    sender = await open_v1(a, "alice", "bob", "alice v1 (sender)")
    receiver = await open_v1(a, "bob", "alice", "bob v1 (receiver)")
    # Once a first message arrives, the connections' history reads are over.
    await sender.send_message("alice", "warm-up")
    await receiver.recv_message("alice", "warm-up", timeout=10)
    proxy_before, metrics_before = mongo_proxy.counts(), scrape(a)

    sent = 0
    received: list[dict] = []
    while len(received) < total:
        while sent < total and sent - len(received) < window:
            await sender.send_message("alice", f"m{sent}")
            sent += 1
        received.append(await receiver.recv_message(timeout=15))
    assert [(m["seq"], m["text"]) for m in received] == [
        (n + 2, f"m{n}") for n in range(total)], "the receiver got them out of order"
    # The last batch's commands are over once its messages are delivered.
    proxy_after, metrics_after = mongo_proxy.counts(), scrape(a)

    delta = {key: proxy_after[key] - proxy_before[key] for key in proxy_after
             if proxy_after[key] != proxy_before[key]}
    write_path = sum(delta.get(key, 0) for key in WRITE_PATH)
    commits = (metrics_after.value("chatd_store_batch_size_count")
               - metrics_before.value("chatd_store_batch_size_count"))

    def grew(name: str) -> float | None:
        if not metrics_after.has(name):
            return None
        return metrics_after.value(name) - (metrics_before.value(name)
                                            if metrics_before.has(name) else 0)
    commands, batches = (grew("chatd_mongo_write_commands_total"),
                         grew("chatd_mongo_write_batches_total"))
    figures.report(f"mongo seq: {total} messages ({window} in flight) in {commits:.0f} commits; "
                   f"{write_path} write-path commands through the proxy "
                   f"({write_path / max(commits, 1):.2f} per commit), metrics: {commands} "
                   f"commands / {batches} batches; every command: {delta}")
    assert 1 <= commits <= total, commits
    assert write_path <= 2 * commits, (
        f"{write_path} write-path commands for {commits:.0f} commits "
        f"({write_path / commits:.2f} each, at most 2 expected): {delta}")
    assert commands is not None and batches is not None, (
        "/metrics has no chatd_mongo_write_commands_total or chatd_mongo_write_batches_total")
    assert 1 <= batches <= total and commands <= 2 * batches, (
        f"chatd_mongo_write_commands_total grew by {commands}, "
        f"chatd_mongo_write_batches_total by {batches}: more than 2 commands per batch")
    assert abs(commands - write_path) <= COMMAND_NOISE, (
        f"chatd counted {commands} write commands, the proxy saw {write_path} "
        f"({delta})")


# ---------------------------------------------------------------------- 4. the proxy

def op_msg(request_id: int, body: dict, sequence: tuple[str, list[dict]] | None = None,
           checksum: bool = False) -> bytes:
    import bson
    payload = b"\x00" + bson.encode(body)
    if sequence is not None:
        identifier, documents = sequence
        encoded = identifier.encode() + b"\x00" + b"".join(bson.encode(d) for d in documents)
        payload += b"\x01" + struct.pack("<i", 4 + len(encoded)) + encoded
    flags = CHECKSUM_PRESENT if checksum else 0
    tail = b"\x00\x00\x00\x00" if checksum else b""  # a dummy CRC: only parsed, never sent
    length = 16 + 4 + len(payload) + len(tail)
    return struct.pack("<iiiiI", length, request_id, 0, OP_MSG, flags) + payload + tail


def test_the_proxy_forwards_counts_holds_drops_and_delays(ferretdb, mongo_proxy):
    parsed = parse_request(op_msg(7, {"insert": "messages", "$db": "d"},
                                  ("documents", [{"a": 1}, {"a": 2}]), checksum=True), 1)
    assert (parsed.name, parsed.collection, parsed.database, parsed.documents) == (
        "insert", "messages", "d", 2), parsed

    import pymongo
    database = unique_database("chatd_proxy")
    client = pymongo.MongoClient(mongo_proxy.uri(database), serverSelectionTimeoutMS=5000)
    direct = mongo_client(ferretdb)
    try:
        db = client[database]
        db.messages.insert_many([{"n": n} for n in range(3)])
        db.chats.find_one_and_update({"_id": "x"}, {"$inc": {"last_seq": 2}}, upsert=True)
        assert db.messages.count_documents({}) == 3
        counts = mongo_proxy.counts()
        assert counts[("insert", "messages")] == 1 and counts[("findAndModify", "chats")] == 1, (
            counts)
        assert next(c for c in mongo_proxy.commands() if c.name == "insert").documents == 3

        # Held: not on the server until released; then forwarded, answered.
        mongo_proxy.hold(INSERT_MESSAGES, count=1)
        with socket.create_connection(("127.0.0.1", mongo_proxy.port), timeout=10) as raw:
            raw.sendall(op_msg(1, {"insert": "messages", "$db": database},
                               ("documents", [{"held": 1}])))
            held = mongo_proxy.wait_held(5)
            assert (held.name, held.collection, held.documents) == ("insert", "messages", 1)
            assert direct[database].messages.count_documents({"held": 1}) == 0
            assert mongo_proxy.release() == 1
            reply = read_message(raw)
            assert reply is not None and struct.unpack_from("<i", reply, 8)[0] == 1
        assert direct[database].messages.count_documents({"held": 1}) == 1

        # Held, then the client goes away: dropped, never forwarded.
        mongo_proxy.hold(INSERT_MESSAGES, count=1)
        with socket.create_connection(("127.0.0.1", mongo_proxy.port), timeout=10) as raw:
            raw.sendall(op_msg(2, {"insert": "messages", "$db": database},
                               ("documents", [{"dropped": 1}])))
            mongo_proxy.wait_held(5, 2)
        deadline = time.monotonic() + 5
        while not mongo_proxy.dropped():
            assert time.monotonic() < deadline, "the held request was not dropped"
            time.sleep(0.02)
        assert mongo_proxy.release() == 0
        # A marker through the same path: once it is on the server, so would the dropped be.
        db.messages.insert_one({"marker": 1})
        assert direct[database].messages.count_documents({"dropped": 1}) == 0

        # Delayed: the write is done at once, its reply comes `seconds` later; one only.
        mongo_proxy.delay_replies(0.5, INSERT_MESSAGES, count=1)
        started = time.monotonic()
        db.messages.insert_one({"delayed": 1})
        took = time.monotonic() - started
        delayed = mongo_proxy.wait_delayed(1)
        assert took >= 0.5 and delayed.seconds == 0.5 and delayed.command.documents == 1, (
            took, delayed)
        started = time.monotonic()
        db.messages.insert_one({"not delayed": 1})
        assert time.monotonic() - started < 0.5
    finally:
        client.close()
        direct.close()
