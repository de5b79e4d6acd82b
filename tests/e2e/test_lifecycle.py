"""A message's lifecycle (docs/protocol.md, "A chat's order: messages and changes"):
edits and deletes, operators' erasure and export, retention, and blocking.

What is checked:

* edit/delete over v2: the changing connection gets an ack with `target` (the changed
  message's seq) and the change's own seq; every other v2 connection of the chat gets an
  `edited` / `deleted` frame; v1 connections get nothing (a later message is their next
  frame); history (v1 on connect, v2 frames, REST) shows the current state: new text
  and `edited_ts`, tombstones (`deleted`, text "") for v2 and REST, left out for v1;
* a retried edit/delete client_id returns the first ack with duplicate:true and changes
  nothing (also over REST with the same client_id);
* resume: a client that held messages and comes back with ?after=N gets every message
  and change after N once, in seq order, and applying them to what it held gives what
  a fresh REST history read shows;
* the rule errors (not_your_message, message_not_found, message_deleted,
  edit_window_passed, invalid_target, the text errors, rate_limited) change nothing;
* REST PATCH/DELETE by seq and by id, with their status codes; POST by a blocked user;
* retention: RETENTION_DAYS removes the old messages while a writer keeps going, the
  seq keeps counting and hello.first_seq is the oldest kept seq;
* erasure through the admin API: tombstones everywhere, receipts and conversation list
  gone, none of the user's texts left in the store (SQLite file / MongoDB collections);
  401 without the token, 404 without ADMIN_TOKEN;
* export: 20,000 messages of about 1 KB (v2 sends on SQLite; written straight into
  MongoDB in the mongodb pass, FerretDB being too slow for that many sends) streamed as
  one JSON document to a slow-ish reader while chatd's resident memory stays far below
  the export's size;
* blocking: v2 block/unblock frames and REST blocks, refused sends (v1 and v2) and
  edits, no typing/presence/receipts for the blocked user, hello's blocking/blocked,
  across a restart, and across two instances on one MongoDB + Redis (mongodb pass), where
  edits, deletes and erasures must also reach the other instance as change frames.

Waits are on frames and on metrics reaching a value, each with a deadline.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import socket
import sqlite3
import time
from typing import Any

import pytest

import figures
from chat_client import (RECV_TIMEOUT_S, TS_PATTERN, ChatClient, in_thread, open_v1, parse_ts,
                         seqs, texts)
from chatd_process import E2E_STORE
from server_metrics import chat_history, metric, poll, scrape, wait_metric
from tokens import SECRET, token_for
from v2_client import V2Client, assert_ack_frame, is_int, send_many


connect = V2Client.connect

ADMIN_TOKEN = "e2e-lifecycle-admin-" + secrets.token_hex(8)
LIVE_TYPES = ("message", "edited", "deleted", "erased", "blocked", "typing", "read",
              "presence")

mongodb_only = pytest.mark.skipif(
    E2E_STORE != "mongodb",
    reason="several instances need the shared MongoDB store: run by the "
           "CHATD_E2E_STORE=mongodb pass")


# ---------------------------------------------------------------------- REST

def request(server, method: str, path: str, body: Any = None, *, bearer: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request; (status, the JSON body, or the raw bytes when it is not JSON)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    all_headers = dict(headers or {})
    if bearer is not None:
        all_headers["Authorization"] = f"Bearer {bearer}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, data


async def api(server, method: str, path: str, body: Any = None, **kwargs: Any):
    return await in_thread(lambda: request(server, method, path, body, **kwargs))


def messages_path(user1: str, user2: str, ref: Any = None, query: str = "") -> str:
    path = f"/api/chats/{user1}/{user2}/messages"
    if ref is not None:
        path += f"/{ref}"
    return path + (f"?{query}" if query else "")


def history(server, user1: str = "alice", user2: str = "bob") -> list[dict]:
    """The chat's whole history as the REST API reads it (limit=500 pages)."""
    return chat_history(server, user1, user2)[1]


async def rest_history(server, user1: str = "alice", user2: str = "bob") -> list[dict]:
    return await in_thread(history, server, user1, user2)


def assert_rest_error(answer: tuple[int, Any], status: int, code: str, what: str) -> None:
    got_status, body = answer
    got_code = body.get("code") if isinstance(body, dict) else None
    assert (got_status, got_code) == (status, code), (
        f"{what}: expected {status} {code!r}, got {got_status} {body!r}")
    assert isinstance(body.get("message"), str) and body["message"], (
        f"{what}: error body lacks a message: {body!r}")


def assert_rest_change_ack(answer: tuple[int, Any], target: int, what: str, *,
                           client_id: str | None = None, duplicate: bool = False) -> dict:
    """200 with the ack JSON of an edit or delete (as POST's answer, plus target)."""
    status, ack = answer
    assert status == 200, f"{what}: expected 200 with the ack, got {status} {ack!r}"
    assert isinstance(ack, dict) and ack.get("type") == "ack", f"{what}: {ack!r}"
    assert isinstance(ack.get("id"), str) and len(ack["id"]) == 24, f"{what}: {ack!r}"
    assert is_int(ack.get("seq")) and ack["seq"] > target, (
        f"{what}: the ack's seq is the change's own seq, after its target: {ack!r}")
    assert ack.get("target") == target and is_int(ack["target"]), (
        f"{what}: expected target {target}: {ack!r}")
    assert isinstance(ack.get("ts"), str) and TS_PATTERN.match(ack["ts"]), f"{what}: {ack!r}"
    assert ack.get("duplicate") is duplicate, f"{what}: expected duplicate {duplicate}: {ack!r}"
    if client_id is not None:
        assert ack.get("client_id") == client_id, f"{what}: {ack!r}"
    return ack






# ---------------------------------------------------------------------- frames



def from_ack(ack: dict, sender: str, text: str) -> dict:
    """The message a v2 send's ack stands for, as the sender holds it."""
    return {"type": "message", "id": ack["id"], "seq": ack["seq"], "sender": sender,
            "text": text, "ts": ack["ts"]}


def state(message: dict) -> dict:
    """What a message shows: seq, id, sender, ts, text, deleted, edited_ts (a tombstone's
    edited_ts is not looked at)."""
    deleted = message.get("deleted", False)
    return {"seq": message["seq"], "id": message["id"], "sender": message["sender"],
            "ts": message["ts"], "text": message["text"], "deleted": deleted,
            "edited_ts": None if deleted is True else message.get("edited_ts")}


def states(messages: list[dict]) -> list[dict]:
    return [state(message) for message in messages]


def edited(message: dict, text: str, ts: str) -> dict:
    return {**message, "text": text, "edited_ts": ts}


def tombstone(message: dict) -> dict:
    return {**message, "text": "", "deleted": True}


async def frames_until(client: V2Client, type_: str, *, keep_presence: bool = False,
                       timeout: float = RECV_TIMEOUT_S, **fields: Any) -> list[dict]:
    """Every frame up to and including the first of `type_` with `fields` (presence
    frames left out unless `keep_presence`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames = []
    while True:
        frame = await client.recv_frame(timeout=max(deadline - loop.time(), 0.01))
        if frame["type"] == "presence" and not keep_presence:
            continue
        frames.append(frame)
        if frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()):
            return frames


async def await_ack(client: V2Client, client_id: str, what: str,
                    timeout: float = RECV_TIMEOUT_S) -> dict:
    """The ack of `client_id` (live frames before it are passed over; an error for it
    fails the test)."""
    while True:
        frame = await client.recv_frame(timeout=timeout)
        if frame["type"] == "ack" and frame.get("client_id") == client_id:
            assert_ack_frame(frame, client.label)
            return frame
        if frame["type"] == "error":
            pytest.fail(f"{client.label}: {what} ({client_id}) was refused: {frame!r}")
        assert frame["type"] in LIVE_TYPES, (
            f"{client.label}: waiting for the ack of {what} ({client_id}), got {frame!r}")


async def send(client: V2Client, client_id: str, text: str) -> dict:
    """Sends a message; its ack (live frames before it are passed over)."""
    await client.send_text(client_id, text)
    return await await_ack(client, client_id, f"send {text!r}")


async def change(client: V2Client, type_: str, client_id: str, *,
                 timeout: float = RECV_TIMEOUT_S, **fields: Any) -> dict:
    """Sends an edit or delete; its ack, which names its target."""
    await client.send_frame(type_, client_id=client_id, **fields)
    ack = await await_ack(client, client_id, f"{type_} {fields!r}", timeout)
    assert is_int(ack.get("target")), (
        f"{client.label}: the ack of {type_} {client_id!r} lacks target: {ack!r}")
    return ack


async def next_blocked(client: V2Client, blocked: bool) -> dict:
    """The next `blocked` frame saying `blocked` (messages, presence, and repeats of the
    other state passed over)."""
    while True:
        frame = await client.recv_frame()
        if frame["type"] == "blocked" and frame.get("blocked") is blocked:
            return frame
        assert frame["type"] in ("presence", "message", "blocked"), (
            f"{client.label}: waiting for a blocked frame ({blocked}), got {frame!r}")


async def expect_refusal(client: V2Client, code: str, client_id: str | None,
                         what: str) -> dict:
    """The next frame (presence passed over) is the error `code` naming `client_id`."""
    frame = await client.recv_frame()
    assert frame["type"] == "error" and frame.get("code") == code, (
        f"{client.label}: {what}: expected error {code!r}, got {frame!r}")
    assert isinstance(frame.get("message"), str) and frame["message"], (
        f"{client.label}: {what}: error without a message: {frame!r}")
    if client_id is not None:
        assert frame.get("client_id") == client_id, (
            f"{client.label}: {what}: the error must name client_id {client_id!r}: {frame!r}")
    return frame


def check_change_ack(ack: dict, *, seq: int, target: int, duplicate: bool = False) -> None:
    assert (ack["seq"], ack["target"], ack["duplicate"]) == (seq, target, duplicate), (
        f"expected the ack of change seq {seq} on target {target} (duplicate {duplicate}), "
        f"got {ack!r}")


def check_edited_frame(frame: dict, ack: dict, message: dict, text: str, label: str) -> None:
    """An `edited` frame for `message` (now `text`), the change `ack` acknowledged."""
    expected = {"type": "edited", "seq": ack["seq"], "target": message["seq"],
                "id": message["id"], "sender": message["sender"], "text": text,
                "ts": ack["ts"]}
    assert {key: frame.get(key) for key in expected} == expected, (
        f"{label}: expected an edited frame {expected!r}, got {frame!r}")
    assert TS_PATTERN.match(frame["ts"]) and parse_ts(frame["ts"]) >= parse_ts(message["ts"])


def check_deleted_frame(frame: dict, ack: dict, message: dict, label: str) -> None:
    expected = {"type": "deleted", "seq": ack["seq"], "target": message["seq"],
                "id": message["id"], "sender": message["sender"], "ts": ack["ts"]}
    assert {key: frame.get(key) for key in expected} == expected, (
        f"{label}: expected a deleted frame {expected!r}, got {frame!r}")


def check_blocked_frame(frame: dict, user: str, blocked: bool, label: str, *,
                        changed: bool = True) -> None:
    """A `blocked` frame: a change, with a seq of the chat from 1; or, `changed`
    False, the answer to a block that changed nothing, which has no seq."""
    assert frame.get("type") == "blocked" and frame.get("user") == user and \
        frame.get("blocked") is blocked, (
            f"{label}: expected a blocked frame (user {user}, blocked {blocked}): {frame!r}")
    if changed:
        assert is_int(frame.get("seq")) and frame["seq"] >= 1, f"{label}: {frame!r}"
    else:
        assert "seq" not in frame, f"{label}: a block that changed nothing took a seq: {frame!r}"
    assert isinstance(frame.get("ts"), str) and TS_PATTERN.match(frame["ts"]), (
        f"{label}: {frame!r}")


# ---------------------------------------------------------------------- 1. live changes

async def test_edits_and_deletes_reach_v2_connections_live_and_pass_v1_by(chatd):
    server = chatd()
    bob_v1 = await open_v1(server, "bob", "alice", "bob v1")
    phone = await connect(server, "alice", "bob", "alice phone")
    laptop = await connect(server, "alice", "bob", "alice laptop")
    bob = await connect(server, "bob", "alice", "bob v2")
    assert phone.hello["first_seq"] == 0 and phone.hello["last_seq"] == 0, phone.hello

    held = []
    for n, text in enumerate(["first", "second", "third"], 1):
        ack = await phone.send_and_ack(f"m-{n}", text)
        assert ack["seq"] == n, ack
        held.append(from_ack(ack, "alice", text))
    for client in (laptop, bob):
        for message in held:
            assert state(await client.recv_frame("message")) == state(message)
    for message in held:
        assert (await bob_v1.recv_message("alice", message["text"]))["seq"] == message["seq"]

    # alice's phone edits message 1 (by seq): the ack, with the change's seq and target.
    edit = await change(phone, "edit", "e-1", seq=1, text="first, edited")
    check_change_ack(edit, seq=4, target=1)
    assert parse_ts(edit["ts"]) >= parse_ts(held[0]["ts"]), edit
    for client in (bob, laptop):
        check_edited_frame(await client.recv_frame("edited"), edit, held[0], "first, edited",
                           client.label)
    # ... and deletes message 2 (by id).
    delete = await change(phone, "delete", "d-1", id=held[1]["id"])
    check_change_ack(delete, seq=5, target=2)
    for client in (bob, laptop):
        check_deleted_frame(await client.recv_frame("deleted"), delete, held[1], client.label)

    # bob edits his own message: both of alice's connections get the frame.
    bobs = await bob.send_and_ack("b-1", "from bob")
    assert bobs["seq"] == 6
    held.append(from_ack(bobs, "bob", "from bob"))
    for client in (phone, laptop):
        assert state(await client.recv_frame("message")) == state(held[3])
    assert (await bob_v1.recv_message("bob", "from bob"))["seq"] == 6
    bob_edit = await change(bob, "edit", "be-1", seq=6, text="from bob, edited")
    check_change_ack(bob_edit, seq=7, target=6)
    for client in (phone, laptop):
        check_edited_frame(await client.recv_frame("edited"), bob_edit, held[3],
                           "from bob, edited", client.label)
    for client in (phone, laptop, bob):
        await client.expect_nothing_before_pong("each change once, none to its author")

    # v1 got none of the three changes: the next message is its next frame.
    marker = await phone.send_and_ack("m-4", "marker")
    assert marker["seq"] == 8, marker
    assert (await bob_v1.recv_message("alice", "marker"))["seq"] == 8, (
        "a v1 connection gets no change frames")
    await bob_v1.expect_silence()
    for client in (laptop, bob):
        await client.recv_frame("message", seq=8)

    # v1 history on a new connection: the new texts, the deleted message left out.
    late_v1 = await ChatClient.open(server, "alice", "bob", "late v1 reader")
    after = await phone.send_and_ack("m-5", "after the v1 history")
    got = [(m["seq"], m["sender"], m["text"]) for m in await late_v1.recv_messages(5)]
    assert got == [(1, "alice", "first, edited"), (3, "alice", "third"),
                   (6, "bob", "from bob, edited"), (8, "alice", "marker"),
                   (9, "alice", "after the v1 history")], (
        f"v1 history: edited texts, no deleted message, then the live one; got {got}")
    await late_v1.expect_silence()

    # v2 history and REST: every message in its current state; change seqs skipped.
    expected = [edited(held[0], "first, edited", edit["ts"]), tombstone(held[1]), held[2],
                edited(held[3], "from bob, edited", bob_edit["ts"]),
                from_ack(marker, "alice", "marker"),
                from_ack(after, "alice", "after the v1 history")]
    reader = await connect(server, "bob", "alice", "v2 reader")
    assert reader.hello["last_seq"] == 9 and reader.hello["first_seq"] == 1, reader.hello
    assert states(reader.history["messages"]) == states(expected), reader.history
    tomb = reader.history["messages"][1]
    assert tomb["deleted"] is True and tomb["text"] == "", tomb
    assert "deleted" not in reader.history["messages"][2] or \
        reader.history["messages"][2]["deleted"] is False, reader.history
    assert "edited_ts" not in reader.history["messages"][2], reader.history
    assert states(await rest_history(server)) == states(expected)


# ---------------------------------------------------------------------- 2. idempotency

async def test_a_v1_history_is_the_last_history_limit_messages_it_can_see(chatd):
    # HISTORY_LIMIT 3, and the chat's last seqs hold changes and a tombstone:
    # the v1 connect still shows 3 messages, reaching back past them.
    server = chatd(env={"HISTORY_LIMIT": "3"})
    alice = await connect(server, "alice", "bob", "alice")
    for n in range(1, 6):
        await send(alice, f"m-{n}", f"message {n}")                  # seqs 1-5
    await change(alice, "delete", "d-4", seq=4)                      # 6
    await change(alice, "edit", "e-5", seq=5, text="message 5, edited")  # 7
    await change(alice, "delete", "d-3", seq=3)                      # 8
    reader = await ChatClient.open(server, "bob", "alice", "v1 reader")
    got = [(m["seq"], m["text"]) for m in await reader.recv_messages(3)]
    assert got == [(1, "message 1"), (2, "message 2"), (5, "message 5, edited")], got
    marker = await send(alice, "m-6", "live")                        # 9
    assert (await reader.recv_message())["seq"] == marker["seq"] == 9, marker
    await reader.expect_silence()


async def test_a_retried_edit_or_delete_returns_the_first_ack_and_changes_nothing(chatd):
    server = chatd()
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    m1 = from_ack(await alice.send_and_ack("m-1", "original"), "alice", "original")
    m2 = from_ack(await alice.send_and_ack("m-2", "to be deleted"), "alice", "to be deleted")
    for message in (m1, m2):
        await bob.recv_frame("message", seq=message["seq"])

    first = await change(alice, "edit", "e-1", seq=1, text="edited once")
    check_change_ack(first, seq=3, target=1)
    check_edited_frame(await bob.recv_frame("edited"), first, m1, "edited once", bob.label)
    for text in ("edited once", "a different text in the retry"):
        again = await change(alice, "edit", "e-1", seq=1, text=text)
        assert again == {**first, "duplicate": True}, (
            f"a retried edit client_id returns the first ack with duplicate true: "
            f"first {first!r}, retry {again!r}")

    deleted = await change(alice, "delete", "d-1", seq=2)
    check_change_ack(deleted, seq=4, target=2)
    check_deleted_frame(await bob.recv_frame("deleted"), deleted, m2, bob.label)
    again = await change(alice, "delete", "d-1", seq=2)
    assert again == {**deleted, "duplicate": True}, (
        f"a retried delete returns its first ack (not message_deleted): {again!r}")

    # From another connection of alice's, and over REST with the same client_id.
    other = await connect(server, "alice", "bob", "alice's other device")
    again = await change(other, "edit", "e-1", seq=1, text="edited once")
    assert again == {**first, "duplicate": True}, again
    answer = await api(server, "PATCH", messages_path("alice", "bob", 1),
                       {"text": "edited over REST", "client_id": "e-1"})
    rest = assert_rest_change_ack(answer, 1, "PATCH retrying e-1", client_id="e-1",
                                  duplicate=True)
    assert (rest["id"], rest["seq"], rest["ts"]) == (first["id"], first["seq"], first["ts"])

    await bob.expect_nothing_before_pong("one edited and one deleted frame only")
    nxt = await alice.send_and_ack("m-3", "next")
    assert nxt["seq"] == 5, f"no retry took a seq: {nxt!r}"
    assert states(await rest_history(server)) == states(
        [edited(m1, "edited once", first["ts"]), tombstone(m2), from_ack(nxt, "alice", "next")])


# ---------------------------------------------------------------------- 3. resume

def apply_frames(held: dict[int, dict], frames: list[dict]) -> None:
    """What a client does with replayed or live frames: messages in their current
    state, edits and deletes applied to the messages it holds."""
    for frame in frames:
        if frame["type"] == "message":
            held[frame["seq"]] = dict(frame)
        elif frame["type"] == "edited" and frame["target"] in held:
            held[frame["target"]] = edited(held[frame["target"]], frame["text"], frame["ts"])
        elif frame["type"] == "deleted" and frame["target"] in held:
            held[frame["target"]] = tombstone(held[frame["target"]])


@pytest.mark.e2e_timeout(45)
async def test_a_resume_replays_messages_and_changes_once_and_matches_the_history(chatd):
    server = chatd("--messages-per-second", "0")
    alice = await connect(server, "alice", "bob", "alice")
    bob_other = await connect(server, "bob", "alice", "bob's other device")
    bob = await connect(server, "bob", "alice", "bob (leaves, then resumes)")

    held: dict[int, dict] = {}
    acks: dict[str, dict] = {}
    for n in range(1, 6):
        acks[f"a-{n}"] = await send(alice, f"a-{n}", f"alice {n}")
        frame = await bob.recv_frame("message", seq=acks[f"a-{n}"]["seq"])
        apply_frames(held, [frame])
        if n in (2, 4):
            ack = await send(bob, f"b-{n}", f"bob {n}")
            acks[f"b-{n}"] = ack
            held[ack["seq"]] = from_ack(ack, "bob", f"bob {n}")
    # One change while bob is there: applied live.
    live = await change(alice, "edit", "e-live", seq=acks["a-1"]["seq"],
                        text="alice 1 (edited while bob was there)")
    frame = await bob.recv_frame("edited", seq=live["seq"])
    apply_frames(held, [frame])
    last_seen = live["seq"]
    await bob.expect_nothing_before_pong()
    await bob.close()

    # While bob is away: changes to messages he holds, new messages, changes to those.
    away: dict[int, tuple[str, int]] = {}  # change seq -> (frame type, target)

    async def record(client: V2Client, type_: str, client_id: str, **fields: Any) -> dict:
        ack = await change(client, type_, client_id, **fields)
        away[ack["seq"]] = ("edited" if type_ == "edit" else "deleted", ack["target"])
        return ack

    s = {key: ack["seq"] for key, ack in acks.items()}
    await record(alice, "edit", "e-2a", seq=s["a-2"], text="alice 2 (edited once)")
    await record(alice, "edit", "e-2b", id=acks["a-2"]["id"], text="alice 2 (edited twice)")
    await record(alice, "delete", "d-3", seq=s["a-3"])
    await record(bob_other, "edit", "e-b2", seq=s["b-2"], text="bob 2 (edited elsewhere)")
    await record(bob_other, "delete", "d-b4", id=acks["b-4"]["id"])
    new = await send_many(alice, [("a-6", "alice 6"), ("a-7", "alice 7"), ("a-8", "alice 8")],
                          skip=LIVE_TYPES)
    new.append(await send(bob_other, "b-9", "bob 9"))
    new_seqs = [ack["seq"] for ack in new]
    await record(alice, "edit", "e-6", seq=new_seqs[0], text="alice 6 (edited)")
    await record(alice, "delete", "d-7", seq=new_seqs[1])
    rest = assert_rest_change_ack(
        await api(server, "PATCH", messages_path("alice", "bob", s["a-4"]),
                  {"text": "alice 4 (edited over REST)", "client_id": "p-4"}),
        s["a-4"], "PATCH while bob is away", client_id="p-4")
    away[rest["seq"]] = ("edited", s["a-4"])
    final = await record(alice, "edit", "e-8", seq=new_seqs[2], text="alice 8 (edited)")

    resumed = await connect(server, "bob", "alice", f"bob resuming after {last_seen}",
                            after=last_seen)
    replay = []
    while not replay or replay[-1]["seq"] < final["seq"]:
        frame = await resumed.recv_frame()
        if frame["type"] == "presence":
            continue
        assert frame["type"] in ("message", "edited", "deleted"), (
            f"resume: unexpected frame {frame!r}")
        replay.append(frame)
    await resumed.expect_nothing_before_pong("the replay ends at the last change")

    got = seqs(replay)
    assert got == sorted(set(got)), f"replay seqs not strictly increasing / repeated: {got}"
    assert got == list(range(last_seen + 1, final["seq"] + 1)), (
        f"every seq after {last_seen} once (messages and changes): got {got}")
    changes = {f["seq"]: (f["type"], f["target"]) for f in replay if f["type"] != "message"}
    assert changes == away, f"change frames {changes} differ from the changes made {away}"
    assert [f["seq"] for f in replay if f["type"] == "message"] == new_seqs, replay
    for frame in replay:
        if frame["type"] == "edited":
            assert TS_PATTERN.match(frame["ts"]) and frame["sender"] in ("alice", "bob"), frame
    replayed_new = {f["seq"]: f for f in replay if f["type"] == "message"}
    assert replayed_new[new_seqs[0]]["text"] == "alice 6 (edited)" and \
        "edited_ts" in replayed_new[new_seqs[0]], "a replayed message is in its current state"
    assert (replayed_new[new_seqs[1]].get("deleted"), replayed_new[new_seqs[1]]["text"]) == \
        (True, ""), "a replayed deleted message is a tombstone"

    apply_frames(held, replay)
    assert [state(held[seq]) for seq in sorted(held)] == states(await rest_history(server)), (
        "what the resumed client holds after applying the replay differs from the history")

    # And live again: a change to a message bob held before he left.
    late = await change(alice, "edit", "e-late", seq=s["a-5"], text="alice 5 (late edit)")
    assert late["seq"] == final["seq"] + 1
    frame = await resumed.recv_frame("edited")
    check_edited_frame(frame, late, held[s["a-5"]], "alice 5 (late edit)", resumed.label)


# ---------------------------------------------------------------------- 4. rule errors

@pytest.mark.e2e_timeout(45)
async def test_refused_edits_and_deletes_name_their_rule_and_change_nothing(chatd):
    server = chatd("--max-text-bytes", "10", "--messages-per-second", "0")
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    m1 = await alice.send_and_ack("m-1", "a1")
    m2 = await alice.send_and_ack("m-2", "a2")
    for seq in (1, 2):
        await bob.recv_frame("message", seq=seq)
    b1 = await bob.send_and_ack("b-1", "b1")
    await alice.recv_frame("message", seq=3)
    edit = await change(alice, "edit", "e-0", seq=1, text="a1 new")
    delete = await change(alice, "delete", "d-0", seq=2)
    assert (m1["seq"], m2["seq"], b1["seq"], edit["seq"], delete["seq"]) == (1, 2, 3, 4, 5)
    await bob.recv_frame("edited", seq=4)
    await bob.recv_frame("deleted", seq=5)
    other_chat = await connect(server, "alice", "carol", "alice with carol")
    elsewhere = await other_chat.send_and_ack("c-1", "carol's")
    await bob.expect_nothing_before_pong()
    await alice.expect_nothing_before_pong()
    before = await rest_history(server)

    missing_id = "0123456789abcdef01234567"
    cases = [
        # (who, type, fields, code)
        (bob, "edit", {"seq": 1, "text": "mine now"}, "not_your_message"),
        (bob, "delete", {"id": m1["id"]}, "not_your_message"),
        (alice, "edit", {"seq": 3, "text": "bob's"}, "not_your_message"),
        (alice, "edit", {"seq": 999, "text": "x"}, "message_not_found"),
        (alice, "delete", {"seq": 999}, "message_not_found"),
        (alice, "edit", {"id": missing_id, "text": "x"}, "message_not_found"),
        (alice, "delete", {"id": missing_id}, "message_not_found"),
        (alice, "edit", {"seq": 4, "text": "x"}, "message_not_found"),  # a change entry
        (alice, "delete", {"seq": 5}, "message_not_found"),  # a change entry
        (alice, "edit", {"id": elsewhere["id"], "text": "x"}, "message_not_found"),
        (alice, "edit", {"seq": 2, "text": "again"}, "message_deleted"),
        (alice, "delete", {"seq": 2}, "message_deleted"),
        (alice, "delete", {"id": m2["id"]}, "message_deleted"),
        (alice, "edit", {"text": "no target"}, "invalid_target"),
        (alice, "delete", {}, "invalid_target"),
        (alice, "edit", {"seq": "1", "text": "x"}, "invalid_target"),
        (alice, "edit", {"seq": -1, "text": "x"}, "invalid_target"),
        (alice, "edit", {"seq": 1.5, "text": "x"}, "invalid_target"),
        (alice, "edit", {"seq": True, "text": "x"}, "invalid_target"),
        (alice, "delete", {"seq": None}, "invalid_target"),
        (alice, "edit", {"id": "not-an-id", "text": "x"}, "invalid_target"),
        (alice, "delete", {"id": m1["id"][:23]}, "invalid_target"),
        (alice, "delete", {"id": 7}, "invalid_target"),
        (alice, "edit", {"seq": 1, "text": ""}, "empty_text"),
        (alice, "edit", {"seq": 1, "text": "é" * 5 + "a"}, "text_too_long"),
        (alice, "edit", {"seq": 1, "text": 5}, "invalid_text"),
        (alice, "edit", {"seq": 1}, "invalid_text"),
    ]
    for n, (client, type_, fields, code) in enumerate(cases):
        client_id = f"bad-{n}"
        what = f"{type_} {fields!r} by {client.label}"
        await client.send_frame(type_, client_id=client_id, **fields)
        await expect_refusal(client, code, client_id, what)
        await client.expect_nothing_before_pong(f"{what}: one error frame only")
    for client in (alice, bob):
        await client.expect_nothing_before_pong("no change frame for a refused change")
    assert await rest_history(server) == before, "a refused change changed the history"

    # Nothing took a seq, and a refused client id was not used up.
    reused = next(n for n, case in enumerate(cases) if case[3] == "empty_text")
    ok = await change(alice, "edit", f"bad-{reused}", seq=1, text="é" * 5)
    check_change_ack(ok, seq=6, target=1)
    assert (await bob.recv_frame("edited"))["seq"] == 6


@pytest.mark.e2e_timeout(30)
async def test_an_edit_past_edit_window_seconds_is_refused_a_delete_is_not(chatd):
    window = 1.0
    server = chatd(env={"EDIT_WINDOW_SECONDS": "1"})
    alice = await connect(server, "alice", "bob", "alice")
    bob = await connect(server, "bob", "alice", "bob")
    ack = await alice.send_and_ack("m-1", "soon too old")
    message = from_ack(ack, "alice", "soon too old")
    sent_at = parse_ts(ack["ts"]).timestamp()
    await bob.recv_frame("message", seq=1)

    last = await change(alice, "edit", "w-0", seq=1, text="in the window")
    assert time.time() - sent_at < window, "the first edit came within the window"
    last_text = "in the window"
    check_edited_frame(await bob.recv_frame("edited"), last, message, last_text, bob.label)

    # Until shortly before the window ends, then poll: edits until one is refused.
    await asyncio.sleep(max(0.0, sent_at + window - 0.15 - time.time()))
    deadline = sent_at + window + 5.0
    attempt = 0
    while True:
        attempt += 1
        client_id, text = f"w-{attempt}", f"late {attempt}"
        attempted_at = time.time()
        await alice.send_frame("edit", client_id=client_id, seq=1, text=text)
        frame = await alice.recv_frame()
        if frame["type"] == "ack":
            assert attempted_at - sent_at <= window + 0.05, (
                f"an edit sent {attempted_at - sent_at:.3f}s after the message was accepted "
                f"with EDIT_WINDOW_SECONDS=1: {frame!r}")
            last, last_text = frame, text
            await bob.recv_frame("edited", seq=frame["seq"])
        else:
            assert frame["type"] == "error" and frame.get("code") == "edit_window_passed", (
                f"expected an ack or edit_window_passed, got {frame!r}")
            assert frame.get("client_id") == client_id, frame
            refused_after = time.time() - sent_at
            assert refused_after >= window, (
                f"edit refused as too old {refused_after:.3f}s after the message")
            break
        assert time.time() < deadline, "edits still accepted 5 s past EDIT_WINDOW_SECONDS=1"
        await asyncio.sleep(0.05)
    figures.report(f"edit window 1 s: first refusal {refused_after:.3f}s after the message "
                   f"(attempt {attempt})")

    expected = [edited(message, last_text, last["ts"])]
    assert states(await rest_history(server)) == states(expected)
    answer = await api(server, "PATCH", messages_path("alice", "bob", 1), {"text": "REST late"})
    assert_rest_error(answer, 409, "edit_window_passed", "PATCH past the window")
    await bob.expect_nothing_before_pong("a refused edit is not relayed")
    assert states(await rest_history(server)) == states(expected)

    # Deletes have no window; a new message has a window of its own.
    deleted = await change(alice, "delete", "d-1", seq=1)
    check_deleted_frame(await bob.recv_frame("deleted"), deleted, message, bob.label)
    fresh = await alice.send_and_ack("m-2", "fresh")
    await change(alice, "edit", "w-fresh", seq=fresh["seq"], text="fresh, edited")


# ---------------------------------------------------------------------- 5. REST

@pytest.mark.e2e_timeout(45)
async def test_rest_patch_and_delete_by_seq_and_id_with_their_status_codes(chatd):
    server = chatd("--max-text-bytes", "20")
    bob = await connect(server, "bob", "alice", "bob")
    posted = []
    for n in range(1, 5):
        status, ack = await api(server, "POST", messages_path("alice", "bob"),
                                {"client_id": f"p-{n}", "text": f"rest {n}"})
        assert status == 201 and ack["seq"] == n, (status, ack)
        posted.append(from_ack(ack, "alice", f"rest {n}"))
        await bob.recv_frame("message", seq=n)

    edit = assert_rest_change_ack(
        await api(server, "PATCH", messages_path("alice", "bob", 1),
                  {"text": "rest 1 edited", "client_id": "pe-1"}),
        1, "PATCH by seq", client_id="pe-1")
    assert edit["seq"] == 5, edit
    check_edited_frame(await bob.recv_frame("edited"), edit, posted[0], "rest 1 edited",
                       bob.label)
    retry = assert_rest_change_ack(
        await api(server, "PATCH", messages_path("alice", "bob", 1),
                  {"text": "rest 1 edited", "client_id": "pe-1"}),
        1, "PATCH retried", client_id="pe-1", duplicate=True)
    assert (retry["id"], retry["seq"], retry["ts"]) == (edit["id"], edit["seq"], edit["ts"])
    by_id = assert_rest_change_ack(
        await api(server, "PATCH", messages_path("alice", "bob", posted[1]["id"]),
                  {"text": "rest 2 edited"}),
        2, "PATCH by id without client_id")
    assert by_id["seq"] == 6, by_id
    check_edited_frame(await bob.recv_frame("edited"), by_id, posted[1], "rest 2 edited",
                       bob.label)
    deleted = assert_rest_change_ack(
        await api(server, "DELETE", messages_path("alice", "bob", 3)), 3, "DELETE by seq")
    assert deleted["seq"] == 7, deleted
    check_deleted_frame(await bob.recv_frame("deleted"), deleted, posted[2], bob.label)
    path = messages_path("alice", "bob", posted[3]["id"], "client_id=pd-4")
    by_id_delete = assert_rest_change_ack(await api(server, "DELETE", path), 4,
                                          "DELETE by id", client_id="pd-4")
    assert by_id_delete["seq"] == 8, by_id_delete
    check_deleted_frame(await bob.recv_frame("deleted"), by_id_delete, posted[3], bob.label)
    again = assert_rest_change_ack(await api(server, "DELETE", path), 4, "DELETE retried",
                                   client_id="pd-4", duplicate=True)
    assert (again["id"], again["seq"]) == (by_id_delete["id"], by_id_delete["seq"])

    expected = [edited(posted[0], "rest 1 edited", edit["ts"]),
                edited(posted[1], "rest 2 edited", by_id["ts"]),
                tombstone(posted[2]), tombstone(posted[3])]
    assert states(await rest_history(server)) == states(expected)

    missing_id = "0123456789abcdef01234567"
    refusals = [
        ("PATCH", messages_path("bob", "alice", 1), {"text": "bob's now"}, 403,
         "not_your_message"),
        ("DELETE", messages_path("bob", "alice", posted[0]["id"]), None, 403,
         "not_your_message"),
        ("PATCH", messages_path("alice", "bob", 999), {"text": "x"}, 404, "message_not_found"),
        ("DELETE", messages_path("alice", "bob", 999), None, 404, "message_not_found"),
        ("PATCH", messages_path("alice", "bob", missing_id), {"text": "x"}, 404,
         "message_not_found"),
        ("PATCH", messages_path("alice", "bob", 5), {"text": "x"}, 404, "message_not_found"),
        ("DELETE", messages_path("alice", "bob", 7), None, 404, "message_not_found"),
        ("PATCH", messages_path("alice", "bob", 3), {"text": "x"}, 409, "message_deleted"),
        ("DELETE", messages_path("alice", "bob", 3), None, 409, "message_deleted"),
        ("DELETE", messages_path("alice", "bob", posted[2]["id"]), None, 409,
         "message_deleted"),
        ("PATCH", messages_path("alice", "bob", 1), {"text": ""}, 400, "empty_text"),
        ("PATCH", messages_path("alice", "bob", 1), {"text": "x" * 21}, 400,
         "text_too_long"),
        ("PATCH", messages_path("alice", "bob", 1), {"text": 5}, 400, "invalid_text"),
        ("PATCH", messages_path("alice", "bob", "abc"), {"text": "x"}, 400, "invalid_target"),
        ("PATCH", messages_path("alice", "bob", "-1"), {"text": "x"}, 400, "invalid_target"),
        ("DELETE", messages_path("alice", "bob", "1x"), None, 400, "invalid_target"),
        ("DELETE", messages_path("alice", "bob", missing_id[:23]), None, 400,
         "invalid_target"),
    ]
    for method, path, body, status, code in refusals:
        assert_rest_error(await api(server, method, path, body), status, code,
                          f"{method} {path} {body!r}")
    assert states(await rest_history(server)) == states(expected), (
        "a refused PATCH or DELETE changed the history")
    await bob.expect_nothing_before_pong("no frame for a duplicate or a refused change")

    # A blocked user: POST and PATCH refused with 403 blocked, nothing stored.
    status, bobs = await api(server, "POST", messages_path("bob", "alice"),
                             {"client_id": "bp-1", "text": "bob's own"})
    assert status == 201, bobs
    status, answer = await api(server, "PUT", "/api/users/alice/blocks/bob")
    assert (status, answer) == (200, {"user": "alice", "blocked_user": "bob",
                                      "blocked": True}), (status, answer)
    kept = await rest_history(server)
    assert_rest_error(await api(server, "POST", messages_path("bob", "alice"),
                                {"client_id": "bp-2", "text": "while blocked"}),
                      403, "blocked", "POST by a blocked user")
    assert_rest_error(await api(server, "PATCH", messages_path("bob", "alice", bobs["seq"]),
                                {"text": "edit while blocked"}),
                      403, "blocked", "PATCH by a blocked user")
    assert await rest_history(server) == kept, "nothing of the blocked user's is stored"
    status, ack = await api(server, "POST", messages_path("alice", "bob"),
                            {"client_id": "p-5", "text": "alice still posts"})
    assert status == 201, (status, ack)


async def test_rest_edits_count_against_the_rate(chatd):
    server = chatd("--messages-per-second", "1", "--message-burst", "3")
    status, ack = await api(server, "POST", messages_path("alice", "bob"),
                            {"client_id": "r-1", "text": "rate"})
    assert status == 201, ack
    statuses = []
    for n in range(3):
        status, body = await api(server, "PATCH", messages_path("alice", "bob", 1),
                                 {"text": f"edit {n}"})
        statuses.append(status)
        if status == 429:
            assert body.get("code") == "rate_limited", body
    assert statuses == [200, 200, 429], f"burst of 3 (one POST, two PATCH): {statuses}"
    [message] = await rest_history(server)
    assert message["text"] == "edit 1", message


async def test_with_secret_key_rest_changes_and_blocks_are_the_token_subjects(chatd):
    server = chatd("--secret-key", SECRET)
    alice, bob = ({"Authorization": f"Bearer {token_for(user)}"} for user in ("alice", "bob"))
    status, ack = await api(server, "POST", messages_path("alice", "bob"),
                            {"client_id": "s-1", "text": "signed"}, headers=alice)
    assert status == 201, ack
    # bob's token on alice's path: bob is the caller, and the message is not his.
    assert_rest_error(await api(server, "PATCH", messages_path("alice", "bob", 1),
                                {"text": "x"}, headers=bob),
                      403, "not_your_message", "PATCH of alice's message with bob's token")
    assert (await api(server, "PATCH", messages_path("alice", "bob", 1), {"text": "x"}))[0] \
        == 401
    assert_rest_change_ack(await api(server, "PATCH", messages_path("bob", "alice", 1),
                                     {"text": "signed, edited"}, headers=alice),
                           1, "PATCH with alice's token on bob's path")

    assert (await api(server, "PUT", "/api/users/alice/blocks/bob"))[0] == 401
    assert (await api(server, "PUT", "/api/users/alice/blocks/bob", headers=bob))[0] == 403, (
        "PUT alice's block with bob's token")
    assert (await api(server, "GET", "/api/users/alice/blocks", headers=bob))[0] == 403
    assert await api(server, "PUT", "/api/users/alice/blocks/bob", headers=alice) == (
        200, {"user": "alice", "blocked_user": "bob", "blocked": True})
    assert await api(server, "GET", "/api/users/alice/blocks", headers=alice) == (
        200, {"user": "alice", "blocks": ["bob"]})
    assert_rest_error(await api(server, "POST", messages_path("alice", "bob"),
                                {"client_id": "s-2", "text": "from bob"}, headers=bob),
                      403, "blocked", "POST with bob's token while alice blocks him")
    assert await api(server, "DELETE", "/api/users/alice/blocks/bob", headers=alice) == (
        200, {"user": "alice", "blocked_user": "bob", "blocked": False})
    status, _ = await api(server, "POST", messages_path("alice", "bob"),
                          {"client_id": "s-3", "text": "from bob again"}, headers=bob)
    assert status == 201


# ---------------------------------------------------------------------- 6. retention

RETENTION_DAYS = "0.00003"  # 2.592 s
RETENTION_S = float(RETENTION_DAYS) * 86400
OLD_BATCH = 30
PURGED = "chatd_retention_purged_messages_total"


class PacedWriter:
    """alice sending a message every `period` seconds until stopped."""

    def __init__(self, client: V2Client, period: float = 0.03) -> None:
        self.client = client
        self.period = period
        self.sent: list[dict] = []
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            text = f"new message {n}"
            ack = await self.client.send_and_ack(f"new-{n}", text)
            self.sent.append(from_ack(ack, "alice", text))
            try:
                await asyncio.wait_for(self.stopping.wait(), self.period)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> list[dict]:
        self.stopping.set()
        await asyncio.wait_for(self.task, 10)
        return self.sent


@pytest.mark.e2e_timeout(45)
async def test_retention_removes_old_messages_while_the_chat_goes_on(chatd):
    server = chatd("--messages-per-second", "0",
                   env={"RETENTION_DAYS": RETENTION_DAYS, "RETENTION_INTERVAL_SECONDS": "1"})
    assert metric(server, PURGED) == 0, f"{PURGED} starts at 0"
    assert scrape(server).types.get(PURGED) == "counter"
    alice = await connect(server, "alice", "bob", "alice")
    old = await send_many(alice, [(f"old-{n}", f"old message {n}")
                                  for n in range(1, OLD_BATCH + 1)])
    assert seqs(old) == list(range(1, OLD_BATCH + 1))
    old_sent_at = time.monotonic()

    writer = PacedWriter(alice)
    try:
        await wait_metric(server, PURGED, lambda v: v >= OLD_BATCH, f">= {OLD_BATCH}",
                          timeout=RETENTION_S + 10)
        purged_after = time.monotonic() - old_sent_at
        count = len(writer.sent)
        await poll(lambda: len(writer.sent), lambda n: n >= count + 3,
                   "the writer sent 3 more after the purge")
    finally:
        new = await writer.stop()
    assert seqs(new) == list(range(OLD_BATCH + 1, OLD_BATCH + 1 + len(new))), (
        "the writer's messages took consecutive seqs during the purge")
    figures.report(f"retention {RETENTION_S:.2f}s, pass every 1s: the old batch of "
                   f"{OLD_BATCH} purged {purged_after:.2f}s after it was sent; "
                   f"{len(new)} messages written meanwhile")
    assert purged_after >= RETENTION_S - 0.2, (
        f"messages purged {purged_after:.2f}s after they were sent, RETENTION_DAYS is "
        f"{RETENTION_S:.2f}s")

    # A consistent snapshot: no purge pass between the two reads of the counter.
    for _ in range(20):
        purged = metric(server, PURGED)
        kept = await rest_history(server)
        reader = await connect(server, "bob", "alice", "bob")
        resumed = await connect(server, "bob", "alice", "bob resuming from 5", after=5)
        first_replayed = await resumed.recv_frame("message")
        if metric(server, PURGED) == purged:
            break
        await reader.close()
        await resumed.close()
    else:
        pytest.fail("a purge pass ran during every one of 20 snapshots")
    purged = int(purged)
    assert not any(m["text"].startswith("old message") for m in kept), (
        f"old messages left: {[m['seq'] for m in kept if m['text'].startswith('old')]}")
    assert OLD_BATCH <= purged < OLD_BATCH + len(new), (purged, len(new))
    assert states(kept) == states(new[purged - OLD_BATCH:]), (
        f"{purged} purged: the history must be exactly the writer's messages after the "
        f"first {purged - OLD_BATCH}; got seqs {seqs(kept)}")
    assert new[-1]["seq"] in seqs(kept), "the newest messages are kept"
    assert reader.hello["first_seq"] == kept[0]["seq"], (
        f"hello.first_seq must be the oldest kept seq {kept[0]['seq']}: {reader.hello!r}")
    assert reader.hello["last_seq"] == new[-1]["seq"], reader.hello
    assert resumed.hello["first_seq"] == kept[0]["seq"], resumed.hello
    assert state(first_replayed) == state(kept[0]), (
        "a resume from before first_seq starts at the first kept message")

    # The seq keeps counting.
    after = await alice.send_and_ack("after-1", "after the purge")
    assert after["seq"] == new[-1]["seq"] + 1, after


# ---------------------------------------------------------------------- 7. erasure

def sqlite_hits(path, needles: list[str]) -> tuple[list[tuple], list[str]]:
    """(rows of any table holding one of `needles`, texts of alice's message rows), read
    from the database file with a read-only connection."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        hits = []
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) \
                        else value
                    if isinstance(text, str) and any(needle in text for needle in needles):
                        hits.append((table, row))
                        break
        alice_texts = [row[0] for row in connection.execute(
            "SELECT text FROM messages WHERE sender = 'alice'")]
        return hits, alice_texts
    finally:
        connection.close()


def mongo_hits(uri: str, needles: list[str]) -> tuple[list[tuple], list[str]]:
    import pymongo
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database()
        hits = []
        for name in db.list_collection_names():
            for document in db[name].find():
                if any(needle in repr(document) for needle in needles):
                    hits.append((name, document))
        alice_texts = [d.get("text") for d in db.messages.find({"sender": "alice"})]
        return hits, alice_texts
    finally:
        client.close()


@pytest.mark.e2e_timeout(45)
async def test_erasing_a_user_leaves_tombstones_and_none_of_her_texts(chatd):
    server = chatd(env={"ADMIN_TOKEN": ADMIN_TOKEN})
    secret = [f"alice secret {n} {secrets.token_hex(4)}" for n in range(4)]
    with_bob = await connect(server, "alice", "bob", "alice with bob")
    bob = await connect(server, "bob", "alice", "bob")
    with_carol = await connect(server, "alice", "carol", "alice with carol")
    carol = await connect(server, "carol", "alice", "carol")

    a1 = await send(with_bob, "a-1", secret[0])
    await bob.recv_frame("message", seq=a1["seq"])
    b1 = await send(bob, "b-1", "bob's reply")
    a2 = await send(with_bob, "a-2", secret[1])
    await bob.recv_frame("message", seq=a2["seq"])
    edit = await change(with_bob, "edit", "e-2", seq=a2["seq"], text=secret[2])
    await bob.recv_frame("edited", seq=edit["seq"])
    await with_bob.send_frame("read", seq=b1["seq"])
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": b1["seq"]}
    c1 = await send(with_carol, "c-1", secret[3])
    await carol.recv_frame("message", seq=c1["seq"])
    r1 = await send(carol, "r-1", "carol's reply")
    status, bc = await api(server, "POST", messages_path("bob", "carol"),
                           {"client_id": "bc-1", "text": "bob to carol"})
    assert status == 201, bc
    before = {peer: await rest_history(server, "alice", peer) for peer in ("bob", "carol")}

    erase = "/api/admin/users/alice/erase"
    for what, kwargs in (("no token", {}), ("a wrong token", {"bearer": ADMIN_TOKEN + "x"}),
                         ("Basic", {"headers": {"Authorization": f"Basic {ADMIN_TOKEN}"}})):
        status, body = await api(server, "POST", erase, **kwargs)
        assert status == 401, f"POST erase with {what}: expected 401, got {status} {body!r}"
    for peer in ("bob", "carol"):
        assert await rest_history(server, "alice", peer) == before[peer], (
            "a refused erase changed nothing")

    # messages_erased: her 3 messages; edits_erased: her edit.
    status, body = await api(server, "POST", erase, bearer=ADMIN_TOKEN)
    assert (status, body) == (200, {"user": "alice", "chats": 2, "messages_erased": 3,
                                    "edits_erased": 1, "receipts_removed": 1}), (status, body)

    # Live: each of her chats gets an erased change frame, at the chat's next seq.
    for client, seq in ((bob, edit["seq"] + 1), (carol, r1["seq"] + 1)):
        frame = await client.recv_frame("erased")
        assert {k: frame.get(k) for k in ("type", "seq", "user")} == {
            "type": "erased", "seq": seq, "user": "alice"}, f"{client.label}: {frame!r}"
        assert isinstance(frame.get("ts"), str) and TS_PATTERN.match(frame["ts"]), frame

    with_bob_history = await rest_history(server, "alice", "bob")
    assert [(m["seq"], m["sender"], m["text"], m.get("deleted", False))
            for m in with_bob_history] == [
        (a1["seq"], "alice", "", True), (b1["seq"], "bob", "bob's reply", False),
        (a2["seq"], "alice", "", True)], with_bob_history
    assert [m["id"] for m in with_bob_history] == [a1["id"], b1["id"], a2["id"]]
    assert states(await rest_history(server, "alice", "carol")) == states(
        [tombstone(from_ack(c1, "alice", secret[3])), from_ack(r1, "carol", "carol's reply")])
    assert [m["text"] for m in await rest_history(server, "bob", "carol")] == ["bob to carol"]
    reader = await connect(server, "bob", "alice", "bob's new connection")
    assert states(reader.history["messages"]) == states(with_bob_history)
    assert reader.hello["peer_read_seq"] == 0, f"her receipts are removed: {reader.hello!r}"
    status, listing = await api(server, "GET", "/api/users/alice/conversations")
    assert (status, listing) == (200, {"user": "alice", "conversations": []}), listing

    # The store keeps none of her texts (message texts or edits).
    if server.mongo_uri is None:
        hits, alice_texts = await in_thread(sqlite_hits, server.sqlite_path, secret)
    else:
        hits, alice_texts = await in_thread(mongo_hits, server.mongo_uri, secret)
    assert hits == [], f"alice's texts are still in the store: {hits!r}"
    assert not set(alice_texts) & set(secret), alice_texts

    metrics = scrape(server)
    assert metrics.value("chatd_admin_actions_total", action="erase") == 1
    assert metrics.value("chatd_erased_messages_total") == 3

    # She can write again; her conversation list shows the chat.
    again = await send(with_bob, "a-3", "back again")
    assert (await bob.recv_frame("message"))["text"] == "back again"
    status, listing = await api(server, "GET", "/api/users/alice/conversations")
    assert "bob" in [c["peer"] for c in listing["conversations"]], (
        f"a new message brings the chat back into her list: {listing!r}")
    assert (await rest_history(server))[-1]["seq"] == again["seq"]


async def test_the_admin_api_is_404_without_admin_token(chatd):
    server = chatd()
    for method, path in (("POST", "/api/admin/users/alice/erase"),
                         ("GET", "/api/admin/users/alice/export")):
        for token in (None, ADMIN_TOKEN):
            status, body = await api(server, method, path, bearer=token)
            assert status == 404, f"{method} {path} (token {token!r}): {status} {body!r}"


# ---------------------------------------------------------------------- 8. export

# 20 MB either way; on FerretDB, whose reads take long per page, in fewer, larger messages.
EXPORT_MESSAGES = 5_000 if E2E_STORE == "mongodb" else 20_000
EXPORT_TEXT_BYTES = 4_000 if E2E_STORE == "mongodb" else 1_000
RSS_BOUND = 10 * 2**20
READ_CHUNK = 16 * 1024
READ_RATE = 12 * 2**20  # bytes/s the reader takes at most: slower than chatd can write


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def seed_mongo_messages(uri: str, chat: str, users: list[str], sender: str,
                        items: list[tuple[str, str]], first_seq: int) -> list[str]:
    """Writes `items` as messages first_seq.. of `chat` straight into MongoDB, as the
    documents test_mongo.py checks (messages: _id, chat, seq, sender, text, ts; chats:
    _id, participants, last_seq, last_activity); their ids."""
    import datetime as dt

    import pymongo
    from bson import ObjectId
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database()
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(milliseconds=len(items))
        ids, batch = [], []
        for seq, (_, text) in enumerate(items, first_seq):
            oid = ObjectId()
            ids.append(str(oid))
            batch.append({"_id": oid, "chat": chat, "seq": seq, "sender": sender, "text": text,
                          "ts": start + dt.timedelta(milliseconds=seq)})
            if len(batch) == 1000:
                db.messages.insert_many(batch, ordered=True)
                batch = []
        if batch:
            db.messages.insert_many(batch, ordered=True)
        db.chats.update_one({"_id": chat}, {"$set": {
            "participants": sorted(users), "last_seq": first_seq + len(items) - 1,
            "last_activity": start + dt.timedelta(milliseconds=len(items))}}, upsert=True)
        return ids
    finally:
        client.close()


def export_slowly(server, user: str) -> dict[str, Any]:
    """GET the export, read incrementally at most READ_RATE through a small receive
    buffer, sampling chatd's VmRSS after each chunk."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.connect()
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    before = memory(server.pid)
    peak_rss = before["VmRSS"]
    started = time.monotonic()
    try:
        connection.request("GET", f"/api/admin/users/{user}/export",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        chunks = []
        received = 0
        while True:
            chunk = response.read(READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
            peak_rss = max(peak_rss, memory(server.pid)["VmRSS"])
            ahead = received / READ_RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        connection.close()
    after = memory(server.pid)
    peak = peak_rss
    if after["VmHWM"] > before["VmHWM"]:
        peak = max(peak, after["VmHWM"])
    return {"status": response.status, "headers": headers, "body": b"".join(chunks),
            "growth": peak - before["VmRSS"], "before": before, "after": after,
            "seconds": time.monotonic() - started}


@pytest.mark.e2e_timeout(150)
async def test_export_streams_every_message_in_bounded_memory(chatd):
    server = chatd("--messages-per-second", "0", env={"ADMIN_TOKEN": ADMIN_TOKEN})
    # First the small things (on FerretDB every operation after the bulk scans it):
    # bob's messages 1 and 2 to alice; a chat alice received in first, with an edit and a
    # delete of hers; a chat of others.
    for n in (1, 2):
        status, _ = await api(server, "POST", messages_path("bob", "alice"),
                              {"client_id": f"bob-{n}", "text": f"bob {n}"})
        assert status == 201
    status, _ = await api(server, "POST", messages_path("dave", "alice"),
                          {"client_id": "dave-1", "text": "dave writes to alice"})
    assert status == 201
    with_dave = await connect(server, "alice", "dave", "alice with dave")
    to_dave = [await send(with_dave, f"d-{n}", f"to dave {n}") for n in (1, 2)]
    edit = await change(with_dave, "edit", "e-1", seq=to_dave[0]["seq"], text="edited")
    await change(with_dave, "delete", "del-2", seq=to_dave[1]["seq"])
    status, _ = await api(server, "POST", messages_path("bob", "carol"),
                          {"client_id": "bc-1", "text": "not alice's chat"})
    assert status == 201

    # Then alice's 20,000 messages to bob, seqs 3..20,002.
    filler = "x" * (EXPORT_TEXT_BYTES - 12)
    items = [(f"x-{n}", f"{n:010d} {filler}") for n in range(1, EXPORT_MESSAGES + 1)]
    started = time.monotonic()
    if server.mongo_uri is None:
        alice = await connect(server, "alice", "bob", "alice")
        assert alice.hello["chat"] == "5:alice:bob", alice.hello
        acks = await send_many(alice, items, window=64, timeout=30)
        assert seqs(acks) == list(range(3, EXPORT_MESSAGES + 3))
        ids = [ack["id"] for ack in acks]
        how = "sent as pipelined v2 sends"
    else:
        # FerretDB stores a few dozen such messages a second through chatd (a client-id
        # lookup before each insert, as it has no partial indexes): written directly.
        ids = await in_thread(seed_mongo_messages, server.mongo_uri, "5:alice:bob",
                              ["alice", "bob"], "alice", items, 3, timeout=120)
        how = "written into MongoDB directly"
    figures.report(f"export: {EXPORT_MESSAGES} messages of {EXPORT_TEXT_BYTES} B {how} in "
                   f"{time.monotonic() - started:.1f}s ({E2E_STORE})")

    assert (await api(server, "GET", "/api/admin/users/alice/export"))[0] == 401
    result = await in_thread(export_slowly, server, "alice", timeout=120)
    body = result["body"]
    figures.report(f"export of {len(body) / 2**20:.1f} MiB read in {result['seconds']:.1f}s: "
                   f"chatd RSS {result['before']['VmRSS'] / 2**20:.1f} MiB before, grew "
                   f"{result['growth'] / 2**20:.1f} MiB at most ({E2E_STORE})")
    assert result["status"] == 200, (result["status"], body[:300])
    assert result["headers"].get("content-type", "").startswith("application/json")
    exported = json.loads(body)
    assert exported["user"] == "alice" and isinstance(exported["chats"], list), list(exported)
    by_peer = {chat["peer"]: chat for chat in exported["chats"]}
    assert sorted(by_peer) == ["bob", "dave"], (
        f"every chat alice is in, sent or received, in one answer: {sorted(by_peer)} "
        f"(answer's other fields: { {k: v for k, v in exported.items() if k != 'chats'} })")
    assert by_peer["bob"]["chat"] == "5:alice:bob", by_peer["bob"]["chat"]
    messages = by_peer["bob"]["messages"]
    assert len(messages) == EXPORT_MESSAGES + 2, (
        f"the export must hold all {EXPORT_MESSAGES + 2} messages of alice:bob, got "
        f"{len(messages)} (answer's other fields: "
        f"{ {k: v for k, v in exported.items() if k != 'chats'} })")
    assert result["headers"].get("transfer-encoding") == "chunked", (
        f"the export is streamed (chunked): {result['headers']}")
    assert len(body) >= 20_000_000, f"the export is {len(body)} bytes"
    assert seqs(messages) == list(range(1, EXPORT_MESSAGES + 3)), "oldest first"
    assert [m["id"] for m in messages[2:]] == ids
    assert [(m["sender"], m["text"]) for m in messages] == [
        ("bob", "bob 1"), ("bob", "bob 2")] + [("alice", text) for _, text in items]
    dave = by_peer["dave"]["messages"]
    assert [(m["seq"], m["sender"], m["text"], m.get("deleted", False), m.get("edited_ts"))
            for m in dave] == [
        (1, "dave", "dave writes to alice", False, None),
        (to_dave[0]["seq"], "alice", "edited", False, edit["ts"]),
        (to_dave[1]["seq"], "alice", "", True, dave[2].get("edited_ts"))], (
        f"current state, change seqs skipped: {dave!r}")
    metrics = scrape(server)
    assert metrics.value("chatd_admin_actions_total", action="export") == 1
    assert metrics.value("chatd_exported_messages_total") == EXPORT_MESSAGES + 5

    if not server.uses_asan():
        assert result["growth"] < RSS_BOUND, (
            f"chatd's resident memory grew {result['growth'] / 2**20:.1f} MiB while "
            f"streaming a {len(body) / 2**20:.1f} MiB export (bound "
            f"{RSS_BOUND / 2**20:.0f} MiB)")

    status, nobody = await api(server, "GET", "/api/admin/users/zed/export", bearer=ADMIN_TOKEN)
    assert (status, nobody) == (200, {"user": "zed", "chats": []}), (status, nobody)


# ---------------------------------------------------------------------- 9. blocking

@pytest.mark.e2e_timeout(45)
async def test_blocking_refuses_the_peer_and_hides_the_blocker(chatd):
    server = chatd()
    phone = await connect(server, "alice", "bob", "alice phone")
    laptop = await connect(server, "alice", "bob", "alice laptop")
    bob = await connect(server, "bob", "alice", "bob v2")
    bob_v1 = await open_v1(server, "bob", "alice", "bob v1")
    assert (phone.hello["blocking"], phone.hello["blocked"]) == (False, False), phone.hello
    b1 = await bob.send_and_ack("b-1", "before the block")
    for client in (phone, laptop):
        await client.recv_frame("message", seq=b1["seq"])
    await bob_v1.recv_message("bob", "before the block")

    await phone.send_frame("block")
    answer = await phone.recv_frame("blocked")
    check_blocked_frame(answer, "alice", True, phone.label)
    assert answer["seq"] == b1["seq"] + 1, f"a block takes the chat's next seq: {answer!r}"
    assert await laptop.recv_frame("blocked") == answer, "alice's other device gets it too"

    # alice still sends; bob gets her message and nothing of the block.
    a1 = await phone.send_and_ack("a-1", "alice still sends")
    assert a1["seq"] == answer["seq"] + 1, a1
    got = await frames_until(bob, "message", keep_presence=True)
    assert [f["type"] for f in got if f["type"] != "presence"] == ["message"], (
        f"bob must get nothing live of the block: {got!r}")
    assert got[-1]["seq"] == a1["seq"]
    await laptop.recv_frame("message", seq=a1["seq"])
    await bob_v1.recv_message("alice", "alice still sends")

    # bob's sends and edits are refused, nothing stored; alice hears nothing.
    await bob.send_text("b-2", "refused")
    await expect_refusal(bob, "blocked", "b-2", "send while blocked")
    await bob.send_frame("edit", client_id="be-1", seq=b1["seq"], text="edit while blocked")
    await expect_refusal(bob, "blocked", "be-1", "edit while blocked")
    await bob_v1.send_message("bob", "refused over v1")
    await bob_v1.expect_error("blocked")
    for client in (phone, laptop):
        await client.expect_nothing_before_pong("a refused send of bob's")

    # alice's typing, read receipts and presence do not reach bob (her laptop's do).
    await phone.send_frame("typing", typing=True)
    await laptop.recv_frame("typing", user="alice", typing=True)
    await phone.send_frame("read", seq=a1["seq"])
    await laptop.recv_frame("read", user="alice", seq=a1["seq"])
    tablet = await connect(server, "alice", "bob", "alice tablet")
    assert (tablet.hello["blocking"], tablet.hello["blocked"]) == (True, False), tablet.hello
    assert tablet.hello["peer_devices"] == 2, f"bob's presence is shown to alice: {tablet.hello}"
    await laptop.skip_until("presence", user="alice", devices=3)
    a2 = await phone.send_and_ack("a-2", "marker after typing, read and a new device")
    got = await frames_until(bob, "message", keep_presence=True)
    assert [f for f in got if f["type"] != "presence" or f.get("user") == "alice"] == \
        [got[-1]], f"bob must get no typing, read or presence of alice's: {got!r}"
    assert got[-1]["seq"] == a2["seq"]
    await bob_v1.recv_message("alice", "marker after typing, read and a new device")
    bob2 = await connect(server, "bob", "alice", "bob's new connection")
    assert {k: bob2.hello[k] for k in ("blocked", "blocking", "peer_online", "peer_devices")} \
        == {"blocked": True, "blocking": False, "peer_online": False, "peer_devices": 0}, (
            bob2.hello)
    assert texts(await rest_history(server)) == [
        "before the block", "alice still sends", "marker after typing, read and a new device"]
    assert await api(server, "GET", "/api/users/alice/blocks") == (
        200, {"user": "alice", "blocks": ["bob"]})
    assert await api(server, "GET", "/api/users/bob/blocks") == (
        200, {"user": "bob", "blocks": []})

    # Blocking twice changes nothing (no new seq).
    await phone.send_frame("block")
    check_blocked_frame(await phone.recv_frame("blocked"), "alice", True, phone.label,
                        changed=False)
    assert await api(server, "PUT", "/api/users/alice/blocks/bob") == (
        200, {"user": "alice", "blocked_user": "bob", "blocked": True})
    a3 = await send(phone, "a-3", "after blocking twice")
    assert a3["seq"] == a2["seq"] + 1, f"blocking twice took a seq: {a3!r} after {a2!r}"

    # Unblocked: bob sends again and sees alice again.
    await phone.send_frame("unblock")
    unblocked = await next_blocked(phone, False)
    check_blocked_frame(unblocked, "alice", False, phone.label)
    assert unblocked["seq"] == a3["seq"] + 1, unblocked
    for client in (laptop, tablet):
        assert await next_blocked(client, False) == unblocked, client.label
    b3 = await send(bob, "b-3", "after the unblock")
    for client in (phone, laptop, tablet):
        await frames_until(client, "message", seq=b3["seq"])
    bob3 = await connect(server, "bob", "alice", "bob after the unblock")
    assert (bob3.hello["blocked"], bob3.hello["peer_devices"]) == (False, 3), bob3.hello
    assert await api(server, "GET", "/api/users/alice/blocks") == (
        200, {"user": "alice", "blocks": []})

    # REST blocks reach alice's connections as blocked frames; sorted listing.
    assert await api(server, "PUT", "/api/users/alice/blocks/bob") == (
        200, {"user": "alice", "blocked_user": "bob", "blocked": True})
    frame = await next_blocked(phone, True)
    check_blocked_frame(frame, "alice", True, phone.label)
    assert frame["seq"] == unblocked["seq"] + 2, (frame, "the block after b-3")
    for other in ("zoe", "carol"):
        assert await api(server, "PUT", f"/api/users/alice/blocks/{other}") == (
            200, {"user": "alice", "blocked_user": other, "blocked": True})
    assert await api(server, "GET", "/api/users/alice/blocks") == (
        200, {"user": "alice", "blocks": ["bob", "carol", "zoe"]})
    assert await api(server, "DELETE", "/api/users/alice/blocks/bob") == (
        200, {"user": "alice", "blocked_user": "bob", "blocked": False})
    check_blocked_frame(await next_blocked(phone, False), "alice", False, phone.label)
    assert await api(server, "GET", "/api/users/alice/blocks") == (
        200, {"user": "alice", "blocks": ["carol", "zoe"]})
    await send(bob, "b-4", "bob again")


async def test_a_block_survives_a_restart(chatd):
    first = chatd()
    alice = await connect(first, "alice", "bob", "alice")
    await alice.send_and_ack("a-1", "hi")
    await alice.send_frame("block")
    check_blocked_frame(await alice.recv_frame("blocked"), "alice", True, alice.label)
    await alice.close()
    first.stop_and_check()

    second = chatd(sqlite_path=first.sqlite_path)
    bob = await connect(second, "bob", "alice", "bob after the restart")
    assert (bob.hello["blocked"], bob.hello["blocking"]) == (True, False), bob.hello
    await bob.send_text("b-1", "still refused")
    await expect_refusal(bob, "blocked", "b-1", "send after the restart")
    alice = await connect(second, "alice", "bob", "alice after the restart")
    assert (alice.hello["blocking"], alice.hello["blocked"]) == (True, False), alice.hello
    assert await api(second, "GET", "/api/users/alice/blocks") == (
        200, {"user": "alice", "blocks": ["bob"]})
    assert texts(await rest_history(second)) == ["hi"]


def start_instance(chatd, ferretdb, database: str, redis_url: str, **env: str):
    from ferretdb import wait_readyz
    server = chatd("--redis-url", redis_url, env={"MONGO_URI": ferretdb.uri(database), **env})
    wait_readyz(server, 200)
    return server


async def start_pair(chatd, ferretdb, redis, **env: str) -> tuple:
    from ferretdb import unique_database
    database = unique_database("chatd_lifecycle")
    servers = tuple(start_instance(chatd, ferretdb, database, redis.url, **env)
                    for _ in range(2))
    for server in servers:
        await wait_metric(server, "chatd_redis_connected", lambda v: v == 1, "== 1", 15)
    return servers


@mongodb_only
@pytest.mark.e2e_timeout(45)
async def test_edits_deletes_and_erasures_cross_instances_as_change_frames(
        ferretdb, redis, chatd):
    one, two = await start_pair(chatd, ferretdb, redis, ADMIN_TOKEN=ADMIN_TOKEN)
    bob = await connect(two, "bob", "alice", "bob @2")
    alice_two = await connect(two, "alice", "bob", "alice's other device @2")
    alice = await connect(one, "alice", "bob", "alice @1")
    held = [from_ack(await alice.send_and_ack(f"m-{n}", text), "alice", text)
            for n, text in enumerate(["first", "second", "third"], 1)]
    for client in (bob, alice_two):
        for message in held:
            assert state(await client.recv_frame("message")) == state(message)

    edit = await change(alice, "edit", "e-1", seq=1, text="first, edited")
    for client in (bob, alice_two):
        check_edited_frame(await client.recv_frame("edited"), edit, held[0], "first, edited",
                           client.label)
    delete = await change(alice, "delete", "d-2", seq=2)
    for client in (bob, alice_two):
        check_deleted_frame(await client.recv_frame("deleted"), delete, held[1], client.label)
    status, body = await api(one, "POST", "/api/admin/users/alice/erase", bearer=ADMIN_TOKEN)
    assert status == 200, body
    # An erasure comes from no connection: every connection of the chat gets it.
    for client in (alice, bob, alice_two):
        frame = await client.recv_frame("erased")
        assert (frame.get("seq"), frame.get("user")) == (delete["seq"] + 1, "alice"), (
            f"{client.label}: {frame!r}")
    for client in (alice, bob, alice_two):
        await client.expect_nothing_before_pong("each change once, as a change frame")
    assert [(m["seq"], m["text"], m.get("deleted")) for m in await rest_history(two)] == [
        (1, "", True), (2, "", True), (3, "", True)]


@mongodb_only
@pytest.mark.e2e_timeout(45)
async def test_a_block_on_one_instance_holds_on_another(ferretdb, redis, chatd):
    one, two = await start_pair(chatd, ferretdb, redis)
    bob = await connect(two, "bob", "alice", "bob @2")
    alice_two = await connect(two, "alice", "bob", "alice's other device @2")
    alice = await connect(one, "alice", "bob", "alice @1")
    first = await bob.send_and_ack("b-1", "before the block")
    await alice.recv_frame("message", seq=first["seq"])
    await alice_two.recv_frame("message", seq=first["seq"])

    await alice.send_frame("block")
    answer = await alice.recv_frame("blocked")
    check_blocked_frame(answer, "alice", True, alice.label)
    assert await alice_two.recv_frame("blocked") == answer, "the block crossed instances"
    await bob.send_text("b-2", "refused on instance 2")
    await expect_refusal(bob, "blocked", "b-2", "send on instance 2 after the block on 1")
    late = await connect(two, "bob", "alice", "bob's new connection @2")
    assert late.hello["blocked"] is True and late.hello["peer_devices"] == 0, late.hello
    assert_rest_error(await api(two, "POST", messages_path("bob", "alice"),
                                {"client_id": "b-3", "text": "REST on 2"}),
                      403, "blocked", "POST on instance 2")
    assert await api(two, "GET", "/api/users/alice/blocks") == (
        200, {"user": "alice", "blocks": ["bob"]})
    await alice.expect_nothing_before_pong("nothing of bob's refused sends")
    assert texts(await rest_history(two)) == ["before the block"]

    await alice.send_frame("unblock")
    check_blocked_frame(await alice.recv_frame("blocked"), "alice", False, alice.label)
    await alice_two.skip_until("blocked", blocked=False)
    again = await bob.send_and_ack("b-4", "after the unblock")
    await alice.recv_frame("message", seq=again["seq"])
