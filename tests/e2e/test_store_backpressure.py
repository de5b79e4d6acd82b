"""MAX_STORE_CALLS, the bound on the store calls of all connections together, seen from
outside: chatd on FerretDB through the MongoDB wire-protocol proxy (mongo_proxy.py),
which holds every `insert` on `messages` so that no commit ends while the test looks.

Six v2 senders, each in a chat of its own with a v2 peer, each pipeline 30 sends at once
(MESSAGES_PER_SECOND=0, MAX_STORE_CALLS_PER_CONNECTION=1000: only the global bound can
stop them). What is checked:

* with MAX_STORE_CALLS=8, chatd stops reading the senders (TCP backpressure) once 8 calls
  are in flight: `chatd_connections_waiting_for_store` rises, `chatd_store_calls_in_flight`
  settles at no more than 8 + 6 (each connection may read one frame past the bound before
  it checks), far below the 180 sent; once the proxy lets the inserts through, every
  sender resumes and every message is acknowledged to its sender and delivered to its
  peer, in order, once, with no error frame (a slow store makes senders wait, it never
  answers them `overloaded`), and the gauges go back to 0; a peer that sends a ping while
  the bound is reached gets its pong, stops being read too, and gets its messages later;
* the control: the same load with MAX_STORE_CALLS=100000 is read whole while the store is
  held (180 calls in flight, no connection waiting), so it is the bound that held the
  senders in the first test; it too ends with everything acknowledged and delivered.

Like test_mongo*.py these choose their store themselves (MONGO_URI, through the proxy, on
the `ferretdb` fixture's server) and run in the default pass; the CHATD_E2E_STORE=mongodb
pass, which would only repeat them, skips them. Fixtures are listed chatd last so that
chatd is stopped before the proxy and FerretDB.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import pytest

import figures
from chat_client import in_thread
from chatd_process import E2E_STORE
from ferretdb import unique_database, wait_readyz
from mongo_proxy import mongo_proxy  # noqa: F401  (the fixture: a proxy in front of `ferretdb`)
from mongo_proxy import command
from server_metrics import scrape, wait_metric
from v2_client import V2Client

pytestmark = pytest.mark.skipif(
    E2E_STORE == "mongodb",
    reason="store-independent MongoDB test: run by the default (CHATD_E2E_STORE=sqlite) run")

SENDERS = 6
MESSAGES = 30  # per sender, all sent at once
BOUND = 8      # MAX_STORE_CALLS of the first test
UNBOUNDED = 100_000
INSERT_MESSAGES = command("insert", "messages")
# The proxy holds the inserts for as long as the test watches: chatd's default
# socketTimeoutMS (10 s) could give up on them on a loaded machine.
SLOW_SOCKET_TIMEOUT_MS = 60_000
STEADY_S = 0.5        # in-flight unchanged this long (with a connection waiting): settled
SETTLE_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 60.0  # every ack and message once the store answers again
GRACE_S = 5.0  # for the other connections once one has failed


# ---------------------------------------------------------------------- helpers

@dataclasses.dataclass(frozen=True)
class Gauges:
    at: float
    in_flight: float
    waiting: float
    queued: float


def gauges(server) -> Gauges:
    metrics = scrape(server)
    return Gauges(at=time.monotonic(),
                  in_flight=metrics.value("chatd_store_calls_in_flight"),
                  waiting=metrics.value("chatd_connections_waiting_for_store"),
                  queued=metrics.value("chatd_store_queued", queue="appends"))


def describe(samples: list[Gauges]) -> str:
    return ", ".join(f"{s.in_flight:g}/{s.waiting:g}/{s.queued:g}" for s in samples[-25:])


def client_id() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


@dataclasses.dataclass
class Pair:
    sender: V2Client
    peer: V2Client
    items: list[tuple[str, str]]  # (client_id, text) in sending order


async def start_held(chatd, mongo_proxy, max_store_calls: int):
    """chatd on FerretDB through the proxy, 6 sender/peer pairs connected, the proxy
    holding every insert on `messages` from now on."""
    uri = mongo_proxy.uri(unique_database("chatd_backpressure"),
                          socketTimeoutMS=SLOW_SOCKET_TIMEOUT_MS)
    server = chatd(env={"MONGO_URI": uri, "MAX_STORE_CALLS": str(max_store_calls),
                        "MAX_STORE_CALLS_PER_CONNECTION": "1000",
                        "MESSAGES_PER_SECOND": "0"})
    await in_thread(lambda: wait_readyz(server, 200, timeout=30.0), timeout=35.0)
    pairs = []
    for n in range(SENDERS):
        sender = await V2Client.connect(server, f"sender{n}", f"peer{n}", f"sender{n} v2")
        peer = await V2Client.connect(server, f"peer{n}", f"sender{n}", f"peer{n} v2")
        pairs.append(Pair(sender, peer,
                          [(client_id(), f"sender{n} #{m}") for m in range(MESSAGES)]))
    start = gauges(server)
    assert (start.in_flight, start.waiting, start.queued) == (0, 0, 0), start
    mongo_proxy.hold(INSERT_MESSAGES)
    return server, pairs


async def send_everything(pairs: list[Pair]) -> None:
    """Every sender sends its 30 messages at once, none waiting for an ack."""
    async def one(pair: Pair) -> None:
        for item in pair.items:
            await pair.sender.send_text(*item)
    await asyncio.gather(*(one(pair) for pair in pairs))


async def collect(client: V2Client, type_: str, count: int, frames: list[dict]) -> None:
    """`count` frames of `type_` appended to `frames` (presence passed over); any other
    frame, an error above all, fails the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVERY_TIMEOUT_S
    while len(frames) < count:
        try:
            frame = await client.recv_frame(timeout=max(deadline - loop.time(), 0.01))
        except pytest.fail.Exception as failure:
            pytest.fail(f"after {len(frames)} of its {count} {type_} frames: {failure.msg}")
        if frame["type"] == "presence":  # connections coming and going: not counted
            continue
        assert frame["type"] == type_, (
            f"{client.label}: expected {type_} frame #{len(frames) + 1} of {count}, got "
            f"{frame!r} (after {len(frames)} of them)")
        frames.append(frame)


async def collect_all(pairs: list[Pair]) -> list[tuple[list[dict], list[dict]]]:
    """(acks, messages) of every pair. Once one connection has failed, the others get
    GRACE_S more; then the test fails naming every connection short of its 30."""
    wanted = [(client, type_, []) for pair in pairs
              for client, type_ in ((pair.sender, "ack"), (pair.peer, "message"))]
    tasks = [asyncio.create_task(collect(client, type_, MESSAGES, frames))
             for client, type_, frames in wanted]
    done, pending = await asyncio.wait(tasks, timeout=DELIVERY_TIMEOUT_S + 5,
                                       return_when=asyncio.FIRST_EXCEPTION)
    if pending and any(task.exception() is not None for task in done):
        _, pending = await asyncio.wait(pending, timeout=GRACE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    failures = []
    for task, (client, type_, frames) in zip(tasks, wanted):
        if task.cancelled():
            failures.append(f"after {len(frames)} of its {MESSAGES} {type_} frames: "
                            f"{client.label}: still waiting when the others were over "
                            f"(given {GRACE_S}s once one failed)")
        elif task.exception() is not None:
            error = task.exception()
            failures.append(str(getattr(error, "msg", None) or error))
    if failures:  # every connection that failed, not only the first
        pytest.fail("once the store answered again:\n" + "\n".join(failures))
    return [(wanted[2 * n][2], wanted[2 * n + 1][2]) for n in range(len(pairs))]


async def release_and_check_delivery(server, mongo_proxy, pairs: list[Pair],
                                     label: str) -> None:
    """Lets the held inserts through (and holds no more); then every message is acked
    to its sender and delivered to its peer, in order, once, without an error frame;
    the gauges go back to 0 and nothing was refused."""
    released = mongo_proxy.release()
    assert released >= 1, "no insert was held"
    started = time.monotonic()
    results = await collect_all(pairs)
    took = time.monotonic() - started
    for n, (pair, (acks, messages)) in enumerate(zip(pairs, results)):
        assert [ack["client_id"] for ack in acks] == [cid for cid, _ in pair.items], (
            f"{pair.sender.label}: acks not once each in sending order: "
            f"{[ack['client_id'] for ack in acks]}")
        assert not any(ack["duplicate"] for ack in acks), acks
        seq_list = [ack["seq"] for ack in acks]
        assert seq_list == sorted(set(seq_list)), f"{pair.sender.label}: ack seqs {seq_list}"
        assert [(m["id"], m["seq"], m["sender"], m["text"]) for m in messages] == [
            (ack["id"], ack["seq"], f"sender{n}", text)
            for ack, (_, text) in zip(acks, pair.items)], (
            f"{pair.peer.label}: expected the acked messages once each, in order; got "
            f"{[(m['seq'], m['text']) for m in messages]}")
    # Nothing more anywhere (a ping answered after everything): no late error, no copy.
    await asyncio.gather(*(client.expect_nothing_before_pong("no error, duplicate or stray")
                           for pair in pairs for client in (pair.sender, pair.peer)))
    await wait_metric(server, "chatd_store_calls_in_flight", lambda v: v == 0, "== 0")
    await wait_metric(server, "chatd_connections_waiting_for_store", lambda v: v == 0, "== 0")
    await wait_metric(server, "chatd_store_queued", lambda v: v == 0, "== 0", queue="appends")
    end = scrape(server)
    assert end.value("chatd_store_refused_total", queue="appends") == 0, end
    figures.report(f"store backpressure ({label}): {SENDERS * MESSAGES} messages acked and "
                   f"delivered {took:.2f}s after the store answered again "
                   f"({released} held insert(s) released)")


# ---------------------------------------------------------------------- 1. the bound

@pytest.mark.e2e_timeout(150)
async def test_a_slow_store_stops_reading_every_sender_at_max_store_calls(
        ferretdb, mongo_proxy, chatd):
    server, pairs = await start_held(chatd, mongo_proxy, BOUND)
    await send_everything(pairs)
    await in_thread(mongo_proxy.wait_held, 20.0, timeout=25.0)

    # Settled: a connection waits for the store and the calls in flight have stopped
    # rising (unchanged for STEADY_S).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    samples = [await asyncio.to_thread(gauges, server)]
    changed_at = samples[0].at
    while not (samples[-1].waiting >= 1 and samples[-1].at - changed_at >= STEADY_S):
        assert loop.time() < deadline, (
            f"within {SETTLE_TIMEOUT_S}s no sender waited for the store with the calls in "
            f"flight steady; in_flight/waiting/queued: {describe(samples)}")
        await asyncio.sleep(0.02)
        sample = await asyncio.to_thread(gauges, server)
        if sample.in_flight != samples[-1].in_flight:
            changed_at = sample.at
        samples.append(sample)
    peak = max(s.in_flight for s in samples)
    settled = samples[-1]
    figures.report(f"store backpressure: MAX_STORE_CALLS={BOUND}, {SENDERS} senders x "
                   f"{MESSAGES} messages, store held: in_flight peak {peak:g}, settled at "
                   f"{settled.in_flight:g} with {settled.waiting:g} connections waiting, "
                   f"{settled.queued:g} queued appends")
    assert peak <= BOUND + SENDERS, (
        f"{peak:g} store calls in flight with MAX_STORE_CALLS={BOUND}: more than one per "
        f"connection ({SENDERS}) past the bound; in_flight/waiting/queued: "
        f"{describe(samples)}")
    assert settled.in_flight >= BOUND, (
        f"the calls in flight settled at {settled.in_flight:g}, under the bound {BOUND}, "
        f"yet {settled.waiting:g} connections wait: {describe(samples)}")
    assert peak <= SENDERS * MESSAGES // 4, (
        f"{peak:g} of the {SENDERS * MESSAGES} sends were read while the store was held")
    # Every sender has frames left unread, so each one stops at its next frame.
    await wait_metric(server, "chatd_connections_waiting_for_store",
                      lambda v: v == SENDERS, f"== {SENDERS} (every sender stopped)",
                      timeout=SETTLE_TIMEOUT_S)
    assert (await asyncio.to_thread(gauges, server)).in_flight == settled.in_flight
    # A connection with no store call of its own that reads a frame now is answered,
    # then stops reading too; it must be read again later like the senders.
    pinger = pairs[0].peer
    await pinger.send_frame("ping")
    await pinger.recv_frame("pong", timeout=10)
    await wait_metric(server, "chatd_connections_waiting_for_store",
                      lambda v: v == SENDERS + 1, f"== {SENDERS + 1} ({pinger.label} too)",
                      timeout=SETTLE_TIMEOUT_S)

    await release_and_check_delivery(server, mongo_proxy, pairs, f"MAX_STORE_CALLS={BOUND}")


# ---------------------------------------------------------------------- 2. the control

@pytest.mark.e2e_timeout(150)
async def test_without_the_bound_the_same_load_is_all_read(ferretdb, mongo_proxy, chatd):
    server, pairs = await start_held(chatd, mongo_proxy, UNBOUNDED)
    await send_everything(pairs)
    await in_thread(mongo_proxy.wait_held, 20.0, timeout=25.0)

    total = SENDERS * MESSAGES
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    samples = [await asyncio.to_thread(gauges, server)]
    while samples[-1].in_flight < total:
        assert loop.time() < deadline, (
            f"with MAX_STORE_CALLS={UNBOUNDED} the {total} sends were not all read within "
            f"{SETTLE_TIMEOUT_S}s while the store was held; in_flight/waiting/queued: "
            f"{describe(samples)}")
        await asyncio.sleep(0.02)
        samples.append(await asyncio.to_thread(gauges, server))
    peak = max(s.in_flight for s in samples)
    figures.report(f"store backpressure: MAX_STORE_CALLS={UNBOUNDED}, {SENDERS} senders x "
                   f"{MESSAGES} messages, store held: in_flight peak {peak:g}, "
                   f"{samples[-1].queued:g} queued appends")
    assert peak == total, f"in_flight {peak:g}, expected {total}: {describe(samples)}"
    assert max(s.waiting for s in samples) == 0, (
        f"a connection waited for the store under MAX_STORE_CALLS={UNBOUNDED}: "
        f"{describe(samples)}")

    await release_and_check_delivery(server, mongo_proxy, pairs, f"MAX_STORE_CALLS={UNBOUNDED}")
