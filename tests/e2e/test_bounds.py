"""Every byte a client makes chatd hold is bounded by the settings: clients that never
read, while chatd replays a long chat of large messages to them (v1 history on connect,
v2 resume, v2 history requests), hold at most their send queue and one slice of the
store each, and are closed with 1008 once their queue stays full for
SEND_STALL_TIMEOUT_MS (docs/architecture.md, "The most memory one connection holds").

Each test fills a chat, opens clients that never read a byte, samples chatd's resident
memory (/proc/<pid>/status) until chatd has closed every one of them as too slow, and
holds the growth under a bound computed from the settings; then each client reads what
it was sent: a gapless run of the chat, then the 1008 close.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from chat_client import ChatClient, in_thread
from chatd_process import E2E_STORE
from figures import report
from raw_websocket import OP_TEXT, open_unresponsive_websocket, read_close_frame, send_client_frame
from server_metrics import poll, scrape

OP_CONTINUATION = 0x0

MESSAGES = 1_000
TEXT_BYTES = 16_000
# FerretDB (the MongoDB pass) reads a chat of large messages two orders of magnitude
# slower than SQLite (a slice takes ~150 ms on its two reader threads): fewer clients
# there, so that each fills its queue within the test's time.
CLIENTS = 6 if E2E_STORE == "mongodb" else 20
QUEUE_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = 64 * 1024
SETTINGS = ("--messages-per-second", "0", "--history-limit", str(MESSAGES),
            "--send-queue-max-bytes", str(QUEUE_BYTES), "--send-stall-timeout-ms", "1000",
            "--max-message-bytes", str(MAX_MESSAGE_BYTES))
# The most one connection holds (docs/architecture.md): its send queue, one slice read
# from the store (at most the queue's room, plus one message), its read buffer, and
# the session itself. What all of them may add on top of chatd's memory before they
# came: the store's page cache for the history read, the allocator's arenas.
PER_CONNECTION = 2 * QUEUE_BYTES + TEXT_BYTES + MAX_MESSAGE_BYTES + 16 * 1024
SLACK = 24 * 1024 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def fill_chat(server) -> ChatClient:
    """alice writes MESSAGES messages of TEXT_BYTES to bob; returns her connection."""
    base = (await in_thread(scrape, server)).value("chatd_messages_committed_total")
    writer = await ChatClient.open(server, "alice", "bob", "alice (filling)")
    for i in range(MESSAGES):
        text = f"{i + 1:05d} " + "m" * (TEXT_BYTES - 6)
        await writer.ws.send(json.dumps({"sender": "alice", "text": text}))
    await poll(lambda: scrape(server),
               lambda m: m.value("chatd_messages_committed_total") >= base + MESSAGES,
               f"the {MESSAGES} messages committed", timeout=120)
    return writer


async def hold_clients_that_never_read(server, path: str, *, v2: bool,
                                       after_open=None) -> tuple[list[socket.socket], int]:
    """Opens CLIENTS connections that never read (a 4 KiB receive buffer), and samples
    chatd's RSS until it has closed them all as too slow. Returns them and the growth
    of RSS over its level before they came, in bytes."""
    headers = {"Sec-WebSocket-Protocol": "chat.v2"} if v2 else None
    base = await in_thread(scrape, server)
    before = rss_kib(server.pid)
    peak = before
    clients = []
    for _ in range(CLIENTS):
        sock = await in_thread(open_unresponsive_websocket, server, path, 4096, headers)
        if after_open is not None:
            await in_thread(after_open, sock)
        clients.append(sock)
        peak = max(peak, rss_kib(server.pid))
    deadline = time.monotonic() + 90
    closed = 0
    while closed < CLIENTS:
        assert time.monotonic() < deadline, (
            f"chatd closed {closed} of {CLIENTS} clients that never read as too slow; "
            f"RSS +{peak - before} KiB")
        peak = max(peak, rss_kib(server.pid))
        metrics = await in_thread(scrape, server)
        closed = (metrics.value("chatd_slow_reader_closes_total")
                  - base.value("chatd_slow_reader_closes_total"))
        await asyncio.sleep(0.05)  # polling interval while sampling RSS
    peak = max(peak, rss_kib(server.pid))
    return clients, (peak - before) * 1024


def read_to_the_close(sock: socket.socket) -> tuple[int, list[dict]]:
    """The close code, and the messages before it (continuation frames joined)."""
    frames: list = []
    code = read_close_frame(sock, 30.0, frames)
    sock.close()
    payloads: list[bytes] = []
    for opcode, payload in frames:
        if opcode == OP_CONTINUATION and payloads:
            payloads[-1] += payload
        else:
            payloads.append(payload)
    return code, [json.loads(payload) for payload in payloads]


def check_bound(server, what: str, growth: int) -> None:
    bound = CLIENTS * PER_CONNECTION + SLACK
    report(f"{what}: {CLIENTS} clients that never read, chatd RSS +{growth / 2**20:.1f} MiB "
           f"at most ({growth / CLIENTS / 1024:.0f} KiB each; bound "
           f"{bound / 2**20:.1f} MiB = {CLIENTS} x {PER_CONNECTION // 1024} KiB + "
           f"{SLACK // 2**20} MiB)")
    # Under AddressSanitizer freed memory sits in its quarantine: RSS says nothing of
    # chatd's own bound there; the closes and the frames are still checked.
    if not server.uses_asan():
        assert growth <= bound, f"{what}: RSS grew {growth} bytes, over {bound}"


@pytest.mark.e2e_timeout(240)
async def test_v1_clients_that_never_read_their_history_are_bounded_and_closed_1008(chatd):
    server = chatd(*SETTINGS)
    writer = await fill_chat(server)
    clients, growth = await hold_clients_that_never_read(server, "/ws/bob/alice", v2=False)
    check_bound(server, "v1 history", growth)
    for sock in clients:
        code, frames = await in_thread(read_to_the_close, sock)
        assert code == 1008, f"close code {code} after {len(frames)} frames"
        seqs = [frame["seq"] for frame in frames]
        assert seqs == list(range(1, len(seqs) + 1)), f"not a gapless start: {seqs[:3]}..."
        assert all(len(frame["text"]) == TEXT_BYTES for frame in frames)
    # The chat goes on for a client that reads.
    reader = await ChatClient.open(server, "bob", "alice", "bob (reading)")
    history = await reader.recv_messages(MESSAGES, timeout=60)
    assert [m["seq"] for m in history] == list(range(1, MESSAGES + 1))
    await writer.send_message("alice", "after the slow ones")
    await reader.recv_message("alice", "after the slow ones")


@pytest.mark.e2e_timeout(240)
async def test_v2_clients_that_never_read_a_resume_are_bounded_and_closed_1008(chatd):
    server = chatd(*SETTINGS)
    await fill_chat(server)
    clients, growth = await hold_clients_that_never_read(server, "/ws/bob/alice?after=0",
                                                         v2=True)
    check_bound(server, "v2 resume", growth)
    for sock in clients:
        code, frames = await in_thread(read_to_the_close, sock)
        assert code == 1008, f"close code {code} after {len(frames)} frames"
        assert frames and frames[0]["type"] == "hello", frames[:1]
        assert frames[0]["last_seq"] == MESSAGES
        messages = [frame for frame in frames[1:] if frame["type"] == "message"]
        seqs = [frame["seq"] for frame in messages]
        assert seqs == list(range(1, len(seqs) + 1)), f"not a gapless start: {seqs[:3]}..."
    # A client that reads resumes where a closed one stopped and gets the rest.
    resumed = await ChatClient.open_url(server.ws_raw("/ws/bob/alice?after=500"),
                                        subprotocols=["chat.v2"])
    hello = await resumed.recv_json()
    assert hello["type"] == "hello" and hello["resume_after"] == 500
    rest = await resumed.recv_messages(MESSAGES - 500, timeout=60)
    assert [m["seq"] for m in rest] == list(range(501, MESSAGES + 1))


@pytest.mark.e2e_timeout(240)
async def test_v2_clients_that_never_read_history_pages_are_bounded_and_closed_1008(chatd):
    server = chatd(*SETTINGS)
    await fill_chat(server)
    request = json.dumps({"type": "history", "before": 0, "limit": 500}).encode()

    def ask_for_pages(sock: socket.socket) -> None:
        for _ in range(20):
            send_client_frame(sock, OP_TEXT, request)

    # Resuming from the chat's end: nothing is replayed, every byte is a history page.
    clients, growth = await hold_clients_that_never_read(
        server, f"/ws/bob/alice?after={MESSAGES}", v2=True, after_open=ask_for_pages)
    check_bound(server, "v2 history pages", growth)
    for sock in clients:
        code, frames = await in_thread(read_to_the_close, sock)
        assert code == 1008, f"close code {code} after {len(frames)} frames"
        pages = [frame for frame in frames if frame["type"] == "history"]
        assert pages, [frame["type"] for frame in frames]
        for page in pages:
            seqs = [message["seq"] for message in page["messages"]]
            # The newest messages that fit the queue's room, and has_more for the rest.
            assert seqs == list(range(MESSAGES - len(seqs) + 1, MESSAGES + 1)), seqs[:3]
            assert page["has_more"] is True
            assert len(json.dumps(page)) <= QUEUE_BYTES
