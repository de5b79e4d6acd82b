"""Outgoing webhooks (/work/spec/webhooks.md): chatd POSTs signed events about committed
messages and read receipts to WEBHOOK_URL, at least once, in seq order per chat.

The receiver is real (webhook_receiver.py: an HTTP/1.1 server on 127.0.0.1 that records
every request, answers what a test tells it, hangs, or goes down and comes back on the
same port). Every wait is on an event (a request arriving, a frame, a metric reaching a
value, with a deadline); "no event for m1" is checked with the per-chat order: m2's
event arriving means m1's would already have come.

What is checked:

* message.offline: exactly one for a message to a user with no connection to the chat
  (headers, body, signature, ids as acked and stored); none when the recipient is
  connected, on this instance or (mongodb pass) another one through Redis;
* retries: 500 then 200 -> delivered, same id and body, attempts 1 and 2, the backoff,
  the counters; a receiver down under load -> backlog while down, then every committed
  message's message.created, in seq order per chat, and the backlog back to 0;
* durability: chatd SIGKILLed with events pending -> after a restart every acked
  message's events arrive, none invented;
* a hanging receiver does not hold up the users' messages;
* the signature: tampering with the body, t or the secret, or an old t, is detected;
* attempts exhausted -> kept as failed, listed and retried through the admin API
  (Bearer ADMIN_TOKEN; 401 otherwise; 404 with ADMIN_TOKEN unset), the chat goes on;
* message.read, WEBHOOK_INCLUDE_TEXT=false, the metrics, and the settings chatd refuses.

List `webhook_receiver` before `chatd` (and Redis/FerretDB before `chatd`): teardown then
stops chatd first, while the receiver still listens.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import re
import subprocess
import time
from typing import Any

import pytest

import figures
from chat_client import TS_PATTERN, ChatClient, in_thread, parse_ts
from chatd_process import E2E_STORE, chatd_binary
from server_metrics import Metrics, chat_history as history, poll, scrape
from v2_client import V2Client, send_many
from webhook_receiver import PATH, QUERY, WebhookReceiver, WebhookRequest, parse_signature, \
    sign, verify_signature

SECRET = "e2e-webhook-secret-7f3a9c2d51b8"   # 30 bytes
ADMIN_TOKEN = "e2e-admin-token-c0ffee-2718"
EVENT_KEYS = {"id", "type", "ts", "data"}
MESSAGE_DATA_KEYS = {"chat", "users", "recipient", "message"}
MESSAGE_KEYS = {"type", "id", "seq", "sender", "text", "ts"}
READ_DATA_KEYS = {"chat", "users", "reader", "peer", "seq"}
SIGNATURE = re.compile(r"^t=([0-9]+),v1=([0-9a-f]{64})$")
READ_ID = re.compile(r"^evt_read_[0-9a-f]{24}$")
ROUTINE_HEADERS = ("Content-Type", "User-Agent", "Chatd-Event-Id", "Chatd-Event-Type",
                   "Chatd-Delivery-Attempt", "Chatd-Signature")
TARGET = f"{PATH}?{QUERY}"
TYPE_ORDER = {"message.created": 0, "message.offline": 1}


# ---------------------------------------------------------------------- starting chatd

def start(chatd, receiver: WebhookReceiver, *args: str, backoff: tuple[int, int] = (50, 200),
          env: dict[str, str] | None = None, **kwargs: Any):
    """chatd with webhooks to `receiver`, quick retries and no message rate limit."""
    flags = ["--webhook-url", receiver.url, "--webhook-secret", SECRET,
             "--webhook-backoff-min-ms", str(backoff[0]),
             "--webhook-backoff-max-ms", str(backoff[1]),
             "--messages-per-second", "0", *args]
    return chatd(*flags, env=env, **kwargs)


@functools.lru_cache(maxsize=None)
def chatd_version() -> str:
    output = subprocess.run([str(chatd_binary()), "--version"], capture_output=True,
                            text=True, timeout=10).stdout.strip()
    return output.split()[-1] if output else ""


def offline_id(message_id: str) -> str:
    return f"evt_{message_id}_offline"


def created_id(message_id: str) -> str:
    return f"evt_{message_id}_created"


# ---------------------------------------------------------------------- chatd's HTTP side

def request(server, method: str, path: str, token: str | None = None,
            authorization: str | None = None) -> tuple[int, Any]:
    """One request to chatd; (status, JSON body or None)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path, body=b"" if method == "POST" else None,
                           headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, data


async def api(server, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    return await asyncio.to_thread(request, server, method, path, **kwargs)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.value(name, **labels) if metrics.has(name, **labels) else None


async def wait_metrics(server, predicate, what: str, timeout: float = 10.0) -> Metrics:
    """Scrapes /metrics until `predicate(metrics)` holds (a missing series counts as not)."""
    def holds(metrics: Metrics) -> bool:
        try:
            return bool(predicate(metrics))
        except (AssertionError, TypeError):
            return False
    return await poll(lambda: scrape(server), holds, f"{server.label}: {what}", timeout)


def backlog(metrics: Metrics) -> float:
    return metrics.value("chatd_webhook_backlog")


# ---------------------------------------------------------------------- checking requests

def assert_signed(request: WebhookRequest, secret: str = SECRET) -> None:
    assert verify_signature(secret, request.headers, request.body), (
        f"signature does not verify: {request.header('Chatd-Signature')!r} over "
        f"{request.body[:200]!r}")


def assert_routine_headers(request: WebhookRequest, event_id: str, type_: str,
                           attempt: int | None = 1) -> None:
    """POST to WEBHOOK_URL's path and query with every documented header once."""
    what = request.describe()
    assert request.method == "POST", what
    assert request.target == TARGET, (
        f"POSTed to {request.target!r}, expected WEBHOOK_URL's path and query {TARGET!r}")
    for name in ROUTINE_HEADERS:
        assert len(request.header_values(name)) == 1, (
            f"header {name} must be sent once, got {request.header_values(name)}: {what}")
    media_type, *parameters = [part.strip().lower()
                               for part in request.header("Content-Type").split(";")]
    assert media_type == "application/json" and set(parameters) <= {"charset=utf-8"}, (
        f"Content-Type {request.header('Content-Type')!r}")
    assert request.header("User-Agent") == f"chatd/{chatd_version()}", (
        f"User-Agent {request.header('User-Agent')!r}, expected chatd/{chatd_version()}")
    assert request.event_id == event_id, what
    assert request.event_type == type_, what
    if attempt is not None:
        assert request.header("Chatd-Delivery-Attempt") == str(attempt), what
    signature = SIGNATURE.match(request.header("Chatd-Signature"))
    assert signature, f"Chatd-Signature {request.header('Chatd-Signature')!r}"
    signed_at = int(signature.group(1))
    assert abs(request.arrived_wall - signed_at) <= 5, (
        f"t={signed_at} is not when the attempt was signed (arrived at "
        f"{request.arrived_wall:.0f})")
    assert request.json_error is None, f"body is not UTF-8 JSON ({request.json_error}): {what}"
    assert request.json.get("id") == event_id and request.json.get("type") == type_, what
    assert_signed(request)


def assert_message_event(request: WebhookRequest, type_: str, *, chat: str,
                         users: tuple[str, str], recipient: str, stored: dict,
                         include_text: bool = True) -> None:
    """The body of a message.offline / message.created event for the `stored` message."""
    body = request.json
    assert set(body) == EVENT_KEYS, f"event keys {sorted(body)}: {body}"
    data = body["data"]
    assert set(data) == MESSAGE_DATA_KEYS, f"data keys {sorted(data)}: {body}"
    assert data["chat"] == chat, body
    assert isinstance(data["users"], list) and sorted(data["users"]) == sorted(users), body
    assert data["recipient"] == recipient, body
    keys = MESSAGE_KEYS if include_text else MESSAGE_KEYS - {"text"}
    expected = {key: stored[key] for key in keys}
    expected["type"] = "message"
    assert data["message"] == expected, (
        f"event's message differs from the stored one:\nevent:  {data['message']}\n"
        f"stored: {stored}")
    assert body["ts"] == stored["ts"], f"event ts must be the commit time: {body}"


def first_arrivals(requests: list[WebhookRequest]) -> list[WebhookRequest]:
    seen: set[str] = set()
    firsts = []
    for request in requests:
        if request.event_id not in seen:
            seen.add(request.event_id)
            firsts.append(request)
    return firsts


def assert_repeats_identical(requests: list[WebhookRequest]) -> int:
    """Every repeat of an event id has the first one's body; returns how many repeats."""
    first: dict[str, WebhookRequest] = {}
    repeats = 0
    for request in requests:
        if request.event_id in first:
            repeats += 1
            assert request.body == first[request.event_id].body, (
                f"a repeat of {request.event_id} has another body:\n"
                f"{first[request.event_id].body!r}\n{request.body!r}")
        else:
            first[request.event_id] = request
    return repeats


def flip(body: bytes, position: int) -> bytes:
    return body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1:]


def with_signature(request: WebhookRequest, signature: str) -> list[tuple[str, str]]:
    return [(k, signature if k.lower() == "chatd-signature" else v) for k, v in request.headers]


# ---------------------------------------------------------------------- 1. message.offline

async def test_offline_recipient_gets_exactly_one_message_offline(webhook_receiver, chatd):
    receiver = webhook_receiver
    server = start(chatd, receiver)
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    assert alice.hello["peer_online"] is False, alice.hello
    ack = await alice.send_and_ack("c-1", "hello bob, are you there? ☕")
    [event] = await receiver.until_event(offline_id(ack["id"]), answered=True)
    # Positive marker: the chat's next event; m1's would have been repeated before it.
    marker = await alice.send_and_ack("c-2", "marker")
    await receiver.until_event(offline_id(marker["id"]), answered=True)
    assert [r.event_id for r in receiver.snapshot()] == [
        offline_id(ack["id"]), offline_id(marker["id"])], (
        "expected one message.offline per message and nothing else (WEBHOOK_EVENTS "
        f"defaults to message.offline): {[r.describe() for r in receiver.snapshot()]}")

    assert_routine_headers(event, offline_id(ack["id"]), "message.offline", attempt=1)
    assert event.status == 200
    chat, stored = await in_thread(history, server, "alice", "bob")
    assert chat == alice.hello["chat"]
    assert [m["id"] for m in stored] == [ack["id"], marker["id"]], stored
    assert (stored[0]["seq"], stored[0]["ts"]) == (ack["seq"], ack["ts"]) == (1, ack["ts"])
    assert_message_event(event, "message.offline", chat=chat, users=("alice", "bob"),
                         recipient="bob", stored=stored[0])
    assert event.message["text"] == "hello bob, are you there? ☕"
    assert not verify_signature(SECRET + "!", event.headers, event.body)


async def test_no_message_offline_while_the_recipient_is_connected(webhook_receiver, chatd):
    receiver = webhook_receiver
    server = start(chatd, receiver)
    # A v2 hello comes once the connection has joined its chat: bob is online
    # in it before alice connects (a v1 open returns at the upgrade, earlier).
    bob = await V2Client.connect(server, "bob", "alice", "bob")
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    assert alice.hello["peer_online"] is True, alice.hello
    m1 = await alice.send_and_ack("c-1", "m1: bob is here")
    assert (await bob.recv_frame("message"))["seq"] == m1["seq"]

    await bob.close()
    await wait_metrics(server, lambda m: m.value("chatd_connections_open") == 1,
                       "chatd_connections_open == 1 (bob's close noticed)")
    # A connection of bob's to another chat does not make him online in this one.
    await ChatClient.open(server, "bob", "carol", "bob with carol")
    await wait_metrics(server, lambda m: m.value("chatd_connections_open") == 2,
                       "chatd_connections_open == 2 (bob with carol)")
    m2 = await alice.send_and_ack("c-2", "m2: bob has gone")
    [event] = await receiver.until_event(offline_id(m2["id"]), answered=True)
    assert event.data.get("recipient") == "bob", event.describe()
    assert event.message.get("seq") == m2["seq"], event.describe()
    # Per-chat order: m1's event, had there been one, came before m2's.
    assert [r.event_id for r in receiver.snapshot()] == [offline_id(m2["id"])], (
        f"bob was connected when m1 ({m1['id']}) was sent: "
        f"{[r.describe() for r in receiver.snapshot()]}")


@pytest.mark.skipif(E2E_STORE != "mongodb", reason="instances sharing chats need the "
                    "MongoDB store (REDIS_URL needs MONGO_URI): run by the "
                    "CHATD_E2E_STORE=mongodb pass, like test_scaleout.py")
@pytest.mark.e2e_timeout(45)
async def test_no_message_offline_while_the_recipient_is_on_another_instance(
        webhook_receiver, ferretdb, redis, chatd):
    from ferretdb import unique_database, wait_readyz
    receiver = webhook_receiver
    database = unique_database("chatd_webhooks")
    servers = []
    for name in "AB":
        server = start(chatd, receiver, "--redis-url", redis.url,
                       env={"MONGO_URI": ferretdb.uri(database)})
        wait_readyz(server, 200)
        server.name = name
        servers.append(server)
    a, b = servers
    for server in servers:
        await wait_metrics(server, lambda m: m.value("chatd_redis_connected") == 1,
                           "chatd_redis_connected == 1", timeout=15)
    alice = await V2Client.connect(a, "alice", "bob", "alice @A")
    bob = await V2Client.connect(b, "bob", "alice", "bob @B")
    await alice.recv_frame("presence", user="bob", online=True, devices=1)
    m1 = await alice.send_and_ack("c-1", "m1: bob is on B")
    assert (await bob.recv_frame("message", text="m1: bob is on B"))["seq"] == m1["seq"]

    await bob.close()
    await alice.recv_frame("presence", user="bob", online=False, devices=0)
    m2 = await alice.send_and_ack("c-2", "m2: bob has gone")
    [event] = await receiver.until_event(offline_id(m2["id"]), answered=True, timeout=15)
    assert event.data.get("recipient") == "bob", event.describe()
    assert [r.event_id for r in receiver.snapshot()] == [offline_id(m2["id"])], (
        f"bob was connected on B when alice sent m1 ({m1['id']}) on A: "
        f"{[r.describe() for r in receiver.snapshot()]}")

    # One instance holds the sender's lease.
    await poll(lambda: [scrape(s).value("chatd_webhook_sender") for s in servers],
               lambda values: sorted(values) == [0, 1],
               "chatd_webhook_sender: exactly one instance holds the lease", timeout=15)


@pytest.mark.skipif(E2E_STORE != "mongodb", reason="several instances need the MongoDB store: "
                    "run by the CHATD_E2E_STORE=mongodb pass")
@pytest.mark.e2e_timeout(45)
async def test_when_the_sending_instance_dies_another_takes_over(webhook_receiver, ferretdb,
                                                                 chatd):
    from ferretdb import unique_database, wait_readyz
    receiver = webhook_receiver
    database = unique_database("chatd_webhook_lease")
    servers = []
    for _ in range(2):
        server = start(chatd, receiver, "--webhook-lease-ms", "1500",
                       env={"MONGO_URI": ferretdb.uri(database)})
        wait_readyz(server, 200)
        servers.append(server)
    values = await poll(lambda: [scrape(s).value("chatd_webhook_sender") for s in servers],
                        lambda found: sorted(found) == [0, 1],
                        "exactly one instance holds the sender's lease", timeout=15)
    sender, other = (servers[0], servers[1]) if values[0] == 1 else (servers[1], servers[0])
    # The sender delivers what the other instance's users send.
    alice = await V2Client.connect(other, "alice", "bob", "alice")
    m1 = await alice.send_and_ack("c-1", "while the sender lives")
    await receiver.until_event(offline_id(m1["id"]), answered=True, timeout=15)

    sender.kill()
    sender.stop()
    m2 = await alice.send_and_ack("c-2", "after the sender died")
    await wait_metrics(other, lambda m: m.value("chatd_webhook_sender") == 1,
                       "the surviving instance took the lease over", timeout=15)
    [event] = await receiver.until_event(offline_id(m2["id"]), answered=True, timeout=15)
    assert event.message.get("seq") == m2["seq"], event.describe()


# ---------------------------------------------------------------------- 2. retries

async def test_a_500_is_retried_and_the_200_delivers(webhook_receiver, chatd):
    receiver = webhook_receiver
    receiver.respond_with(500, default=200)
    server = start(chatd, receiver, backoff=(300, 5000))
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    ack = await alice.send_and_ack("c-1", "retried once")
    event_id = offline_id(ack["id"])
    first, second = await receiver.until_event(event_id, count=2, answered=True)
    assert (first.status, second.status) == (500, 200)
    assert (first.attempt, second.attempt) == (1, 2), (first.describe(), second.describe())
    assert first.event_id == second.event_id == event_id
    assert first.body == second.body, "a retried event must have the same body"
    assert_routine_headers(first, event_id, "message.offline", attempt=1)
    assert_routine_headers(second, event_id, "message.offline", attempt=2)
    # The wait before attempt 2: min(max, min * 2^0) * [0.5, 1] = 150..300 ms.
    wait = second.arrived - first.answered
    assert 0.14 <= wait < 2.0, f"attempt 2 came {wait * 1000:.0f} ms after the 500"

    marker = await alice.send_and_ack("c-2", "marker")
    await receiver.until_event(offline_id(marker["id"]), answered=True)
    assert len(receiver.events(event_id)) == 2, "delivered: not sent a third time"

    def counted(m: Metrics) -> bool:
        return (m.value("chatd_webhook_deliveries_total", result="retried") >= 1
                and m.value("chatd_webhook_deliveries_total", result="delivered") >= 2
                and m.value("chatd_webhook_attempts_total", outcome="5xx") >= 1
                and m.value("chatd_webhook_attempts_total", outcome="2xx") >= 2)
    metrics = await wait_metrics(server, counted, "retried >= 1, delivered >= 2")
    assert value(metrics, "chatd_webhook_deliveries_total", result="failed") in (0, None)
    assert metrics.histogram("chatd_webhook_delivery_seconds")["count"] >= 3


@pytest.mark.e2e_timeout(60)
async def test_receiver_down_under_load_then_everything_arrives_in_order(
        webhook_receiver, chatd):
    receiver = webhook_receiver
    chats, per_chat = 5, 40
    server = start(chatd, receiver, "--webhook-max-attempts", "100",
                   env={"WEBHOOK_EVENTS": "message.created"})
    receiver.down()
    clients = [await V2Client.connect(server, "alice", f"bob{i}", f"alice->bob{i}")
               for i in range(chats)]
    acks = await asyncio.gather(*(
        send_many(client, [(f"c{i}-{n}", f"chat {i} message {n}") for n in range(per_chat)])
        for i, client in enumerate(clients)))
    total = chats * per_chat

    # While down: the events wait in the store (the gauge is refreshed about every second).
    peak, oldest = 0.0, 0.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline and not (peak >= total and oldest > 0):
        metrics = await asyncio.to_thread(scrape, server)
        peak = max(peak, backlog(metrics))
        oldest = max(oldest, metrics.value("chatd_webhook_oldest_pending_seconds"))
        await asyncio.sleep(0.05)
    assert peak > 0, f"chatd_webhook_backlog stayed 0 with {total} events undeliverable"
    assert oldest > 0, "chatd_webhook_oldest_pending_seconds stayed 0 with events waiting"
    assert receiver.snapshot() == []

    committed: dict[tuple[str, int], dict] = {}
    chat_peer: dict[str, str] = {}
    for i in range(chats):
        chat, messages = await in_thread(history, server, "alice", f"bob{i}")
        chat_peer[chat] = f"bob{i}"
        assert [m["id"] for m in messages] == [a["id"] for a in acks[i]], (
            f"chat {i}: history differs from the acks")
        for message in messages:
            committed[(chat, message["seq"])] = message
    assert len(committed) == total

    came_back = time.monotonic()
    receiver.up()

    def all_arrived(requests: list[WebhookRequest]) -> bool:
        return {(r.data.get("chat"), r.message.get("seq")) for r in requests
                if r.status == 200} >= set(committed)
    await receiver.until(all_arrived, f"all {total} message.created events", timeout=30)
    drained = await wait_metrics(server, lambda m: backlog(m) == 0 and
                                 m.value("chatd_webhook_oldest_pending_seconds") == 0,
                                 "backlog back to 0", timeout=10)
    requests = receiver.snapshot()
    firsts = first_arrivals(requests)
    drain_s = max(r.arrived for r in firsts) - came_back

    seen = set()
    for r in requests:
        key = (r.data.get("chat"), r.message.get("seq"))
        assert key in committed, f"an event for a message that was never committed: " \
                                 f"{r.describe()}"
        stored = committed[key]
        assert r.event_id == created_id(stored["id"]) and r.event_type == "message.created", (
            r.describe())
        seen.add(key)
    assert seen == set(committed)
    for request in firsts:
        key = (request.data["chat"], request.message["seq"])
        peer = chat_peer[key[0]]
        assert_message_event(request, "message.created", chat=key[0], users=("alice", peer),
                             recipient=peer, stored=committed[key])
        assert_signed(request)
    repeats = assert_repeats_identical(requests)
    per_chat_order: dict[str, list[int]] = {}
    for request in firsts:
        per_chat_order.setdefault(request.data["chat"], []).append(request.message["seq"])
    for chat, seqs in per_chat_order.items():
        assert seqs == list(range(1, per_chat + 1)), (
            f"chat {chat}: first arrivals not in seq order: {seqs}")
    assert drained.value("chatd_webhook_deliveries_total", result="delivered") >= total
    figures.report(f"webhooks: receiver down, {total} message.created events over {chats} "
                   f"chats: backlog peak {peak:.0f}, oldest pending {oldest:.1f}s; drained "
                   f"in {drain_s:.2f}s after it came back ({len(requests)} requests, "
                   f"{repeats} repeats)")


@pytest.mark.e2e_timeout(60)
async def test_sigkill_with_events_pending_loses_none_and_invents_none(
        webhook_receiver, chatd):
    receiver = webhook_receiver
    args = ("--webhook-max-attempts", "100", "--webhook-lease-ms", "3000")
    env = {"WEBHOOK_EVENTS": "message.created,message.offline"}
    receiver.down()
    first = start(chatd, receiver, *args, env=env)
    alice = await V2Client.connect(first, "alice", "bob", "alice")
    acks = await send_many(alice, [(f"k-{n}", f"before the kill {n}") for n in range(30)])
    for n in range(5):  # cut off by the kill: stored or not, no ack awaited
        await alice.send_text(f"cut-{n}", f"cut off {n}")
    first.kill()
    first.stop()  # collects the exit; the teardown expects no SIGTERM exit from it

    receiver.up()
    second = start(chatd, receiver, *args, env=env, sqlite_path=first.sqlite_path)
    chat, stored = await in_thread(history, second, "alice", "bob")
    by_id = {message["id"]: message for message in stored}
    assert {ack["id"] for ack in acks} <= set(by_id), "acked messages missing after the kill"
    expected = {created_id(i) for i in by_id} | {offline_id(i) for i in by_id}

    def delivered(requests: list[WebhookRequest]) -> bool:
        return expected <= {r.event_id for r in requests if r.status == 200}
    await receiver.until(delivered, f"the {len(expected)} events of the {len(by_id)} stored "
                                    "messages", timeout=30)
    await wait_metrics(second, lambda m: backlog(m) == 0, "backlog back to 0")
    requests = receiver.snapshot()
    for request in requests:
        assert request.event_id in expected, (
            f"an event for no stored message (invented): {request.describe()}")
        message_id = request.message.get("id")
        assert_message_event(request, request.event_type, chat=chat, users=("alice", "bob"),
                             recipient="bob", stored=by_id[message_id])
        assert_signed(request)
    assert_repeats_identical(requests)
    firsts = first_arrivals(requests)
    order = [(r.message["seq"], TYPE_ORDER[r.event_type]) for r in firsts]
    assert order == sorted(order), (
        f"per chat: seq order, message.created before message.offline: {order}")
    figures.report(f"webhooks: SIGKILL with {len(expected)} events pending "
                   f"({len(stored) - len(acks)} of 5 cut-off sends stored): all delivered "
                   f"after the restart, {len(requests) - len(firsts)} repeats")


# ---------------------------------------------------------------------- 3. users first

@pytest.mark.e2e_timeout(45)
async def test_a_hanging_receiver_does_not_slow_the_users(webhook_receiver, chatd):
    receiver = webhook_receiver
    receiver.hang()
    server = start(chatd, receiver, "--webhook-timeout-ms", "30000",
                   env={"WEBHOOK_EVENTS": "message.created"})
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    first = await alice.send_and_ack("h-0", "its event hangs")
    await bob.recv_message("alice", "its event hangs")
    [hanging] = await receiver.until_event(created_id(first["id"]))

    started = time.monotonic()
    acks = await send_many(alice, [(f"h-{n}", f"message {n}") for n in range(1, 101)])
    got = await bob.recv_messages(100)
    elapsed = time.monotonic() - started
    assert [f["text"] for f in got] == [f"message {n}" for n in range(1, 101)]
    assert [f["seq"] for f in got] == [a["seq"] for a in acks] == list(range(2, 102))
    assert receiver.answered_count() == 0, "the receiver was to answer nothing meanwhile"
    assert [r.event_id for r in receiver.snapshot()] == [hanging.event_id], (
        "one chat has one POST in flight")
    assert elapsed < 10, f"100 messages took {elapsed:.1f}s with the receiver hanging"
    figures.report(f"webhooks: 100 messages delivered to bob in {elapsed:.2f}s while the "
                   "receiver hung on the chat's first event")

    receiver.release()
    ids = [created_id(first["id"])] + [created_id(a["id"]) for a in acks]
    await receiver.until(lambda reqs: set(ids) <= {r.event_id for r in reqs
                                                   if r.status == 200},
                         "all 101 events once released", timeout=20)
    assert [r.event_id for r in first_arrivals(receiver.snapshot())] == ids


# ---------------------------------------------------------------------- 4. signature

async def test_signature_tampering_is_detected(webhook_receiver, chatd):
    receiver = webhook_receiver
    server = start(chatd, receiver)
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    ack = await alice.send_and_ack("c-1", "signed and sealed")
    [event] = await receiver.until_event(offline_id(ack["id"]))
    headers, body = event.headers, event.body
    t, (v1,) = parse_signature(event.header("Chatd-Signature"))
    assert v1 == sign(SECRET, t, body), "v1 = hex HMAC-SHA256(secret, '<t>.<raw body>')"
    assert verify_signature(SECRET, headers, body)

    for position in (0, body.index(b"sealed"), len(body) - 1):
        assert not verify_signature(SECRET, headers, flip(body, position)), (
            f"byte {position} of the body changed, still verified")
    for other_t in (int(t) - 1, int(t) + 1):
        assert not verify_signature(SECRET, with_signature(event, f"t={other_t},v1={v1}"),
                                    body), f"t changed to {other_t}, still verified"
    assert not verify_signature(SECRET[:-1] + "X", headers, body)
    assert not verify_signature(SECRET[:-1], headers, body)
    assert not verify_signature(SECRET, with_signature(event, f"t={t},v1={v1[:-1]}"), body)
    assert not verify_signature(SECRET, [(k, v) for k, v in headers
                                         if k.lower() != "chatd-signature"], body)

    # A replay: a correctly signed t older than the tolerance.
    old = int(time.time()) - 301
    replayed = with_signature(event, f"t={old},v1={sign(SECRET, old, body)}")
    assert not verify_signature(SECRET, replayed, body, tolerance_s=300)
    assert verify_signature(SECRET, replayed, body, tolerance_s=600), "only its age refuses it"
    assert not verify_signature(SECRET, headers, body, now=int(t) + 301)
    assert verify_signature(SECRET, headers, body, now=int(t) + 299)


# ---------------------------------------------------------------------- 5. failed events

def failed_events(server, token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    return request(server, "GET", "/api/admin/webhooks/failed", token=token)


@pytest.mark.e2e_timeout(45)
async def test_exhausted_attempts_are_kept_as_failed_and_can_be_retried(
        webhook_receiver, chatd):
    receiver = webhook_receiver
    receiver.respond_with(default=500)
    server = start(chatd, receiver, "--webhook-max-attempts", "2",
                   env={"ADMIN_TOKEN": ADMIN_TOKEN})
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    m1 = await alice.send_and_ack("c-1", "fails twice")
    event_id = offline_id(m1["id"])
    attempts = await receiver.until_event(event_id, count=2, answered=True)
    assert [(r.attempt, r.status) for r in attempts] == [(1, 500), (2, 500)]
    assert attempts[0].body == attempts[1].body

    status, listing = await poll(lambda: failed_events(server),
                                 lambda answer: answer[0] == 200 and
                                 isinstance(answer[1], dict) and
                                 len(answer[1].get("events") or []) == 1,
                                 "GET /api/admin/webhooks/failed lists the event")
    [entry] = listing["events"]
    assert listing["has_more"] is False, listing
    assert entry["id"] == event_id and entry["type"] == "message.offline", entry
    assert entry["chat"] == alice.hello["chat"] and entry["seq"] == m1["seq"], entry
    assert entry["attempts"] == 2, entry
    assert isinstance(entry["last_error"], str) and entry["last_error"], entry
    assert isinstance(entry["failed_ts"], str) and TS_PATTERN.match(entry["failed_ts"]), entry
    assert parse_ts(entry["failed_ts"]) >= parse_ts(m1["ts"]), entry
    assert entry["event"] == attempts[0].json, "the failed entry holds the event's body"
    for token in (None, ADMIN_TOKEN + "x", ""):
        assert (await in_thread(failed_events, server, token))[0] == 401, (
            f"GET failed with token {token!r} must be 401")
    assert (await api(server, "GET", "/api/admin/webhooks/failed",
                      authorization=f"Basic {ADMIN_TOKEN}"))[0] == 401
    await wait_metrics(server, lambda m: m.value("chatd_webhook_failed_events") == 1 and
                       m.value("chatd_webhook_deliveries_total", result="failed") == 1 and
                       m.value("chatd_webhook_deliveries_total", result="retried") == 1,
                       "failed_events 1, deliveries failed 1 and retried 1")

    # The chat goes on.
    receiver.respond_with(default=200)
    m2 = await alice.send_and_ack("c-2", "after the failure")
    [next_event] = await receiver.until_event(offline_id(m2["id"]), answered=True)
    assert next_event.status == 200 and next_event.attempt == 1, next_event.describe()
    assert len(receiver.events(event_id)) == 2, "a failed event is not sent again by itself"

    # Retried through the admin API: sent again, same id and body.
    retry_path = f"/api/admin/webhooks/failed/{event_id}/retry"
    assert (await api(server, "POST", retry_path))[0] == 401
    assert (await api(server, "POST", retry_path, token="wrong"))[0] == 401
    assert len(receiver.events(event_id)) == 2, "a refused retry sent nothing"
    status, answer = await api(server, "POST", retry_path, token=ADMIN_TOKEN)
    assert (status, answer) == (202, {"id": event_id, "state": "pending"}), (status, answer)
    third = (await receiver.until_event(event_id, count=3, answered=True))[2]
    assert third.status == 200 and third.event_id == event_id
    assert third.body == attempts[0].body, "a retried event has the same body"
    assert_signed(third)
    await poll(lambda: failed_events(server),
               lambda answer: answer == (200, {"events": [], "has_more": False}),
               "the failed list is empty after the retry was delivered")
    await wait_metrics(server, lambda m: m.value("chatd_webhook_failed_events") == 0,
                       "chatd_webhook_failed_events back to 0")
    # An unknown id (checked last, so that a wrong answer here does not hide the rest).
    status, answer = await api(server, "POST", "/api/admin/webhooks/failed/evt_nope_offline/retry",
                               token=ADMIN_TOKEN)
    assert (status, answer.get("code")) == (404, "not_found"), (status, answer)


async def test_an_event_is_attempted_15_times_by_default(webhook_receiver, chatd):
    receiver = webhook_receiver
    receiver.respond_with(default=500)
    server = start(chatd, receiver, backoff=(10, 10), env={"ADMIN_TOKEN": ADMIN_TOKEN})
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    ack = await alice.send_and_ack("c-1", "never accepted")
    event_id = offline_id(ack["id"])
    _, listing = await poll(lambda: failed_events(server),
                            lambda answer: answer[0] == 200 and isinstance(answer[1], dict)
                            and len(answer[1].get("events") or []) == 1,
                            "the event kept as failed")
    attempts = receiver.events(event_id)
    assert [r.attempt for r in attempts] == list(range(1, 16)), (
        f"WEBHOOK_MAX_ATTEMPTS defaults to 15; attempts made: {[r.attempt for r in attempts]}")
    assert listing["events"][0]["attempts"] == 15, listing


async def test_the_admin_api_is_404_without_admin_token(webhook_receiver, chatd):
    server = start(chatd, webhook_receiver)
    for method, path, token in (
            ("GET", "/api/admin/webhooks/failed", None),
            ("GET", "/api/admin/webhooks/failed", ADMIN_TOKEN),
            ("GET", "/api/admin/webhooks/failed?limit=5", ""),
            ("POST", "/api/admin/webhooks/failed/evt_x_offline/retry", ADMIN_TOKEN)):
        status, _ = await api(server, method, path, token=token)
        assert status == 404, f"{method} {path} (token {token!r}) answered {status}"


# ---------------------------------------------------------------------- 6. other events

async def test_a_read_receipt_sends_message_read(webhook_receiver, chatd):
    receiver = webhook_receiver
    server = start(chatd, receiver, env={"WEBHOOK_EVENTS": "message.read"})
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    m1 = await alice.send_and_ack("c-1", "read me")
    m2 = await alice.send_and_ack("c-2", "and me")
    bob = await V2Client.connect(server, "bob", "alice", "bob")  # bob was offline: no event
    assert [m["id"] for m in bob.history["messages"]] == [m1["id"], m2["id"]]
    await alice.recv_frame("presence", user="bob", online=True, devices=1)

    await bob.send_frame("read", seq=m1["seq"])
    await alice.recv_frame("read", user="bob", seq=m1["seq"])
    [first] = await receiver.until(
        lambda reqs: [r for r in reqs if r.event_type == "message.read"] or None,
        "a message.read event")
    await bob.send_frame("read", seq=m2["seq"])
    await alice.recv_frame("read", user="bob", seq=m2["seq"])
    first, second = await receiver.until(
        lambda reqs: (reads := [r for r in reqs if r.event_type == "message.read"
                                and r.status is not None]) and len(reads) >= 2 and reads,
        "the second message.read event")

    for event, seq in ((first, m1["seq"]), (second, m2["seq"])):
        assert READ_ID.match(event.event_id or ""), event.describe()
        assert_routine_headers(event, event.event_id, "message.read", attempt=1)
        assert set(event.json) == EVENT_KEYS, event.json
        data = event.data
        assert set(data) == READ_DATA_KEYS, data
        assert (data["chat"], data["reader"], data["peer"], data["seq"]) == (
            alice.hello["chat"], "bob", "alice", seq), data
        assert sorted(data["users"]) == ["alice", "bob"], data
        assert TS_PATTERN.match(event.json["ts"]), event.json
        assert abs(parse_ts(event.json["ts"]).timestamp() - event.arrived_wall) < 10
    assert first.event_id != second.event_id
    assert [r.event_type for r in receiver.snapshot()] == ["message.read"] * 2, (
        "only message.read is listed: " + str([r.describe() for r in receiver.snapshot()]))


async def test_include_text_false_leaves_the_text_out(webhook_receiver, chatd):
    receiver = webhook_receiver
    server = start(chatd, receiver, env={"WEBHOOK_INCLUDE_TEXT": "false",
                                         "WEBHOOK_EVENTS": "message.offline,message.created"})
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    ack = await alice.send_and_ack("c-1", "private words 7f3a")
    created = await receiver.until_event(created_id(ack["id"]), answered=True)
    offline = await receiver.until_event(offline_id(ack["id"]), answered=True)
    chat, stored = await in_thread(history, server, "alice", "bob")
    assert stored[0]["text"] == "private words 7f3a", "the message itself keeps its text"
    for event, type_ in ((created[0], "message.created"), (offline[0], "message.offline")):
        assert_routine_headers(event, event.event_id, type_)
        assert "text" not in event.message, f"WEBHOOK_INCLUDE_TEXT=false: {event.json}"
        assert_message_event(event, type_, chat=chat, users=("alice", "bob"), recipient="bob",
                             stored=stored[0], include_text=False)
        assert b"7f3a" not in event.body, event.body
    assert created[0].index < offline[0].index, "message.created comes before message.offline"


# ---------------------------------------------------------------------- 7. metrics, settings

async def test_webhook_metrics_exist_only_with_webhook_url(webhook_receiver, chatd):
    plain = chatd()
    assert "chatd_webhook_" not in (await in_thread(scrape, plain)).text, (
        "webhook metrics are registered only when WEBHOOK_URL is set")
    # A 16-byte secret is long enough.
    server = chatd("--webhook-url", webhook_receiver.url,
                   env={"WEBHOOK_SECRET": "0123456789abcdef"})
    metrics = await in_thread(scrape, server)
    types = {"chatd_webhook_deliveries_total": "counter", "chatd_webhook_attempts_total": "counter",
             "chatd_webhook_delivery_seconds": "histogram", "chatd_webhook_backlog": "gauge",
             "chatd_webhook_oldest_pending_seconds": "gauge",
             "chatd_webhook_failed_events": "gauge", "chatd_webhook_sender": "gauge"}
    for name, type_ in types.items():
        assert metrics.types.get(name) == type_, f"{name}: TYPE {metrics.types.get(name)!r}"
    for name in ("chatd_webhook_backlog", "chatd_webhook_oldest_pending_seconds",
                 "chatd_webhook_failed_events"):
        assert metrics.value(name) == 0, f"{name} at start"
    for result in ("delivered", "retried", "failed"):
        assert metrics.value("chatd_webhook_deliveries_total", result=result) == 0, result
    for outcome in ("2xx", "4xx", "5xx", "timeout", "network"):
        assert metrics.value("chatd_webhook_attempts_total", outcome=outcome) == 0, outcome
    assert metrics.value("chatd_webhook_sender") in (0, 1)


HOOK = "http://127.0.0.1:9/hooks"


@pytest.mark.parametrize("case,env,named,code", [
    pytest.param(case, env, named, code, id=case) for case, env, named, code in (
        ("url without secret", {"WEBHOOK_URL": HOOK}, "WEBHOOK_SECRET", 2),
        ("10-byte secret", {"WEBHOOK_URL": HOOK, "WEBHOOK_SECRET": "0123456789"},
         "WEBHOOK_SECRET", 2),
        ("15-byte secret", {"WEBHOOK_URL": HOOK, "WEBHOOK_SECRET": "0123456789abcde"},
         "WEBHOOK_SECRET", 2),
        ("unknown event", {"WEBHOOK_URL": HOOK, "WEBHOOK_SECRET": SECRET,
                           "WEBHOOK_EVENTS": "message.offline,message.deleted"},
         "WEBHOOK_EVENTS", 2),
        # The contract gives no exit code for a bad URL: a refusal naming it.
        ("ftp url", {"WEBHOOK_URL": "ftp://127.0.0.1/hooks", "WEBHOOK_SECRET": SECRET},
         "WEBHOOK_URL", None),
    )])
async def test_invalid_webhook_settings_stop_chatd_at_start(chatd, case, env, named, code):
    server = chatd(env=env, wait=False)
    exit_code = await in_thread(server.wait_exit)
    log = server.log_text()
    if code is not None:
        assert exit_code == code, (f"{case}: expected exit code {code}, got "
                                   f"{'no exit (killed)' if exit_code is None else exit_code}"
                                   f"\n--- log ---\n{log}")
    else:
        assert exit_code not in (0, None), f"{case}: expected a refusal, got {exit_code}\n{log}"
    assert named in log, f"{case}: the message must name {named}:\n{log}"
    assert not server.log_contains("listening on"), log
