"""Bad input from clients: frames, senders, sizes and paths."""

from __future__ import annotations

import json

import pytest

from chat_client import ChatClient, open_expect_close, seqs, texts


async def open_pair(server, user1: str = "alice", user2: str = "bob"):
    first = await ChatClient.open(server, user1, user2, user1)
    second = await ChatClient.open(server, user2, user1, user2)
    return first, second


async def assert_history_is(server, expected_texts: list[str]) -> None:
    """A fresh connection receives exactly `expected_texts` as history, then only live
    frames (checked with a marker message)."""
    reader = await ChatClient.open(server, "bob", "alice", "history reader")
    history = await reader.recv_messages(len(expected_texts))
    assert texts(history) == expected_texts
    assert seqs(history) == list(range(1, len(expected_texts) + 1)), (
        "rejected frames must not consume sequence numbers")
    marker_sender = await ChatClient.open(server, "alice", "bob", "marker sender")
    await marker_sender.send_message("alice", "marker")
    await reader.recv_message("alice", "marker")


# ---------------------------------------------------------------------- sender

@pytest.mark.parametrize("spoofed", ["mallory", "bobby", "bo"])
async def test_sender_outside_the_chat_is_rejected(chatd, spoofed):
    server = chatd()
    alice, bob = await open_pair(server)

    await bob.send_message(spoofed, "I am someone else")
    await bob.expect_error("sender_not_participant")
    # The connection stays usable, and alice never saw the spoofed message.
    await bob.send_message("bob", "the real bob")
    await alice.recv_message("bob", "the real bob")
    await bob.expect_silence()
    await assert_history_is(server, ["the real bob"])


# ---------------------------------------------------------------------- frames

BAD_FRAMES = [
    ("not json at all", "invalid_json"),
    ('{"sender": "alice", "text": "unterminated', "invalid_json"),
    ('{"sender": "alice", "text": "x"} trailing', "invalid_json"),
    ("", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ('"just a string"', "invalid_frame"),
    ("42", "invalid_frame"),
    ("null", "invalid_frame"),
    ('{"sender": "alice"}', "invalid_text"),
    ('{"sender": "alice", "text": 5}', "invalid_text"),
    ('{"sender": "alice", "text": null}', "invalid_text"),
    ('{"sender": "alice", "text": ["hi"]}', "invalid_text"),
    ('{"text": "hi"}', "invalid_sender"),
    ('{"sender": 7, "text": "hi"}', "invalid_sender"),
    ('{"sender": null, "text": "hi"}', "invalid_sender"),
]


@pytest.mark.parametrize("frame,code", BAD_FRAMES, ids=[code + ":" + frame[:24]
                                                       for frame, code in BAD_FRAMES])
async def test_bad_frame_gets_error_frame_and_connection_stays_open(chatd, frame, code):
    server = chatd()
    alice, bob = await open_pair(server)

    await alice.send_raw(frame)
    await alice.expect_error(code)
    await alice.send_message("alice", "still here")
    await bob.recv_message("alice", "still here")  # bob's next frame: nothing leaked
    await assert_history_is(server, ["still here"])


async def test_binary_frame_gets_unsupported_frame_error(chatd):
    server = chatd()
    alice, bob = await open_pair(server)
    await alice.send_raw(json.dumps({"sender": "alice", "text": "as binary"}).encode())
    await alice.expect_error("unsupported_frame")
    await alice.send_message("alice", "as text")
    await bob.recv_message("alice", "as text")
    await assert_history_is(server, ["as text"])


async def test_many_bad_frames_in_a_row_keep_the_connection(chatd):
    server = chatd()
    alice, bob = await open_pair(server)
    for frame, code in BAD_FRAMES:
        await alice.send_raw(frame)
        await alice.expect_error(code)
    await alice.send_message("alice", "survived")
    await bob.recv_message("alice", "survived")


# ---------------------------------------------------------------------- size

def frame_of_size(size: int) -> str:
    """A valid message frame whose UTF-8 encoding is exactly `size` bytes."""
    empty = json.dumps({"sender": "alice", "text": ""})
    frame = json.dumps({"sender": "alice", "text": "x" * (size - len(empty))})
    assert len(frame.encode()) == size
    return frame


async def test_frame_at_the_limit_is_delivered(chatd):
    server = chatd("--max-message-bytes", "1024")
    alice, bob = await open_pair(server)
    for size in (1000, 1024):
        frame = frame_of_size(size)
        await alice.send_raw(frame)
        await bob.recv_message("alice", json.loads(frame)["text"])


async def test_oversize_frame_closes_with_1009(chatd):
    server = chatd("--max-message-bytes", "1024")
    alice, bob = await open_pair(server)
    await alice.send_raw(frame_of_size(2000))
    await alice.expect_close(1009)

    # Nothing was stored or delivered; bob's connection is unaffected.
    alice_again = await ChatClient.open(server, "alice", "bob", "alice again")
    await alice_again.send_message("alice", "short one")
    frame = await bob.recv_message("alice", "short one")
    assert frame["seq"] == 1


async def test_oversize_frame_just_over_the_limit_closes_with_1009(chatd):
    server = chatd("--max-message-bytes", "1024")
    alice, _ = await open_pair(server)
    await alice.send_raw(frame_of_size(1025))
    await alice.expect_close(1009)


# ---------------------------------------------------------------------- paths

INVALID_PATHS = {
    "empty first name": "/ws//bob",
    "empty second name": "/ws/alice/",
    "65-byte name": "/ws/" + "a" * 65 + "/bob",
    "65 bytes of 2-byte characters": "/ws/" + "%C3%A9" * 32 + "a/bob",
    "newline": "/ws/al%0Aice/bob",
    "NUL": "/ws/alice/b%00ob",
    "DEL": "/ws/alice/bob%7F",
    "escape": "/ws/%1Balice/bob",
    "extra segment": "/ws/alice/bob/carol",
    "one segment": "/ws/alice",
    "bad percent-encoding": "/ws/al%ZZice/bob",
}


@pytest.mark.parametrize("path", INVALID_PATHS.values(), ids=INVALID_PATHS.keys())
async def test_invalid_username_or_path_closes_with_4400(chatd, path):
    server = chatd()
    await open_expect_close(server.ws_raw(path), 4400, path)


@pytest.mark.parametrize("name", ["a" * 64, "é" * 32, "a"], ids=["64 ascii", "64 bytes utf8", "1"])
async def test_names_up_to_64_bytes_are_accepted(chatd, name):
    server = chatd()
    first = await ChatClient.open(server, name, "bob", "long name")
    second = await ChatClient.open(server, "bob", name, "bob")
    await first.send_message(name, "hi")
    await second.recv_message(name, "hi")
