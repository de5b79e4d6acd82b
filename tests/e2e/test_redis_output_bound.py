"""The bound on what chatd holds for a Redis that does not take it (REDIS_MAX_PENDING_BYTES).

Redis is paused (SIGSTOP of redis-server: it reads nothing, so what chatd publishes stays
in chatd) while one instance commits a stream of large messages. That instance's memory
(VmHWM, its peak resident set, from /proc) must stay under a bound computed from the
setting, its publishes past the bound are dropped and counted
(chatd_redis_dropped_total{kind="message"}), and once Redis runs again the other instance
gets every committed message, once, in seq order: what was dropped is read from the store
after the resync (chatd:resync) or the gap fill.

Why SIGSTOP and not CLIENT PAUSE: a paused client's connection is still read by Redis
(into its query buffer), so chatd's output would drain into Redis and its memory would
not be tested (the drop would still happen: chatd counts commands that are not answered).
DEBUG SLEEP would do the same as SIGSTOP, but for a fixed time; SIGCONT ends the pause
when the test has seen what it waits for.

MongoDB pass only, like test_scaleout.py (REDIS_URL needs the shared store).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import figures
from chat_client import ChatClient, in_thread
from chatd_process import E2E_STORE
from ferretdb import free_port, unique_database
from server_metrics import metric, wait_metric
from test_scaleout import (assert_in_seq_order_once, client_id, expect_nothing_more,
                           next_message, open_v1, start_instance, wait_redis_connected)
from v2_client import V2Client, send_many

pytestmark = pytest.mark.skipif(
    E2E_STORE != "mongodb",
    reason="scale-out needs the shared MongoDB store: run by the CHATD_E2E_STORE=mongodb pass")

# The bound under test, small so that the load is many times it.
MAX_PENDING_BYTES = 256 * 1024
TEXT_BYTES = 16000
MESSAGES = 1500  # 24 MB of publishes: far past the bound and the sockets' buffers
# What else may grow in the publishing instance while it commits the load (the store
# driver's buffers, batches, the allocator's arenas): about 2 MiB measured with the
# bound; without it the peak grew by 23 MiB (1 GiB bound, the rest the same).
SLACK_KIB = 8 * 1024


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


async def read_until(client: ChatClient, last_seq: int, seen: list[dict], timeout: float) -> None:
    while not seen or seen[-1]["seq"] < last_seq:
        seen.append(await next_message(client, timeout))


@pytest.mark.e2e_timeout(180)
async def test_a_paused_redis_bounds_memory_drops_publishes_and_loses_nothing(
        ferretdb, redis, chatd):
    database = unique_database("chatd_scaleout")
    a = start_instance(chatd, ferretdb, database, redis.url,
                       "--redis-max-pending-bytes", str(MAX_PENDING_BYTES),
                       "--messages-per-second", "0")
    # B's receivers get the dropped messages from the store in pages of 500: room for them.
    b = start_instance(chatd, ferretdb, database, redis.url,
                       "--send-queue-max-bytes", str(64 * 1024 * 1024))
    a.name, b.name = "A", "B"
    for server in (a, b):
        await wait_redis_connected(server, 1)

    alice = await V2Client.connect(a, "alice", "bob", "alice @A")
    bob_v2 = await V2Client.connect(b, "bob", "alice", "bob v2 @B")
    bob_v1 = await open_v1(b, "bob", "alice", "bob v1 @B")
    first = await alice.send_and_ack(client_id(), "before the pause")
    received = {bob_v2.label: [], bob_v1.label: []}
    for bob in (bob_v2, bob_v1):
        received[bob.label].append(await next_message(bob))
        assert received[bob.label][-1]["seq"] == first["seq"]
    dropped_before = metric(a, "chatd_redis_dropped_total", kind="message")
    assert dropped_before == 0, dropped_before
    before = memory_kib(a.pid)

    os.kill(redis.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        text = "x" * TEXT_BYTES
        acks = await send_many(alice, [(client_id(), f"{n:05d} {text}") for n in range(MESSAGES)],
                               window=32, timeout=30)
        took = time.monotonic() - started
        # Every message is committed (acked) by now.
        after = memory_kib(a.pid)
        pending = metric(a, "chatd_redis_pending_bytes", connection="publisher")
        largest_publish_kib = (TEXT_BYTES + 1024) // 1024
        bound_kib = (before["VmRSS"] + MAX_PENDING_BYTES // 1024 + largest_publish_kib
                     + SLACK_KIB)
        figures.report(
            f"paused Redis: {MESSAGES} messages of {TEXT_BYTES} B committed in {took:.1f}s; "
            f"A's RSS {before['VmRSS']} KiB before, peak {after['VmHWM']} KiB (bound "
            f"{bound_kib} KiB); {pending:.0f} bytes pending for Redis")
        assert after["VmHWM"] <= bound_kib, (
            f"A's peak RSS {after['VmHWM']} KiB passed {bound_kib} KiB (RSS "
            f"{before['VmRSS']} KiB before + the {MAX_PENDING_BYTES // 1024} KiB bound + "
            f"{SLACK_KIB} KiB): its Redis output is not bounded")
        assert pending <= MAX_PENDING_BYTES + largest_publish_kib * 1024, (
            f"A holds {pending} bytes for Redis, past REDIS_MAX_PENDING_BYTES")
        # A could not publish most of them: dropped, not queued, and counted.
        dropped = await wait_metric(a, "chatd_redis_dropped_total", lambda v: v > 0, "> 0",
                                    kind="message")
        assert dropped >= MESSAGES // 2, f"only {dropped} of {MESSAGES} publishes dropped"
    finally:
        os.kill(redis.pid, signal.SIGCONT)

    # Redis runs again: B gets everything A committed, in order, once (what was dropped
    # from the store), without any later message to reveal the gap.
    last = acks[-1]["seq"]
    assert sorted(ack["seq"] for ack in acks) == list(range(first["seq"] + 1, last + 1))
    for bob in (bob_v2, bob_v1):
        await read_until(bob, last, received[bob.label], timeout=60)
        assert_in_seq_order_once(bob.label, received[bob.label], set(), last)
    await wait_metric(a, "chatd_redis_pending_bytes", lambda v: v < MAX_PENDING_BYTES / 2,
                      "< half the bound", connection="publisher")

    # And live again through Redis both ways.
    marker = await alice.send_and_ack(client_id(), "marker")
    for bob in (bob_v2, bob_v1):
        frame = await next_message(bob)
        assert (frame["seq"], frame["text"]) == (marker["seq"], "marker"), frame
    reply = await bob_v2.send_and_ack(client_id(), "got them all")
    assert (await alice.recv_frame("message", text="got them all"))["seq"] == reply["seq"]
    assert (await bob_v1.recv_message("bob", "got them all"))["seq"] == reply["seq"]
    await expect_nothing_more([alice, bob_v2, bob_v1])


@pytest.mark.parametrize("value", ["0", "16383", "2000000000", "8MiB"])
async def test_an_invalid_redis_max_pending_bytes_is_refused_at_start(chatd, value):
    # Neither server needs to exist: the setting is refused before anything connects.
    server = chatd("--redis-url", f"redis://127.0.0.1:{free_port()}",
                   env={"REDIS_MAX_PENDING_BYTES": value,
                        "MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/chatd_scaleout"},
                   wait=False)
    code = await in_thread(server.wait_exit)
    log = server.log_text()
    assert code == 2, f"REDIS_MAX_PENDING_BYTES={value}: expected exit code 2, got {code}\n{log}"
    assert "REDIS_MAX_PENDING_BYTES" in log, f"the message must name the setting:\n{log}"
