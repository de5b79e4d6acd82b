"""Horizontal scale-out through Redis (REDIS_URL): three real chatd processes on one
MongoDB store (FerretDB, or MONGO_TEST_URI) and one real redis-server.

What is checked, per the scale-out contract:

* every committed message of a chat reaches every connection on every instance, once,
  in the chat's seq order, whichever instance stored it (v1 and v2 clients);
* concurrent writers on all instances: every receiver sees 1..N with no gap and no
  duplicate, and the history read on any instance is the same;
* typing, presence (hello and events count connections on all instances) and read
  receipts cross instances;
* simultaneous connects and disconnects of one user on two instances end with the true
  count; after a Redis restart (it keeps nothing) hellos count every instance again;
* a publish held up in Redis (CLIENT PAUSE WRITE): the gap is filled from the store after
  --redis-gap-ms, and the late publish is not delivered twice;
* Redis SIGKILLed and restarted on the same port: local delivery goes on meanwhile, and
  after reconnecting each instance re-reads from the store what its connections missed;
  a cut subscriber or publisher connection (CLIENT KILL) loses nothing either;
* an instance SIGKILLed: its v2 clients resume on another instance from their last seq
  (a send cut off by the kill, retried with its client id, is stored once), and its user
  goes offline for the peer once the presence TTL runs out; SIGTERMed: at once;
* REDIS_URL needs MONGO_URI (exit 2); PRESENCE_TTL_SECONDS below 3 is refused; a Redis
  that is not there at start is waited for.

These run in the CHATD_E2E_STORE=mongodb pass only: scale-out needs the shared MongoDB
store, and chatd refuses REDIS_URL without it. Each test starts its own FerretDB (the
`ferretdb` fixture) with a database of its own, and its own redis-server (`redis`,
redis_server.py). Fixtures are listed chatd last so that the chatd instances are stopped
(SIGTERM, exit 0 expected) before Redis and FerretDB go away.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

import figures
from chat_client import RECV_TIMEOUT_S, SILENCE_S, ChatClient, in_thread, open_v1
from chatd_process import E2E_STORE
from ferretdb import free_port, unique_database, wait_readyz
from server_metrics import chat_history, http_get, metric, poll, scrape, wait_metric
from v2_client import V2Client, drain_until_closed, expect_nothing_more, send_many

pytestmark = pytest.mark.skipif(
    E2E_STORE != "mongodb",
    reason="scale-out needs the shared MongoDB store: run by the CHATD_E2E_STORE=mongodb pass")

NAMES = "ABC"
REDIS_CONNECT_TIMEOUT_S = 15.0  # reconnect backoff tops out at 5 s
PRESENCE_TTL_S = 3
# Offline "within about the TTL + a third" (the refresh period); the rest is slack for a
# loaded test machine.
PRESENCE_EXPIRY_TIMEOUT_S = PRESENCE_TTL_S + PRESENCE_TTL_S / 3 + 3.0


# ---------------------------------------------------------------------- instances

def start_instance(chatd, ferretdb, database: str, redis_url: str, *args: str):
    """One chatd on the shared database with REDIS_URL; returns once the store is ready
    (/readyz 200: Redis being down does not make it unready)."""
    server = chatd("--redis-url", redis_url, *args, env={"MONGO_URI": ferretdb.uri(database)})
    wait_readyz(server, 200)
    return server


async def start_cluster(chatd, ferretdb, redis, *args: str, count: int = 3) -> list:
    database = unique_database("chatd_scaleout")
    servers = [start_instance(chatd, ferretdb, database, redis.url, *args)
               for _ in range(count)]
    for name, server in zip(NAMES, servers):
        server.name = name
    await asyncio.gather(*(wait_redis_connected(server, 1) for server in servers))
    return servers






async def wait_redis_connected(server, value: int,
                               timeout: float = REDIS_CONNECT_TIMEOUT_S) -> None:
    await wait_metric(server, "chatd_redis_connected", lambda v: v == value, f"== {value}",
                      timeout)


def readyz_json(server) -> tuple[int, dict[str, Any]]:
    status, _, body = http_get(server, "/readyz")
    return status, json.loads(body)


async def wait_readyz_redis(server, state: str, timeout: float = REDIS_CONNECT_TIMEOUT_S):
    """Polls /readyz until its "redis" says `state`; the (status, body) then."""
    return await poll(lambda: readyz_json(server), lambda answer: answer[1].get("redis") == state,
                      f"{server.label}: /readyz redis {state!r}", timeout)




# ---------------------------------------------------------------------- messages

def client_id() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


async def next_message(client: ChatClient, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
    """The next message frame (v2: presence frames passed over, nothing else allowed)."""
    if isinstance(client, V2Client):
        return await client.recv_frame("message", timeout)
    return await client.recv_message(timeout=timeout)


async def send(client: ChatClient, user: str, text: str) -> dict[str, Any] | None:
    """Sends one message as `user`; v2 returns the ack (the next frame), v1 None."""
    if isinstance(client, V2Client):
        return await client.send_and_ack(client_id(), text)
    await client.send_message(user, text)
    return None


async def messages_until(client: ChatClient, last_seq: int, seen: list[dict],
                         own: set[int] = frozenset(),
                         timeout: float = RECV_TIMEOUT_S) -> list[dict]:
    """Reads message frames into `seen` until they and the connection's own sends (`own`,
    acked seqs) cover every seq 1..`last_seq`."""
    wanted = set(range(1, last_seq + 1))
    while not wanted <= {frame["seq"] for frame in seen} | set(own):
        seen.append(await next_message(client, timeout))
    return seen


def assert_in_seq_order_once(label: str, messages: list[dict], own: set[int], last: int) -> None:
    """The messages a connection was given are in increasing seq order, none twice, and
    with its own sends (`own`: acked seqs) they are every seq 1..last."""
    got = [frame["seq"] for frame in messages]
    assert got == sorted(set(got)), f"{label}: messages out of seq order or repeated: {got}"
    assert not own & set(got), (
        f"{label}: its own sends {sorted(own & set(got))} were delivered back to it")
    missing = set(range(1, last + 1)) - set(got) - own
    assert not missing, f"{label}: seqs {sorted(missing)} never arrived (got {got}, own {own})"
    assert max(got + list(own), default=0) == last, f"{label}: seqs past {last}: {got}"


def same_message(label: str, frame: dict, reference: dict) -> None:
    keys = ("id", "seq", "sender", "text", "ts")
    assert {k: frame.get(k) for k in keys} == {k: reference.get(k) for k in keys}, (
        f"{label}: the same message differs between connections:\n{frame!r}\n{reference!r}")


def history(server, user1: str = "alice", user2: str = "bob") -> list[dict]:
    """The whole chat as the REST API of `server` reads it (oldest first, paged)."""
    return chat_history(server, user1, user2)[1]


def summary(messages: list[dict]) -> list[tuple]:
    return [(m["id"], m["seq"], m["sender"], m["text"], m["ts"]) for m in messages]


async def assert_same_history_everywhere(servers, expected: list[dict]) -> None:
    """The history read on every instance is `expected` (ids, seqs, senders, texts)."""
    for server in servers:
        read = await in_thread(history, server)
        assert summary(read) == summary(expected), (
            f"{server.label}: history differs from what was delivered:\n"
            f"read:     {summary(read)}\nexpected: {summary(expected)}")


# ---------------------------------------------------------------------- 1. both ways

@pytest.mark.e2e_timeout(45)
async def test_users_on_different_instances_chat_both_ways(ferretdb, redis, chatd):
    a, b, c = await start_cluster(chatd, ferretdb, redis)
    # alice: v1 on A and v2 on C; bob: v2 on B and v1 on C. Everyone connects first.
    clients = [
        ("alice", await open_v1(a, "alice", "bob", "alice v1 @A")),
        ("bob", await V2Client.connect(b, "bob", "alice", "bob v2 @B")),
        ("alice", await V2Client.connect(c, "alice", "bob", "alice v2 @C")),
        ("bob", await open_v1(c, "bob", "alice", "bob v1 @C")),
    ]
    published_before = {s.label: metric(s, "chatd_redis_published_total") for s in (a, b, c)}
    assert all(v is not None for v in published_before.values()), published_before
    received: dict[str, list[dict]] = {client.label: [] for _, client in clients}
    own: dict[str, set[int]] = {client.label: set() for _, client in clients}
    delivered: list[dict] = []  # the chat as the receivers saw it, in send order
    sent_on = {"A": 0, "B": 0, "C": 0}

    rounds = 3
    for round_ in range(rounds):
        for index, (user, sender) in enumerate(clients):
            text = f"round {round_}: {sender.label} says hi"
            ack = await send(sender, user, text)
            sent_on["ABCC"[index]] += 1
            frames = []
            for _, receiver in clients:
                if receiver is sender:
                    continue
                frame = await next_message(receiver)
                assert (frame["sender"], frame["text"]) == (user, text), (
                    f"{receiver.label}: expected {user}'s {text!r} next, got {frame!r}")
                received[receiver.label].append(frame)
                frames.append(frame)
            for frame in frames[1:]:
                same_message(text, frame, frames[0])
            assert frames[0]["seq"] == len(delivered) + 1, (
                f"{text!r} got seq {frames[0]['seq']}, expected {len(delivered) + 1}")
            if ack is not None:
                assert (ack["id"], ack["seq"], ack["ts"]) == (
                    frames[0]["id"], frames[0]["seq"], frames[0]["ts"]), (ack, frames[0])
            own[sender.label].add(frames[0]["seq"])  # v1: the seq the receivers saw
            delivered.append(frames[0])

    # A last message through Redis is the positive marker: it must be every receiver's
    # next frame (nothing repeated before it), then nothing follows.
    marker_user, marker_sender = clients[3]
    await send(marker_sender, marker_user, "marker")
    for _, receiver in clients[:3]:
        frame = await next_message(receiver)
        assert frame["text"] == "marker", f"{receiver.label}: expected the marker, got {frame!r}"
        received[receiver.label].append(frame)
    delivered.append(frame)
    own[marker_sender.label].add(frame["seq"])
    await expect_nothing_more([client for _, client in clients])

    last = len(delivered)
    for _, client in clients:
        assert_in_seq_order_once(client.label, received[client.label], own[client.label], last)
    await assert_same_history_everywhere([a, b, c], delivered)

    # Each instance published its own messages to the others and heard theirs.
    sent_on["C"] += 1  # the marker
    for server in (a, b, c):
        published = metric(server, "chatd_redis_published_total") - \
            published_before[server.label]
        assert published >= sent_on[server.name], (
            f"{server.label}: chatd_redis_published_total rose by {published}, but "
            f"{sent_on[server.name]} messages were stored through it")
        others = last - sent_on[server.name]
        heard = metric(server, "chatd_redis_received_total")
        assert heard is not None and heard >= others, (
            f"{server.label}: chatd_redis_received_total is {heard}; {others} messages "
            "were stored by the other instances")

    # C loses its last connection of the chat, then gets one again: it hears the chat again.
    alice_a, bob_b, alice_c, bob_c = (client for _, client in clients)
    await alice_c.close()
    await bob_c.close()
    left = [await bob_b.recv_frame("presence") for _ in range(2)]  # in either order
    assert sorted((f["user"], f["devices"]) for f in left) == [("alice", 1), ("bob", 1)], left
    back = await V2Client.connect(c, "bob", "alice", "bob back @C")
    assert [m["id"] for m in back.history["messages"]] == [m["id"] for m in delivered]
    await bob_b.recv_frame("presence", user="bob", online=True, devices=2)
    await alice_a.send_message("alice", "after C came back")
    for receiver in (bob_b, back):
        frame = await next_message(receiver)
        assert (frame["text"], frame["seq"]) == ("after C came back", last + 1), frame
    ack = await back.send_and_ack(client_id(), "bob from C again")
    assert (await alice_a.recv_message("bob", "bob from C again"))["seq"] == ack["seq"]
    assert (await bob_b.recv_frame("message", text="bob from C again"))["seq"] == ack["seq"]
    await expect_nothing_more([alice_a, bob_b, back])


# ---------------------------------------------------------------------- 2. concurrent

@pytest.mark.e2e_timeout(60)
async def test_concurrent_writers_on_every_instance_give_every_receiver_one_order(
        ferretdb, redis, chatd):
    per_writer = 40
    servers = await start_cluster(chatd, ferretdb, redis, "--messages-per-second", "0",
                                  "--history-limit", "1000")
    total = per_writer * len(servers)
    writers = [await V2Client.connect(s, "alice", "bob", f"alice writer @{s.name}")
               for s in servers]
    readers = [await V2Client.connect(s, "bob", "alice", f"bob reader @{s.name}")
               for s in servers]
    readers.append(await open_v1(servers[1], "bob", "alice", f"bob v1 reader @B"))

    async def write(writer: V2Client) -> tuple[list[dict], list[dict]]:
        items = [(client_id(), f"{writer.label} #{n}") for n in range(per_writer)]
        others: list[dict] = []
        acks = await send_many(writer, items, window=16, collect=("message",),
                               received=others, timeout=15)
        assert [ack["client_id"] for ack in acks] == [cid for cid, _ in items], (
            f"{writer.label}: acks not in send order")
        assert [a["seq"] for a in acks] == sorted(a["seq"] for a in acks), acks
        # The other writers' messages keep coming after this one's acks are in.
        while len(others) < total - per_writer:
            others.append(await next_message(writer, timeout=15))
        return acks, others

    async def read(reader: ChatClient) -> list[dict]:
        return [await next_message(reader, timeout=15) for _ in range(total)]

    started = time.monotonic()
    results = await asyncio.gather(*(write(w) for w in writers), *(read(r) for r in readers))
    took = time.monotonic() - started
    written, read_lists = results[:len(writers)], results[len(writers):]

    acked = {ack["seq"]: ack for acks, _ in written for ack in acks}
    # One seq each. The chat's order may hold fillers between them: where
    # FerretDB let two reservations overlap (its findAndModify is not atomic),
    # the writer that found its seq taken moved on and filled what it left.
    order = sorted(acked)
    assert len(order) == total, f"acks of {total} sends do not hold {total} seqs: {order}"
    assert order[0] >= 1 and order[-1] < 4 * total, order
    texts_by_seq = {}
    for writer, (acks, _) in zip(writers, written):
        for n, ack in enumerate(acks):
            texts_by_seq[ack["seq"]] = f"{writer.label} #{n}"

    for reader, frames in zip(readers, read_lists):
        got = [frame["seq"] for frame in frames]
        assert got == order, (
            f"{reader.label}: expected the acked seqs in order, once each; got {got}")
        for frame in frames:
            assert (frame["id"], frame["ts"]) == (acked[frame["seq"]]["id"],
                                                  acked[frame["seq"]]["ts"]), frame
            assert frame["text"] == texts_by_seq[frame["seq"]], frame
    for writer, (acks, others) in zip(writers, written):
        got = [frame["seq"] for frame in others]
        assert got == [seq for seq in order if seq not in {a["seq"] for a in acks}], (
            f"{writer.label}: the other writers' messages out of order, repeated or missing: {got}")

    # Positive marker: one more message is everyone's next frame, then nothing.
    marker = await writers[0].send_and_ack(client_id(), "marker")
    assert marker["seq"] > order[-1], marker
    for client in writers[1:] + readers:
        frame = await next_message(client)
        assert frame["seq"] == marker["seq"], f"{client.label}: expected the marker, got {frame!r}"
    await expect_nothing_more(writers + readers)

    await assert_same_history_everywhere(servers, read_lists[0] + [frame])
    fills = [metric(s, "chatd_redis_gap_fills_total") for s in servers]
    figures.report(f"scale-out: {len(servers)} writers x {per_writer} on 3 instances "
                   f"delivered in {took:.2f}s; gap fills per instance {fills}")


# ---------------------------------------------------------------------- 3. events

async def test_typing_presence_and_read_receipts_cross_instances(ferretdb, redis, chatd):
    a, b, c = await start_cluster(chatd, ferretdb, redis)
    published = metric(b, "chatd_redis_published_total")
    bob = await V2Client.connect(b, "bob", "alice", "bob @B")
    assert (bob.hello["peer_online"], bob.hello["peer_devices"]) == (False, 0), bob.hello
    # B has told the others (and Redis) of bob's connection before alice comes.
    await wait_metric(b, "chatd_redis_published_total", lambda v: v > published,
                      f"> {published} (bob's presence published)")

    alice = await V2Client.connect(a, "alice", "bob", "alice @A")
    # Bob's connection on B counts for alice's hello on A.
    assert (alice.hello["peer"], alice.hello["peer_online"], alice.hello["peer_devices"]) == (
        "bob", True, 1), f"alice's hello on A must count bob's connection on B: {alice.hello}"
    await bob.recv_frame("presence", user="alice", online=True, devices=1)

    # Typing from A reaches bob on B.
    await alice.send_frame("typing", typing=True)
    assert await bob.recv_frame("typing") == {"type": "typing", "user": "alice", "typing": True}
    await alice.send_frame("typing", typing=False)
    assert await bob.recv_frame("typing") == {"type": "typing", "user": "alice", "typing": False}
    await bob.send_frame("typing", typing=True)
    assert await alice.recv_frame("typing") == {"type": "typing", "user": "bob", "typing": True}

    # Read receipts both ways.
    first = await alice.send_and_ack(client_id(), "did you get this?")
    assert (await bob.recv_frame("message", text="did you get this?"))["seq"] == first["seq"]
    await bob.send_frame("read", seq=first["seq"])
    assert await alice.recv_frame("read") == {"type": "read", "user": "bob", "seq": first["seq"]}
    reply = await bob.send_and_ack(client_id(), "yes")
    assert (await alice.recv_frame("message", text="yes"))["seq"] == reply["seq"]
    await alice.send_frame("read", seq=reply["seq"])
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": reply["seq"]}

    # A second device of bob's on C: its hello counts alice on A, and carries the stored
    # receipts; alice hears of the device, and bob's first device too.
    bob2 = await V2Client.connect(c, "bob", "alice", "bob's second device @C")
    assert {k: bob2.hello[k] for k in ("peer_online", "peer_devices", "last_seq",
                                       "my_read_seq", "peer_read_seq")} == {
        "peer_online": True, "peer_devices": 1, "last_seq": reply["seq"],
        "my_read_seq": first["seq"], "peer_read_seq": reply["seq"]}, bob2.hello
    await alice.recv_frame("presence", user="bob", online=True, devices=2)
    await bob.recv_frame("presence", user="bob", online=True, devices=2)
    # Alice's typing and receipts reach both of bob's devices; bob's own receipt from B
    # reaches his device on C.
    await alice.send_frame("typing", typing=True)
    for device in (bob, bob2):
        assert await device.recv_frame("typing") == {"type": "typing", "user": "alice",
                                                     "typing": True}
    await bob.send_frame("read", seq=reply["seq"])
    assert await bob2.recv_frame("read") == {"type": "read", "user": "bob", "seq": reply["seq"]}
    assert await alice.recv_frame("read") == {"type": "read", "user": "bob", "seq": reply["seq"]}

    # Leaving is counted across instances too.
    await bob2.close()
    await alice.recv_frame("presence", user="bob", online=True, devices=1)
    await bob.recv_frame("presence", user="bob", online=True, devices=1)
    await alice.close()
    await bob.recv_frame("presence", user="alice", online=False, devices=0)
    late = await V2Client.connect(c, "bob", "alice", "bob's late device @C")
    assert (late.hello["peer_online"], late.hello["peer_devices"]) == (False, 0), late.hello
    await bob.recv_frame("presence", user="bob", online=True, devices=2)
    await bob.expect_nothing_before_pong("after the events", ignore_presence=False)


async def settled_presence(client: V2Client, user: str, devices: int,
                           quiet: float = SILENCE_S) -> list[dict]:
    """Presence frames of `user` until one says `devices`, then a quiet window: any later
    frame must not change it. Returns what came (for the failure message)."""
    frames: list[dict] = []
    while not frames or frames[-1]["devices"] != devices:
        frame = await client.recv_frame("presence", timeout=5)
        assert frame["user"] == user, f"{client.label}: {frame!r}"
        frames.append(frame)
    while True:
        try:
            raw = await asyncio.wait_for(client.ws.recv(), quiet)
        except asyncio.TimeoutError:
            return frames
        frame = json.loads(raw)
        frames.append(frame)
        assert frame.get("type") == "presence" and frame.get("user") == user, (
            f"{client.label}: unexpected {frame!r}")
        assert frame["devices"] == devices and frame["online"] is (devices > 0), (
            f"{client.label}: {user} has {devices} connections, but the presence frames "
            f"ended with {frame!r}; all of them: {[f['devices'] for f in frames]}")


async def test_simultaneous_comings_and_goings_on_two_instances_settle_on_the_true_count(
        ferretdb, redis, chatd):
    """Alice opens, then closes, a connection on A and one on B at the same moment, a few
    times: bob on C must end up with the true count each time (the last presence
    frame he gets says 2, then 0), not a stale total from the slower instance."""
    a, b, c = await start_cluster(chatd, ferretdb, redis)
    bob = await V2Client.connect(c, "bob", "alice", "bob @C")
    for round_ in range(5):
        both = await asyncio.gather(
            V2Client.connect(a, "alice", "bob", f"alice @A, round {round_}"),
            V2Client.connect(b, "alice", "bob", f"alice @B, round {round_}"))
        await settled_presence(bob, "alice", 2)
        await asyncio.gather(*(client.close() for client in both))
        await settled_presence(bob, "alice", 0)
    late = await V2Client.connect(c, "bob", "alice", "bob's late device @C")
    assert (late.hello["peer_online"], late.hello["peer_devices"]) == (False, 0), late.hello


# ---------------------------------------------------------------------- 4. Redis outage

@pytest.mark.e2e_timeout(60)
async def test_redis_killed_and_restarted_loses_and_repeats_nothing(ferretdb, redis, chatd):
    a, b, c = await start_cluster(chatd, ferretdb, redis)
    alice_a = await V2Client.connect(a, "alice", "bob", "alice v2 @A")
    bob_a = await V2Client.connect(a, "bob", "alice", "bob v2 @A")
    bob_b = await V2Client.connect(b, "bob", "alice", "bob v2 @B")
    alice_b = await open_v1(b, "alice", "bob", "alice v1 @B")
    bob_c = await open_v1(c, "bob", "alice", "bob v1 @C")
    everyone = [alice_a, bob_a, bob_b, alice_b, bob_c]
    seen: dict[str, list[dict]] = {client.label: [] for client in everyone}
    own: dict[str, set[int]] = {client.label: set() for client in everyone}

    first = await alice_a.send_and_ack(client_id(), "before the outage")
    own[alice_a.label].add(first["seq"])
    for client in everyone[1:]:
        await messages_until(client, first["seq"], seen[client.label])

    redis.kill()
    for server in (a, b, c):
        await wait_redis_connected(server, 0)
        status, body = await wait_readyz_redis(server, "unavailable")
        assert status == 200 and body["status"] == "ready", (
            f"{server.label}: Redis down must not make the instance unready: {status} {body}")

    # Same-instance chat on A goes on: alice and bob answer each other.
    outage = []
    for n in range(4):
        ack = await alice_a.send_and_ack(client_id(), f"during the outage {n}")
        own[alice_a.label].add(ack["seq"])
        frame = await next_message(bob_a)
        assert (frame["seq"], frame["text"]) == (ack["seq"], f"during the outage {n}"), frame
        seen[bob_a.label].append(frame)
        outage.append(ack["seq"])
    reply = await bob_a.send_and_ack(client_id(), "bob answers on A")
    own[bob_a.label].add(reply["seq"])
    frame = await next_message(alice_a)
    assert (frame["seq"], frame["text"]) == (reply["seq"], "bob answers on A"), frame
    seen[alice_a.label].append(frame)

    # And on B: bob writes, alice's v1 connection there gets it. B has not heard of A's
    # messages (Redis is down), so it finds the gap and reads them from the store first.
    on_b = await bob_b.send_and_ack(client_id(), "bob writes on B")
    own[bob_b.label].add(on_b["seq"])
    await messages_until(alice_b, on_b["seq"], seen[alice_b.label])
    assert [f["seq"] for f in seen[alice_b.label]] == list(range(1, on_b["seq"] + 1)), (
        f"{alice_b.label}: during the outage, expected 1..{on_b['seq']} in order "
        f"(A's messages from the store, then B's own), got {seen[alice_b.label]!r}")
    assert seen[alice_b.label][-1]["text"] == "bob writes on B"
    fills_before_restart = [metric(s, "chatd_redis_gap_fills_total") for s in (a, b, c)]

    redis.start()  # same port
    for server in (a, b, c):
        await wait_redis_connected(server, 1)
        status, body = await wait_readyz_redis(server, "ok")
        assert status == 200, (server.label, status, body)

    # Without any new message: each instance re-reads what its connections missed.
    # C (no writes during the outage) gets everything from A and B; A gets B's message;
    # B's bob gets A's messages (B already read them for alice's v1 connection).
    last = on_b["seq"]
    for client in everyone:
        await messages_until(client, last, seen[client.label], own[client.label], timeout=10)

    # Traffic flows across instances again: bob writes from C, everyone else hears it.
    await bob_c.send_message("bob", "after the outage")
    for client in everyone[:-1]:
        frame = await next_message(client)
        assert frame["text"] == "after the outage", (
            f"{client.label}: expected 'after the outage' next, got {frame!r}")
        seen[client.label].append(frame)
    last = frame["seq"]
    own[bob_c.label].add(last)
    await expect_nothing_more(everyone)

    for client in everyone:
        assert_in_seq_order_once(client.label, seen[client.label], own[client.label], last)
    await assert_same_history_everywhere((a, b, c), seen[alice_b.label])
    fills = [metric(s, "chatd_redis_gap_fills_total") for s in (a, b, c)]
    figures.report(f"scale-out Redis outage: gap fills per instance {fills_before_restart} "
                   f"before the restart, {fills} after")


@pytest.mark.e2e_timeout(45)
async def test_presence_is_counted_across_instances_again_after_a_redis_restart(
        ferretdb, redis, chatd):
    """Redis keeps nothing (no persistence): once it is back, each instance's
    connections must count again in hellos and presence events."""
    a, b, c = await start_cluster(chatd, ferretdb, redis)
    bob_a = await V2Client.connect(a, "bob", "alice", "bob v2 @A")
    bob_b = await open_v1(b, "bob", "alice", "bob v1 @B")
    await bob_a.recv_frame("presence", user="bob", online=True, devices=2)
    alice_c = await V2Client.connect(c, "alice", "bob", "alice v2 @C")
    assert (alice_c.hello["peer_online"], alice_c.hello["peer_devices"]) == (True, 2), (
        alice_c.hello)
    await bob_a.recv_frame("presence", user="alice", online=True, devices=1)

    redis.kill()
    await asyncio.gather(*(wait_redis_connected(s, 0) for s in (a, b, c)))
    redis.start()  # empty: the presence entries are gone
    await asyncio.gather(*(wait_redis_connected(s, 1) for s in (a, b, c)))
    # A round trip through the restarted Redis, A -> C and C -> A and B.
    ack = await bob_a.send_and_ack(client_id(), "are you still there?")
    assert (await alice_c.recv_frame("message", text="are you still there?"))["seq"] == \
        ack["seq"]
    assert (await bob_b.recv_message("bob", "are you still there?"))["seq"] == ack["seq"]
    ack = await alice_c.send_and_ack(client_id(), "yes")
    assert (await bob_a.recv_frame("message", text="yes"))["seq"] == ack["seq"]
    assert (await bob_b.recv_message("alice", "yes"))["seq"] == ack["seq"]

    # Nobody came or went: bob's two connections (A, B) and alice's one (C) still count.
    alice_b = await V2Client.connect(b, "alice", "bob", "alice's second device @B")
    assert (alice_b.hello["peer_online"], alice_b.hello["peer_devices"]) == (True, 2), (
        f"after the Redis restart, a hello on B must still count bob's connections on A and "
        f"B: {alice_b.hello}")
    await bob_a.recv_frame("presence", user="alice", online=True, devices=2)
    await alice_c.recv_frame("presence", user="alice", online=True, devices=2)


# ---------------------------------------------------------------------- gap fill

@pytest.mark.e2e_timeout(45)
async def test_a_publish_held_up_in_redis_is_filled_from_the_store_and_not_repeated(
        ferretdb, redis, chatd):
    """CLIENT PAUSE WRITE holds every PUBLISH in Redis (subscribers stay connected): an
    instance that commits past a message it has not heard of holds its own for
    --redis-gap-ms, then reads the missing one from the store; the late publish, when
    it comes, is dropped."""
    a, b = await start_cluster(chatd, ferretdb, redis, "--redis-gap-ms", "100", count=2)
    alice_a = await V2Client.connect(a, "alice", "bob", "alice v2 @A")
    bob_b = await V2Client.connect(b, "bob", "alice", "bob v2 @B")
    alice_b = await open_v1(b, "alice", "bob", "alice v1 @B")
    first = await alice_a.send_and_ack(client_id(), "hello")
    assert (await bob_b.recv_frame("message", text="hello"))["seq"] == first["seq"]
    assert (await alice_b.recv_message("alice", "hello"))["seq"] == first["seq"]
    fills_before = metric(b, "chatd_redis_gap_fills_total")
    assert fills_before is not None

    assert redis.command("CLIENT", "PAUSE", "20000", "WRITE") == "OK"
    try:
        held = await alice_a.send_and_ack(client_id(), "held up in redis")
        mine = await bob_b.send_and_ack(client_id(), "bob on B, after it")
        assert mine["seq"] == held["seq"] + 1, (held, mine)
        # B hears nothing from A while publishes wait: it fills the gap from the store.
        frame = await bob_b.recv_frame("message", timeout=5)
        assert (frame["seq"], frame["id"], frame["text"]) == (
            held["seq"], held["id"], "held up in redis"), frame
        gap_filled = await alice_b.recv_messages(2, timeout=5)
        assert [(f["seq"], f["text"]) for f in gap_filled] == [
            (held["seq"], "held up in redis"), (mine["seq"], "bob on B, after it")], gap_filled
        await wait_metric(b, "chatd_redis_gap_fills_total", lambda v: v > fills_before,
                          f"> {fills_before}")
    finally:
        redis.command("CLIENT", "UNPAUSE")

    # The held-up publishes go out: A gets bob's message, B drops A's late one.
    frame = await alice_a.recv_frame("message", text="bob on B, after it")
    assert frame["seq"] == mine["seq"]
    last = await alice_a.send_and_ack(client_id(), "marker")
    assert (await bob_b.recv_frame("message", text="marker"))["seq"] == last["seq"]
    assert (await alice_b.recv_message("alice", "marker"))["seq"] == last["seq"]
    await expect_nothing_more([alice_a, bob_b, alice_b])


# ---------------------------------------------------------------------- 5. instance killed

async def until_frame(client: V2Client, type_: str, inbox: list[dict],
                      timeout: float = RECV_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
    """The next frame of `type_` with `fields`; message frames before it go to `inbox`
    (a gap filled from the store may bring one at any time), anything else fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await client.recv_frame(timeout=max(deadline - loop.time(), 0.01))
        if frame["type"] == "message" and type_ != "message":
            inbox.append(frame)
            continue
        assert frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()), (
            f"{client.label}: expected a {type_!r} frame with {fields}, got {frame!r}")
        return frame


async def send_collect(client: V2Client, text: str, inbox: list[dict],
                       cid: str | None = None) -> dict[str, Any]:
    """Sends one message; returns its ack, messages arriving before it go to `inbox`."""
    cid = cid or client_id()
    await client.send_text(cid, text)
    ack = await until_frame(client, "ack", inbox, client_id=cid)
    return ack


@pytest.mark.e2e_timeout(60)
async def test_killed_instance_clients_resume_elsewhere_and_its_user_goes_offline(
        ferretdb, redis, chatd):
    a, b, c = await start_cluster(chatd, ferretdb, redis,
                                  "--presence-ttl-seconds", str(PRESENCE_TTL_S))
    bob = await V2Client.connect(b, "bob", "alice", "bob @B")
    alice = await V2Client.connect(a, "alice", "bob", "alice @A")
    await bob.recv_frame("presence", user="alice", online=True, devices=1)
    bob_inbox: list[dict] = []  # every message bob @B is given
    bob_acks: list[dict] = []

    alice_seen: list[dict] = []
    for n in range(2):
        ack = await alice.send_and_ack(client_id(), f"alice {n}")
        bob_inbox.append(await bob.recv_frame("message", text=f"alice {n}"))
        assert bob_inbox[-1]["seq"] == ack["seq"]
        bob_acks.append(await bob.send_and_ack(client_id(), f"bob {n}"))
        alice_seen.append(await alice.recv_frame("message", text=f"bob {n}"))
    # Two more from bob, then alice sends and A dies at once: she may or may not have
    # bob's two, and her send may or may not have been stored (she got no ack).
    in_flight = [await bob.send_and_ack(client_id(), f"bob in flight {n}") for n in range(2)]
    last_words = client_id()
    await alice.send_text(last_words, "alice's last words on A")

    a.kill()
    killed_at = time.monotonic()
    a.stop()  # collects the exit: the teardown expects no SIGTERM exit from it
    for frame in await drain_until_closed(alice):
        assert frame.get("type") in ("message", "presence"), (
            f"alice @A: unexpected frame before A died: {frame!r}")
        if frame["type"] == "message":
            alice_seen.append(frame)
    got = [frame["seq"] for frame in alice_seen]
    assert got == sorted(set(got)), f"alice @A got {got} before A died"
    last_seen = got[-1]

    # Bob writes while alice is away.
    gap = [await send_collect(bob, f"bob while alice is away {n}", bob_inbox)
           for n in range(3)]

    # Nobody closed alice's connection on A: her presence there runs out with the TTL.
    await until_frame(bob, "presence", bob_inbox, timeout=PRESENCE_EXPIRY_TIMEOUT_S,
                      user="alice", online=False, devices=0)
    offline_after = time.monotonic() - killed_at
    figures.report(f"scale-out: killed instance's user offline for the peer after "
                   f"{offline_after:.2f}s (presence TTL {PRESENCE_TTL_S}s)")
    watcher = await V2Client.connect(b, "bob", "alice", "bob's second device @B")
    assert (watcher.hello["peer_online"], watcher.hello["peer_devices"]) == (False, 0), (
        f"alice's connection on the killed instance still counts: {watcher.hello}")
    await until_frame(bob, "presence", bob_inbox, user="bob", online=True, devices=2)

    # Alice resumes on C, which had no connection of this chat yet, from the last seq
    # she saw: everything after it, once, in order (her cut-off send too, if stored).
    resumed = await V2Client.connect(c, "alice", "bob", "alice resumed @C", after=last_seen)
    assert (resumed.hello["peer_online"], resumed.hello["peer_devices"]) == (True, 2), (
        f"alice's hello on C must count bob's two devices on B: {resumed.hello}")
    bobs = [ack for ack in in_flight + gap if ack["seq"] > last_seen]
    replay: list[dict] = []
    while {ack["seq"] for ack in bobs} - {frame["seq"] for frame in replay}:
        replay.append(await resumed.recv_frame("message"))
    stored_last_words = [f for f in replay if f["text"] == "alice's last words on A"]
    assert [f["seq"] for f in replay] == list(range(last_seen + 1, gap[-1]["seq"] + 1)), (
        f"resume after {last_seen}: expected {last_seen + 1}..{gap[-1]['seq']} in order, "
        f"got {replay!r}")
    assert [(f["id"], f["seq"]) for f in replay if f not in stored_last_words] == [
        (ack["id"], ack["seq"]) for ack in bobs]
    await resumed.expect_nothing_before_pong("nothing after the replay")
    await until_frame(bob, "presence", bob_inbox, user="alice", online=True, devices=1)
    await watcher.recv_frame("presence", user="alice", online=True, devices=1)

    # Alice sends her last words again with the same client id: stored once.
    retry = await resumed.send_and_ack(last_words, "alice's last words on A")
    if stored_last_words:
        assert retry["duplicate"] is True and (retry["id"], retry["seq"]) == (
            stored_last_words[0]["id"], stored_last_words[0]["seq"]), (retry, stored_last_words)
    else:
        assert retry["duplicate"] is False and retry["seq"] == gap[-1]["seq"] + 1, retry
    figures.report("scale-out: the send cut off by the kill was "
                   + ("stored before it (the retry is a duplicate)" if stored_last_words
                      else "lost with it (the retry stores it)"))

    # Live again, both ways, across B and C.
    live = await send_collect(bob, "welcome back", bob_inbox)
    frame = await resumed.recv_frame("message", text="welcome back")
    assert frame["seq"] == live["seq"] == max(gap[-1]["seq"], retry["seq"]) + 1, (frame, live)
    back = await resumed.send_and_ack(client_id(), "thanks")
    bob_inbox.append(await bob.recv_frame("message", text="thanks"))
    assert bob_inbox[-1]["seq"] == back["seq"]
    watched = [await watcher.recv_frame("message") for _ in range(2 if stored_last_words else 3)]
    assert [f["text"] for f in watched][-2:] == ["welcome back", "thanks"], watched
    await expect_nothing_more([bob, resumed, watcher])

    # Bob @B got alice's messages, her last words once, in seq order.
    bob_own = {ack["seq"] for ack in bob_acks + in_flight + gap + [live]}
    assert_in_seq_order_once(bob.label, bob_inbox, bob_own, back["seq"])
    assert [f["text"] for f in bob_inbox].count("alice's last words on A") == 1, bob_inbox


async def test_sigterm_of_an_instance_takes_its_users_offline_at_once(ferretdb, redis, chatd):
    """A drained instance (SIGTERM, as in a rolling restart) says its connections are
    gone: the peer need not wait for the presence TTL (30 s here)."""
    a, b = await start_cluster(chatd, ferretdb, redis, count=2)
    bob = await V2Client.connect(b, "bob", "alice", "bob @B")
    alice = await V2Client.connect(a, "alice", "bob", "alice @A")
    await bob.recv_frame("presence", user="alice", online=True, devices=1)
    ack = await alice.send_and_ack(client_id(), "going for a restart")
    assert (await bob.recv_frame("message", text="going for a restart"))["seq"] == ack["seq"]

    a.send_sigterm()
    await alice.expect_close(1001)
    assert await in_thread(a.wait_exit) == 0, a.log_text(40)
    await bob.recv_frame("presence", user="alice", online=False, devices=0, timeout=5)
    # Alice comes back on B itself, resuming.
    again = await V2Client.connect(b, "alice", "bob", "alice @B", after=ack["seq"])
    assert (again.hello["peer_online"], again.hello["peer_devices"]) == (True, 1), again.hello
    await again.expect_nothing_before_pong("nothing was missed")
    await bob.recv_frame("presence", user="alice", online=True, devices=1)


@pytest.mark.parametrize("connections", ["pubsub", "normal"])
async def test_a_cut_redis_connection_loses_nothing(ferretdb, redis, chatd, connections):
    """CLIENT KILL TYPE pubsub cuts every instance's subscriber, TYPE normal every
    publisher (Redis itself stays up); what is committed meanwhile still reaches the
    other instances, without a later message to reveal the gap."""
    a, b = await start_cluster(chatd, ferretdb, redis, count=2)
    alice = await V2Client.connect(a, "alice", "bob", "alice @A")
    bob = await V2Client.connect(b, "bob", "alice", "bob @B")
    first = await alice.send_and_ack(client_id(), "before the cut")
    assert (await bob.recv_frame("message", text="before the cut"))["seq"] == first["seq"]

    cut = redis.command("CLIENT", "KILL", "TYPE", connections)
    assert cut >= 2, f"CLIENT KILL TYPE {connections} cut {cut} connections"
    sent = [await alice.send_and_ack(client_id(), f"right after the cut {n}") for n in range(3)]
    for ack in sent:
        frame = await bob.recv_frame("message", timeout=10)
        assert (frame["seq"], frame["id"]) == (ack["seq"], ack["id"]), (
            f"bob @B: expected seq {ack['seq']} next, got {frame!r}")
    await asyncio.gather(*(wait_redis_connected(s, 1) for s in (a, b)))
    # And onwards, both ways, once each.
    reply = await bob.send_and_ack(client_id(), "all here")
    assert (await alice.recv_frame("message", text="all here"))["seq"] == reply["seq"]
    last = await alice.send_and_ack(client_id(), "marker")
    assert (await bob.recv_frame("message", text="marker"))["seq"] == last["seq"]
    await expect_nothing_more([alice, bob])


# ---------------------------------------------------------------------- 6. start-up

async def test_redis_url_without_mongo_uri_is_refused_at_start(redis, chatd):
    for how, args, env in (
            ("REDIS_URL", (), {"REDIS_URL": redis.url}),
            ("--redis-url", ("--redis-url", redis.url), {})):
        # SQLITE_PATH names the store, so the mongodb pass does not hand it a MONGO_URI.
        server = chatd(*args, env={**env, "SQLITE_PATH": "chat.db"}, wait=False)
        code = await in_thread(server.wait_exit)
        log = server.log_text()
        assert code == 2, (f"{how} without MONGO_URI: expected exit code 2, got "
                           f"{'no exit (killed)' if code is None else code}\n--- log ---\n{log}")
        assert "MONGO_URI" in log, f"{how} without MONGO_URI: the message must name it:\n{log}"
        assert not server.log_contains("listening on"), log


async def test_presence_ttl_below_three_seconds_is_refused_at_start(chatd):
    # Neither server needs to exist: the setting is refused before anything connects.
    server = chatd("--redis-url", f"redis://127.0.0.1:{free_port()}",
                   "--presence-ttl-seconds", "2",
                   env={"MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/chatd_scaleout"},
                   wait=False)
    code = await in_thread(server.wait_exit)
    log = server.log_text()
    assert code not in (0, None), f"--presence-ttl-seconds 2: expected a refusal, got {code}"
    assert "presence" in log.lower(), f"the message must name the setting:\n{log}"


@pytest.mark.e2e_timeout(45)
async def test_unreachable_redis_at_start_is_waited_for(ferretdb, redis_servers, chatd):
    database = unique_database("chatd_scaleout")
    later = redis_servers(start=False, port=free_port())  # nothing listens there yet
    a = start_instance(chatd, ferretdb, database, later.url)
    a.name = "A"
    status, body = await wait_readyz_redis(a, "unavailable", timeout=5)
    assert status == 200 and body["status"] == "ready", (status, body)
    assert metric(a, "chatd_redis_connected") == 0

    # Local chat works without Redis.
    alice = await V2Client.connect(a, "alice", "bob", "alice v2 @A")
    bob = await open_v1(a, "bob", "alice", "bob v1 @A")
    ack = await alice.send_and_ack(client_id(), "no redis yet")
    frame = await bob.recv_message("alice", "no redis yet")
    assert frame["seq"] == ack["seq"] == 1
    await bob.send_message("bob", "works anyway")
    assert (await alice.recv_frame("message", text="works anyway"))["seq"] == 2

    later.start()
    await wait_redis_connected(a, 1)
    status, body = await wait_readyz_redis(a, "ok", timeout=2)
    assert status == 200, (status, body)

    # It really is connected: a second instance on the same Redis hears A and is heard.
    b = start_instance(chatd, ferretdb, database, later.url)
    await wait_redis_connected(b, 1)
    bob_b = await V2Client.connect(b, "bob", "alice", "bob v2 @B")
    assert [m["text"] for m in bob_b.history["messages"]] == ["no redis yet", "works anyway"]
    ack = await alice.send_and_ack(client_id(), "now through redis")
    assert (await bob_b.recv_frame("message", text="now through redis"))["seq"] == ack["seq"]
    assert (await bob.recv_message("alice", "now through redis"))["seq"] == ack["seq"]
    reply = await bob_b.send_and_ack(client_id(), "heard you")
    assert (await alice.recv_frame("message", text="heard you"))["seq"] == reply["seq"]
    assert (await bob.recv_message("bob", "heard you"))["seq"] == reply["seq"]

    # Without REDIS_URL an instance says so.
    single = chatd(env={"MONGO_URI": ferretdb.uri(database)})
    wait_readyz(single, 200)
    assert readyz_json(single)[1].get("redis") == "off", readyz_json(single)
