"""Operations: health and readiness, /metrics following a chat, JSON logs, the drain on
SIGTERM (nothing acknowledged or delivered is lost across a restart), a second signal
and the drain deadline, and the deployment files in deploy/ staying true to the binary.

Every wait polls with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from chat_client import ChatClient, in_thread, open_expect_close
from figures import report
from chatd_process import REPO_ROOT, chatd_binary
from ferretdb import unique_database, wait_readyz
from raw_websocket import open_unresponsive_websocket, read_close_frame
from server_metrics import Metrics, http_get, poll, scrape, wait_for

DEPLOY = REPO_ROOT / "deploy"


# ---------------------------------------------------------------------- HTTP helpers

def get_json(server, path: str) -> tuple[int, Any]:
    status, headers, body = http_get(server, path)
    assert headers.get("content-type", "").startswith("application/json"), (
        f"{path}: expected a JSON answer, got Content-Type {headers.get('content-type')!r}")
    try:
        return status, json.loads(body)
    except ValueError:
        pytest.fail(f"{path}: body is not JSON: {body[:200]!r}")


# ---------------------------------------------------------------------- /metrics

REJECT_CODES = ("invalid_json", "invalid_frame", "invalid_sender", "invalid_text", "empty_text",
                "text_too_long", "sender_not_participant", "unsupported_frame",
                "store_unavailable", "overloaded", "shutting_down")
CLOSE_CODES = ("1000", "1001", "1006", "1008", "1009", "1013", "4400", "4404")


# ---------------------------------------------------------------------- health

def test_healthz_answers_200_json(chatd):
    server = chatd()
    status, body = get_json(server, "/healthz")
    assert status == 200
    assert body == {"status": "ok"}


def test_readyz_answers_200_json_when_ready(chatd):
    server = chatd()
    status, body = get_json(server, "/readyz")
    assert status == 200, f"/readyz of a fresh SQLite instance: {status} {body}"
    assert body["status"] == "ready", body
    assert body["store"] == "ok", body
    assert body["draining"] is False, body
    assert body.get("user_search") == "off", f"USER_SEARCH_URL is unset: {body}"


@pytest.mark.e2e_timeout(60)
async def test_readyz_names_the_store_while_mongo_is_down_at_start(chatd, ferretdb):
    ferretdb.stop()
    server = chatd(env={"MONGO_URI": ferretdb.uri(unique_database()), "LOG_FORMAT": "json"})
    status, body = await in_thread(get_json, server, "/readyz")
    assert status == 503, f"no store yet, yet /readyz answered {status} {body}"
    assert body["status"] == "not_ready" and body["store"] == "unavailable", body
    assert body["draining"] is False, body
    health, _ = await in_thread(get_json, server, "/healthz")
    assert health == 200, "liveness does not depend on the store"
    metrics = await in_thread(scrape, server)
    assert metrics.value("chatd_store_ready") == 0
    config = [dict(labels) for name, labels in metrics.samples if name == "chatd_config_info"]
    assert len(config) == 1 and config[0]["store"] == "mongodb", config

    await in_thread(ferretdb.start)
    await in_thread(wait_readyz, server, 200, 30.0)
    status, body = await in_thread(get_json, server, "/readyz")
    assert (status, body["status"], body["store"]) == (200, "ready", "ok"), body
    assert (await in_thread(scrape, server)).value("chatd_store_ready") == 1

    # The MongoDB driver's own messages go through the same logger: JSON too.
    await in_thread(server.stop_and_check)
    assert_every_line_is_json(server.log_text())


@pytest.mark.e2e_timeout(60)
async def test_readyz_and_metrics_while_mongo_goes_away_mid_run(chatd, ferretdb):
    server = chatd(env={"MONGO_URI": ferretdb.uri(unique_database())})
    await in_thread(wait_readyz, server, 200)
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    await alice.send_message("alice", "before the outage")
    await bob.recv_message("alice", "before the outage")
    before = await in_thread(scrape, server)
    assert before.value("chatd_store_ready") == 1

    await in_thread(ferretdb.kill)
    await alice.send_message("alice", "during the outage")
    await alice.expect_error("store_unavailable")
    await in_thread(wait_readyz, server, 503, 10.0)
    status, body = await in_thread(get_json, server, "/readyz")
    assert status == 503
    assert body["status"] == "not_ready" and body["store"] == "unavailable", (
        f"/readyz must name the store as what is wrong: {body}")
    health, _ = await in_thread(get_json, server, "/healthz")
    assert health == 200, "liveness does not depend on the store"
    during = await in_thread(scrape, server)
    assert during.value("chatd_store_ready") == 0
    rejected = ("chatd_sends_rejected_total", {"code": "store_unavailable"})
    assert during.value(rejected[0], **rejected[1]) == before.value(rejected[0], **rejected[1]) + 1
    await open_expect_close(server.ws_url("carol", "dave"), 1013, "carol during the outage")
    after_refusal = await poll(lambda: scrape(server),
                               lambda m: m.value("chatd_closes_total", code="1013") ==
                               before.value("chatd_closes_total", code="1013") + 1,
                               "chatd_closes_total{code=\"1013\"} counts the refused session")
    assert after_refusal.value("chatd_messages_committed_total") == \
        before.value("chatd_messages_committed_total"), "nothing was committed during the outage"

    await in_thread(ferretdb.start)
    await in_thread(wait_readyz, server, 200, 30.0)
    status, body = await in_thread(get_json, server, "/readyz")
    assert (status, body["store"]) == (200, "ok"), body
    assert (await in_thread(scrape, server)).value("chatd_store_ready") == 1


async def test_readyz_names_the_user_search_service_while_it_fails(chatd, user_search):
    server = chatd(user_search=user_search)
    status, body = await in_thread(get_json, server, "/readyz")
    assert (status, body.get("user_search")) == (200, "ok"), body

    user_search.malformed = "truncated"  # answers that do not parse: unavailable
    await open_expect_close(server.ws_url("alice", "bob"), 1013, "alice while the directory fails")
    status, body = await in_thread(get_json, server, "/readyz")
    assert status == 503, f"the user-search service failed, yet /readyz answered {status} {body}"
    assert body["status"] == "not_ready" and body["user_search"] == "unavailable", body
    assert body["store"] == "ok", body
    metrics = await in_thread(scrape, server)
    assert metrics.value("chatd_user_lookups_total", result="error") >= 1
    await poll(lambda: scrape(server), lambda m: m.value("chatd_closes_total", code="1013") == 1,
               "chatd_closes_total{code=\"1013\"} counts the refused session")
    assert metrics.histogram("chatd_user_lookup_seconds")["count"] >= 1

    user_search.malformed = None  # the service is back: chatd finds out by itself
    await poll(lambda: get_json(server, "/readyz"), lambda answer: answer[0] == 200,
               "/readyz back to 200 once the user-search service answers again")


# ---------------------------------------------------------------------- /metrics

def test_metrics_exposes_every_family_before_any_traffic(chatd):
    server = chatd()
    metrics = scrape(server)
    expected = {
        "chatd_connections_open": "gauge", "chatd_chats_active": "gauge",
        "chatd_store_ready": "gauge", "chatd_draining": "gauge",
        "chatd_build_info": "gauge", "chatd_config_info": "gauge",
        "chatd_messages_received_total": "counter", "chatd_messages_committed_total": "counter",
        "chatd_messages_delivered_total": "counter", "chatd_sessions_opened_total": "counter",
        "chatd_sends_rejected_total": "counter", "chatd_closes_total": "counter",
        "chatd_slow_reader_closes_total": "counter",
        "chatd_store_commit_seconds": "histogram", "chatd_store_batch_size": "histogram",
        "chatd_delivery_seconds": "histogram", "chatd_user_lookup_seconds": "histogram",
    }
    for name, kind in expected.items():
        assert metrics.types.get(name) == kind, f"{name}: TYPE {metrics.types.get(name)!r}"
        assert metrics.helps.get(name), f"{name} has no HELP text"
    # Every label value a rule may name exists from the start, at 0, so that rate()
    # and increase() see the first event.
    for code in REJECT_CODES:
        assert metrics.value("chatd_sends_rejected_total", code=code) == 0, code
    for code in CLOSE_CODES:
        assert metrics.value("chatd_closes_total", code=code) == 0, code
    for name in ("chatd_connections_open", "chatd_chats_active", "chatd_draining",
                 "chatd_messages_received_total", "chatd_messages_committed_total",
                 "chatd_messages_delivered_total", "chatd_sessions_opened_total"):
        assert metrics.value(name) == 0, name
    assert metrics.value("chatd_store_ready") == 1
    build = [dict(labels) for name, labels in metrics.samples if name == "chatd_build_info"]
    assert len(build) == 1 and re.fullmatch(r"\d+\.\d+\.\d+.*", build[0]["version"]), build
    version = subprocess.run([str(chatd_binary()), "--version"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    assert build[0]["version"] in version, f"build_info {build} vs --version {version!r}"
    for name in ("chatd_store_commit_seconds", "chatd_delivery_seconds"):
        assert metrics.histogram(name)["count"] == 0


async def test_metric_values_follow_a_chat(chatd):
    server = chatd()
    base = await in_thread(scrape, server)

    def delta(metrics: Metrics, name: str, **labels: str) -> float:
        return metrics.value(name, **labels) - base.value(name, **labels)

    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    m = await poll(lambda: scrape(server),
                   lambda m: delta(m, "chatd_sessions_opened_total") == 2,
                   "two sessions verified")
    assert m.value("chatd_connections_open") == 2
    assert m.value("chatd_chats_active") == 1

    # 20 messages from alice to bob, 5 back: each is received, committed and delivered
    # exactly once.
    for i in range(20):
        await alice.send_message("alice", f"a{i}")
    for i in range(20):
        await bob.recv_message("alice", f"a{i}")
    for i in range(5):
        await bob.send_message("bob", f"b{i}")
    for i in range(5):
        await alice.recv_message("bob", f"b{i}")
    m = await poll(lambda: scrape(server),
                   lambda m: delta(m, "chatd_messages_delivered_total") >= 25,
                   "25 deliveries counted")
    assert delta(m, "chatd_messages_received_total") == 25
    assert delta(m, "chatd_messages_committed_total") == 25
    assert delta(m, "chatd_messages_delivered_total") == 25
    delivery = m.histogram("chatd_delivery_seconds")
    assert delivery["count"] - base.histogram("chatd_delivery_seconds")["count"] == 25
    assert delivery["sum"] > 0
    commits = m.histogram("chatd_store_commit_seconds")
    batches = m.histogram("chatd_store_batch_size")
    assert 1 <= commits["count"] <= 25, "group commit: at most one commit per message"
    assert batches["count"] == commits["count"], "one batch size observed per commit"
    assert batches["sum"] == 25, "the batch sizes add up to the messages committed"

    # A second device of alice's: it gets the history (not counted as deliveries), then
    # every new message of the chat but its own.
    alice2 = await ChatClient.open(server, "alice", "bob", "alice (second device)")
    history = await alice2.recv_messages(25)
    assert [f["text"] for f in history] == [f"a{i}" for i in range(20)] + \
        [f"b{i}" for i in range(5)]
    await alice.send_message("alice", "to both")
    await bob.recv_message("alice", "to both")
    await alice2.recv_message("alice", "to both")
    m = await poll(lambda: scrape(server),
                   lambda m: delta(m, "chatd_messages_delivered_total") >= 27,
                   "the message to two receivers counted twice")
    assert m.value("chatd_connections_open") == 3
    assert m.value("chatd_chats_active") == 1
    assert delta(m, "chatd_messages_received_total") == 26
    assert delta(m, "chatd_messages_committed_total") == 26
    assert delta(m, "chatd_messages_delivered_total") == 27, "history replay is not a delivery"
    assert m.histogram("chatd_delivery_seconds")["count"] - \
        base.histogram("chatd_delivery_seconds")["count"] == 27

    # Refused frames: counted by code, not received, nothing stored.
    await alice.send_raw("this is not JSON")
    await alice.expect_error("invalid_json")
    await alice.send_message("mallory", "who am I")
    await alice.expect_error("sender_not_participant")
    await alice.send_raw("[1, 2]")
    await alice.expect_error("invalid_frame")
    m = await in_thread(scrape, server)
    assert delta(m, "chatd_sends_rejected_total", code="invalid_json") == 1
    assert delta(m, "chatd_sends_rejected_total", code="sender_not_participant") == 1
    assert delta(m, "chatd_sends_rejected_total", code="invalid_frame") == 1
    assert delta(m, "chatd_messages_received_total") == 26
    assert delta(m, "chatd_messages_committed_total") == 26

    # A clean close by the client is counted as 1000.
    await alice2.close()
    m = await poll(lambda: scrape(server),
                   lambda m: m.value("chatd_connections_open") == 2, "alice2's close noticed")
    assert delta(m, "chatd_closes_total", code="1000") == 1
    await alice.close()
    await bob.close()
    m = await poll(lambda: scrape(server),
                   lambda m: m.value("chatd_connections_open") == 0, "every connection closed")
    assert m.value("chatd_chats_active") == 0
    assert delta(m, "chatd_closes_total", code="1000") == 3
    assert delta(m, "chatd_sessions_opened_total") == 3
    assert delta(m, "chatd_slow_reader_closes_total") == 0



async def test_close_codes_and_slow_readers_are_counted(chatd):
    # No rate limit: the slow-reader part floods on purpose.
    server = chatd("--send-queue-max-bytes", "4096", "--max-message-bytes", "1024",
                   "--max-text-bytes", "900", "--messages-per-second", "0")
    base = await in_thread(scrape, server)

    def delta(metrics: Metrics, name: str, **labels: str) -> float:
        return metrics.value(name, **labels) - base.value(name, **labels)

    # 4400: a refused path; the session never opened.
    await open_expect_close(server.ws_raw("/ws/alice/%01"), 4400, "control character")
    # 1009: a frame over MAX_MESSAGE_BYTES.
    big = await ChatClient.open(server, "alice", "bob", "alice (too big)")
    await big.send_raw("x" * 2000)
    await big.expect_close(1009)
    # 1006: the client vanishes without a close frame.
    vanishing = await in_thread(open_unresponsive_websocket, server, "/ws/carol/dave")
    await poll(lambda: scrape(server), lambda m: delta(m, "chatd_sessions_opened_total") == 2,
               "the vanishing client's session opened")
    vanishing.close()
    m = await poll(lambda: scrape(server),
                   lambda m: m.value("chatd_connections_open") == 0, "every session ended")
    assert delta(m, "chatd_closes_total", code="4400") == 1
    assert delta(m, "chatd_closes_total", code="1009") == 1
    assert delta(m, "chatd_closes_total", code="1006") == 1
    assert delta(m, "chatd_sessions_opened_total") == 2, "the refused session never opened"

    # 1008: a receiver that reads nothing, with a tiny receive buffer, while its peer
    # writes until chatd gives up on it.
    stuck = await in_thread(open_unresponsive_websocket, server, "/ws/erin/frank", 4096)
    writer = await ChatClient.open(server, "frank", "erin", "frank")
    await poll(lambda: scrape(server), lambda m: m.value("chatd_connections_open") == 2,
               "both sessions open")
    text = "y" * 800
    sent = 0
    while (await in_thread(scrape, server)).value("chatd_slow_reader_closes_total") == \
            base.value("chatd_slow_reader_closes_total"):
        assert sent < 20000, "20000 messages to a receiver that reads nothing, and no 1008"
        for _ in range(200):
            await writer.send_message("frank", text)
        sent += 200
    stuck.close()
    m = await poll(lambda: scrape(server),
                   lambda m: delta(m, "chatd_closes_total", code="1008") == 1,
                   "the slow reader's close counted as 1008")
    assert delta(m, "chatd_slow_reader_closes_total") == 1


# ---------------------------------------------------------------------- logs

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_LEVELS = {"trace", "debug", "info", "warning", "warn", "error", "critical"}


def assert_every_line_is_json(log: str) -> list[dict]:
    records = []
    for number, line in enumerate(log.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"LOG_FORMAT=json, but log line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), f"line {number} is not an object: {line!r}"
        assert {"ts", "level", "msg"} <= record.keys(), (
            f"line {number} lacks ts/level/msg: {line!r}")
        assert _TS.match(record["ts"]), f"line {number}: ts {record['ts']!r}"
        assert record["level"] in _LEVELS, f"line {number}: level {record['level']!r}"
        assert isinstance(record["msg"], str) and record["msg"], f"line {number}: {line!r}"
        records.append(record)
    assert records, "chatd logged nothing"
    return records


async def test_json_logs_one_open_and_close_line_per_session_and_no_message_text(chatd):
    # At the most verbose level: docs/operations.md says message text is never logged,
    # and every line, debug ones included, must be JSON.
    server = chatd("--log-format", "json", "--log-level", "trace")
    secret = "s3cret-" + base64.b32encode(os.urandom(10)).decode()
    # A quote, a backslash and non-ASCII in a username: the log line must stay JSON.
    odd = 'zo\u00eb "the\\quoted"'
    alice = await ChatClient.open(server, "alice", odd, "alice")
    peer = await ChatClient.open(server, odd, "alice", "odd peer")
    await alice.send_message("alice", f"{secret} one")
    await peer.recv_message("alice", f"{secret} one")
    await peer.send_message(odd, f"{secret} two")
    await alice.recv_message(odd, f"{secret} two")
    await alice.send_message("mallory", f"{secret} refused")  # rejected, must not be logged
    await alice.expect_error("sender_not_participant")
    await alice.send_raw(f"{secret} not json")
    await alice.expect_error("invalid_json")
    await open_expect_close(server.ws_raw("/ws/alice/%01"), 4400, "refused path")
    await alice.close()
    await peer.close()
    await poll(lambda: scrape(server), lambda m: m.value("chatd_connections_open") == 0,
               "both sessions closed")
    await in_thread(server.stop_and_check)

    records = assert_every_line_is_json(server.log_text())
    log = server.log_text()
    assert secret not in log, "message text appears in the log"
    opens: dict[str, str] = {}
    closes: dict[str, str] = {}
    for record in records:
        match = re.match(r"^session (\d+) (open|closed): ", record["msg"])
        if match:
            table = opens if match.group(2) == "open" else closes
            assert match.group(1) not in table, f"second {match.group(2)} line: {record}"
            table[match.group(1)] = record["msg"]
    assert len(opens) == 2, f"one open line per verified session: {opens}"
    for session, line in opens.items():
        assert session in closes, f"session {session} opened but no close line: {line}"
        assert "alice" in line and odd in line, f"open line names both users: {line!r}"
        close = closes[session]
        assert "alice" in close and odd in close, f"close line names both users: {close!r}"
        assert re.search(r"\bcode 1000\b", close), f"close line gives the close code: {close!r}"
        assert re.search(r"\d+(\.\d+)? ?s\b", close), f"close line gives the duration: {close!r}"
    refused = [line for session, line in closes.items() if session not in opens]
    assert len(refused) == 1 and re.search(r"\bcode 4400\b", refused[0]), (
        f"the refused session's close line gives 4400: {refused}")


# ---------------------------------------------------------------------- drain

@pytest.mark.e2e_timeout(90)
async def test_drain_mid_stream_loses_nothing_the_receiver_saw(chatd):
    # The sender streams as fast as the receiver keeps up, with up to WINDOW messages
    # in flight (sent but not yet received): at the signal, messages are in every
    # state at once: in the socket, read but not committed, committed but not yet
    # written to the receiver. And the sender goes on sending during the drain.
    total, signal_after, window = 500, 100, 64
    # No rate limit: the sender streams faster than a person would.
    server = chatd("--history-limit", "10000", "--messages-per-second", "0")
    sender = await ChatClient.open(server, "alice", "bob", "alice (sender)")
    receiver = await ChatClient.open(server, "bob", "alice", "bob (receiver)")
    received: list[dict] = []
    progress = asyncio.Event()
    receiver_closed = asyncio.Event()
    seen_enough = asyncio.Event()
    signalled = asyncio.Event()

    sent = 0

    async def stream() -> None:
        nonlocal sent
        try:
            for i in range(total):
                # After the signal the window is off: the sender pushes as fast as it
                # can into the drain.
                while (i - len(received) >= window and not signalled.is_set()
                       and not receiver_closed.is_set()):
                    progress.clear()
                    waits = [asyncio.ensure_future(progress.wait()),
                             asyncio.ensure_future(receiver_closed.wait())]
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for waiting in waits:
                        waiting.cancel()
                await sender.ws.send(json.dumps({"sender": "alice", "text": f"drain {i:04d}"}))
                sent += 1
        except ConnectionClosed:
            pass

    async def read_until_closed(client: ChatClient, frames: list) -> Any:
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(client.ws.recv(), 20)
                except ConnectionClosed as closed:
                    return closed.rcvd
                except asyncio.TimeoutError:
                    pytest.fail(f"{client.label}: no frame and no close for 20 s "
                                f"(after {len(frames)} frames)")
                frames.append(json.loads(raw))
                if client is receiver:
                    progress.set()
                    if len(frames) >= signal_after:
                        seen_enough.set()
        finally:
            if client is receiver:
                receiver_closed.set()

    sender_frames: list[dict] = []
    send_task = asyncio.create_task(stream())
    sender_task = asyncio.create_task(read_until_closed(sender, sender_frames))
    receiver_task = asyncio.create_task(read_until_closed(receiver, received))
    await asyncio.wait_for(seen_enough.wait(), 30)
    server.send_sigterm()
    in_flight_at_signal = sent - len(received)
    signalled.set()
    progress.set()
    await send_task
    sender_close = await sender_task
    receiver_close = await receiver_task
    code = await in_thread(server.wait_exit, 30.0, timeout=35.0)
    assert code == 0, f"exit code after SIGTERM: {code}\n{server.log_text(30)}"
    assert receiver_close is not None and receiver_close.code == 1001, (
        f"the receiver's connection ended with {receiver_close}, expected close 1001")
    assert sender_close is not None and sender_close.code == 1001, (
        f"the sender's connection ended with {sender_close}, expected close 1001")
    errors = [frame for frame in sender_frames if frame.get("type") == "error"]
    assert {e.get("code") for e in errors} <= {"shutting_down"}, (
        f"the sender got unexpected frames: {sender_frames[:5]}")
    assert all(frame.get("type") == "message" for frame in received), received[:3]

    # Restart on the same data and read the whole chat back.
    again = chatd("--history-limit", "10000", sqlite_path=server.sqlite_path)
    reader = await ChatClient.open(again, "bob", "alice", "bob after the restart")
    writer = await ChatClient.open(again, "alice", "bob", "alice after the restart")
    await writer.send_message("alice", "marker after the restart")
    history = []
    while True:
        frame = await reader.recv_message(timeout=10)
        if frame["text"] == "marker after the restart":
            break
        history.append(frame)

    seqs = [frame["seq"] for frame in history]
    assert seqs == list(range(1, len(history) + 1)), (
        f"history seqs are not gapless 1..N: {seqs[:5]}...{seqs[-5:]}")
    assert frame["seq"] == len(history) + 1, "the next message continues the order"
    assert len(received) >= signal_after
    # Every message the receiver got is stored, in the same order, with the same
    # seq, id, timestamp and text.
    fields = ("seq", "id", "ts", "sender", "text")
    stored = {f["seq"]: tuple(f[k] for k in fields) for f in history}
    missing = [f for f in received if stored.get(f["seq"]) != tuple(f[k] for k in fields)]
    assert not missing, (f"{len(missing)} of the {len(received)} messages the receiver got "
                         f"are not in the history after the restart, e.g. {missing[:3]}")
    assert [f["seq"] for f in received] == sorted(f["seq"] for f in received)
    # The drain commits what was read and delivers it before the 1001: the receiver
    # got every stored message, and the stored ones are the sender's first N in order.
    assert [f["seq"] for f in received] == seqs, (
        f"the receiver got {len(received)} messages but {len(history)} are stored; "
        f"missing seqs: {sorted(set(seqs) - {f['seq'] for f in received})[:10]}")
    assert [f["text"] for f in history] == [f"drain {i:04d}" for i in range(len(history))]
    assert len(history) + len(errors) <= sent <= total
    assert in_flight_at_signal > 0, (
        "no message was in flight when chatd was signalled: this run did not test a drain "
        "mid-stream")
    report(f"drain: {in_flight_at_signal} in flight at the signal; sent {sent}, stored and "
          f"delivered {len(history)}, refused as shutting_down {len(errors)}, never read "
          f"{sent - len(history) - len(errors)}")


@pytest.mark.e2e_timeout(60)
async def test_second_signal_exits_at_once_with_code_1(chatd):
    # The drain would wait up to 60 s for a client that never answers the close.
    server = chatd("--shutdown-timeout-ms", "60000", "--handshake-timeout-ms", "60000")
    stuck = await in_thread(open_unresponsive_websocket, server, "/ws/alice/bob")
    try:
        await poll(lambda: scrape(server), lambda m: m.value("chatd_connections_open") == 1,
                   "the unresponsive session is open")
        server.send_sigterm()
        assert await in_thread(read_close_frame, stuck) == 1001
        await in_thread(wait_for, lambda: server.log_contains("draining"), "drain started")
        assert server.running, "chatd exited although a session had not answered its close"
        started = time.monotonic()
        server.send_sigterm()
        code = await in_thread(server.wait_exit, 10.0, timeout=15.0)
        assert code == 1, f"a second SIGTERM exits at once with code 1, got {code}"
        assert time.monotonic() - started < 10
        assert server.log_contains("second signal"), server.log_text(10)
    finally:
        stuck.close()


@pytest.mark.e2e_timeout(60)
async def test_drain_gives_up_at_the_shutdown_timeout_and_exits_0(chatd):
    server = chatd("--shutdown-timeout-ms", "1500", "--handshake-timeout-ms", "60000")
    stuck = await in_thread(open_unresponsive_websocket, server, "/ws/alice/bob")
    # A monitoring connection kept alive from before the signal (new connections are
    # refused once chatd drains) sees the drain in /readyz and /metrics.
    monitor = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)

    def monitor_get(path: str) -> tuple[int, bytes]:
        monitor.request("GET", path)
        response = monitor.getresponse()
        return response.status, response.read()

    try:
        assert (await in_thread(monitor_get, "/readyz"))[0] == 200
        await poll(lambda: scrape(server), lambda m: m.value("chatd_connections_open") == 1,
                   "the unresponsive session is open")
        started = time.monotonic()
        server.send_sigterm()
        assert await in_thread(read_close_frame, stuck) == 1001
        status, body = await in_thread(monitor_get, "/readyz")
        assert status == 503, f"/readyz while draining: {status} {body!r}"
        assert json.loads(body)["draining"] is True, body
        status, body = await in_thread(monitor_get, "/metrics")
        assert Metrics(body.decode()).value("chatd_draining") == 1
        code = await in_thread(server.wait_exit, 20.0, timeout=25.0)
        took = time.monotonic() - started
        assert code == 0, f"a drain that reached its deadline still exits 0, got {code}"
        assert 1.0 <= took < 10.0, f"exited after {took:.1f} s; the deadline is 1.5 s"
        assert server.log_contains("at the deadline"), server.log_text(10)
    finally:
        stuck.close()
        monitor.close()


async def test_sigint_drains_like_sigterm(chatd):
    server = chatd()
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    await alice.send_message("alice", "before ctrl-c")
    await bob.recv_message("alice", "before ctrl-c")
    os.kill(server.pid, signal.SIGINT)
    await alice.expect_close(1001)
    await bob.expect_close(1001)
    assert await in_thread(server.wait_exit) == 0
    assert server.log_contains("received SIGINT"), server.log_text(10)


def test_head_healthz_has_headers_only(chatd):
    server = chatd()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # HEAD, then GET on the same keep-alive connection: the GET's status line must
        # follow the HEAD's headers directly (RFC 9110 9.3.2: no content in a HEAD answer).
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: chatd\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: chatd\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    assert rest.startswith(b"HTTP/1.1 200"), (
        f"bytes between the HEAD answer's headers and the next response: {rest[:40]!r}")


# ---------------------------------------------------------------------- deploy/

def _help_settings() -> set[str]:
    help_text = subprocess.run([str(chatd_binary()), "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    settings = set(re.findall(r"\(Env:([A-Z0-9_]+)\)", help_text))
    assert settings, f"chatd --help lists no (Env:NAME): {help_text[:300]!r}"
    return settings


def _help_defaults() -> dict[str, str | None]:
    """Each setting `chatd --help` lists, with the default it shows (None: no default)."""
    help_text = subprocess.run([str(chatd_binary()), "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    # "--threads UINT:UINT in [0 - 256]=0 (Env:THREADS)", "--mongo-uri TEXT (Env:MONGO_URI)"
    found = re.findall(r"^\s*--[a-z0-9-]+ (.*?) \(Env:([A-Z0-9_]+)\)", help_text, re.MULTILINE)
    assert found, f"chatd --help lists no (Env:NAME): {help_text[:300]!r}"
    return {name: kind.rsplit("=", 1)[1] if "=" in kind else None for kind, name in found}


def _readme_settings_table() -> dict[str, str | None]:
    """The README's settings table: each setting with its default (None: `unset`)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+?) \|", section, re.MULTILINE)
    assert rows, "the README's Settings section has no table of settings"
    table: dict[str, str | None] = {}
    for name, default in rows:
        assert name not in table, f"the README's settings table lists {name} twice"
        table[name] = None if default == "unset" else default.strip("`")
    return table


def test_readme_settings_table_matches_the_binary():
    binary = _help_defaults()
    table = _readme_settings_table()
    missing = sorted(binary.keys() - table.keys())
    assert not missing, f"missing from the README's settings table: {missing}"
    unknown = sorted(table.keys() - binary.keys())
    assert not unknown, f"the README's settings table names unknown settings: {unknown}"
    wrong = {name: (table[name], binary[name]) for name in binary if table[name] != binary[name]}
    assert not wrong, f"README default differs from chatd --help (README, binary): {wrong}"


def test_env_example_lists_every_setting_of_the_binary():
    example = (DEPLOY / "chatd.env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    settings = _help_settings()
    assert not settings - listed, f"missing from chatd.env.example: {settings - listed}"
    assert not listed - settings, f"chatd.env.example names unknown settings: {listed - settings}"


def test_systemd_unit_stops_after_the_drain_deadline():
    unit = (DEPLOY / "chatd.service").read_text(encoding="utf-8")
    directives = dict(re.findall(r"^([A-Za-z]+)=(.*)$", unit, re.MULTILINE))
    help_text = subprocess.run([str(chatd_binary()), "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    default_ms = int(re.search(r"--shutdown-timeout-ms .*?=(\d+) \(Env:", help_text).group(1))
    stop = directives["TimeoutStopSec"]
    assert stop.endswith("s") and int(stop[:-1]) > default_ms / 1000, (
        f"TimeoutStopSec={stop} must exceed SHUTDOWN_TIMEOUT_MS={default_ms}")
    assert directives["KillSignal"] == "SIGTERM"
    assert directives["StateDirectory"] == "chatd"
    assert "/var/lib/chatd/" in directives["Environment"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                      "MemoryDenyWriteExecute"):
        assert directives.get(hardening) == "yes", hardening


def test_alert_rules_name_only_metrics_chatd_exports(chatd, user_search):
    # The user-lookup series exist only with a user-search service, the webhook
    # ones only with WEBHOOK_URL (an address nothing answers on is enough).
    server = chatd("--webhook-url", "http://127.0.0.1:9/hook",
                   "--webhook-secret", "0123456789abcdef", user_search=user_search)
    exported = scrape(server)
    families = set(exported.types)
    rules_text = (DEPLOY / "prometheus" / "chatd-alerts.yml").read_text(encoding="utf-8")
    code_lines = [line.split("#", 1)[0] for line in rules_text.splitlines()]
    named = set(re.findall(r"\bchatd_[a-z0-9_]+\b", "\n".join(code_lines)))
    assert named, "no chatd metric in the alert rules"
    # chatd_redis_* exist only with REDIS_URL; test_scaleout.py checks those.
    unknown = {name for name in named if name not in families and
               re.sub(r"_(bucket|sum|count)$", "", name) not in families and
               not name.startswith("chatd_redis_")}
    assert not unknown, f"alert rules name metrics chatd does not export: {sorted(unknown)}"
    # Label values the rules select on exist as series.
    for name, label, value in re.findall(r'\b(chatd_[a-z_]+)\{(\w+)="([^"]+)"\}', rules_text):
        assert exported.has(name, **{label: value}), f'{name}{{{label}="{value}"}} not exported'
    # Histogram quantiles are taken over _bucket series, summed by le.
    for expression in re.findall(r"histogram_quantile\((.*?)\)\)", rules_text, re.DOTALL):
        assert "_bucket" in expression and "le" in expression, expression
    try:
        import yaml  # python3-yaml, when installed: the files' structure too
    except ImportError:
        return
    rules = yaml.safe_load(rules_text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
            assert rule["labels"].get("severity") in ("page", "ticket"), rule
            assert rule["annotations"].get("summary"), rule
    scrape_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = scrape_config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert all(target.endswith(":5010") for target in job["static_configs"][0]["targets"])
    assert "chatd-alerts.yml" in scrape_config["rule_files"]


def test_container_image_installs_every_library_the_binary_links():
    """deploy/Dockerfile's runtime stage lists the Debian packages chatd's shared
    libraries come from; deploy/check-runtime-packages compares them with `ldd`."""
    linked = subprocess.run(["ldd", str(chatd_binary())], capture_output=True, text=True).stdout
    if re.search(r"lib(asan|ubsan|tsan)", linked):
        pytest.skip("a sanitizer build links the sanitizer runtimes, which no image ships")
    result = subprocess.run([str(REPO_ROOT / "deploy" / "check-runtime-packages"),
                             str(chatd_binary())], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"deploy/Dockerfile misses runtime packages:\n{result.stdout}{result.stderr}")
