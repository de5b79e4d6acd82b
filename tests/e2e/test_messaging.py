"""Live delivery between the two users of a chat (protocol v1)."""

from __future__ import annotations

import asyncio
import datetime as dt

from chat_client import ChatClient, parse_ts, texts


async def test_two_users_chat_both_ways_without_echo(chatd):
    server = chatd()
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "alice", "bob", "bob")

    await alice.send_message("alice", "hi bob")
    first = await bob.recv_message("alice", "hi bob")
    await bob.send_message("bob", "hi alice")
    # The next frame alice sees is bob's reply: her own message was not echoed back.
    second = await alice.recv_message("bob", "hi alice")
    await alice.send_message("alice", "how are you?")
    third = await bob.recv_message("alice", "how are you?")

    assert [first["seq"], second["seq"], third["seq"]] == [1, 2, 3]
    assert len({first["id"], second["id"], third["id"]}) == 3, "message ids must be unique"
    stamps = [parse_ts(frame["ts"]) for frame in (first, second, third)]
    assert stamps == sorted(stamps), f"timestamps go backwards: {stamps}"
    now = dt.datetime.now(dt.timezone.utc)
    assert abs(now - stamps[0]) < dt.timedelta(minutes=5), (
        f"ts {first['ts']} is not the server's current UTC time (now {now.isoformat()})")
    await asyncio.gather(alice.expect_silence(), bob.expect_silence())


async def test_user_order_in_path_names_the_same_chat(chatd):
    server = chatd()
    alice = await ChatClient.open(server, "alice", "bob", "alice via /ws/alice/bob")
    bob = await ChatClient.open(server, "bob", "alice", "bob via /ws/bob/alice")

    await alice.send_message("alice", "one")
    await bob.recv_message("alice", "one")
    await bob.send_message("bob", "two")
    await alice.recv_message("bob", "two")

    for path_users in (("alice", "bob"), ("bob", "alice")):
        late = await ChatClient.open(server, *path_users, f"history via {path_users}")
        history = await late.recv_messages(2)
        assert texts(history) == ["one", "two"]
        assert [frame["seq"] for frame in history] == [1, 2]


async def test_second_device_gets_messages_but_not_the_sending_connection(chatd):
    server = chatd()
    phone = await ChatClient.open(server, "alice", "bob", "alice phone")
    laptop = await ChatClient.open(server, "alice", "bob", "alice laptop")
    bob = await ChatClient.open(server, "bob", "alice", "bob")

    await phone.send_message("alice", "from my phone")
    at_bob = await bob.recv_message("alice", "from my phone")
    at_laptop = await laptop.recv_message("alice", "from my phone")
    assert at_bob == at_laptop, "both receivers must see the same stored message"

    await bob.send_message("bob", "got it")
    # Positive marker: the phone's next frame is bob's answer, not its own message.
    await phone.recv_message("bob", "got it")
    await laptop.recv_message("bob", "got it")

    await laptop.send_message("alice", "now from the laptop")
    await phone.recv_message("alice", "now from the laptop")
    await bob.recv_message("alice", "now from the laptop")
    await asyncio.gather(*(client.expect_silence() for client in (phone, laptop, bob)))


async def test_abruptly_dropped_connection_does_not_disturb_the_chat(chatd):
    server = chatd()
    dropped = await ChatClient.open(server, "alice", "bob", "alice (dropped)")
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    await bob.send_message("bob", "before the drop")
    await dropped.recv_message("bob", "before the drop")
    await alice.recv_message("bob", "before the drop")

    dropped.ws.transport.abort()  # TCP reset, no close handshake
    for n in range(3):
        await bob.send_message("bob", f"after the drop {n}")
        await alice.recv_message("bob", f"after the drop {n}")
    await alice.send_message("alice", "still talking")
    await bob.recv_message("alice", "still talking")


UNICODE_TEXTS = [
    "grinning 😀 astral",
    "family 👨‍👩‍👧‍👦 and rainbow flag 🏳️‍🌈 and 🇯🇵",
    'quotes " and \' and backslash \\ and \\n not a newline and \\u0000 not a NUL',
    "line one\nline two\r\nthird\ttabbed",
    "nul:\u0000:end",
    "RTL: مرحبا بالعالم / שלום עולם / \u202emixed\u202c",
    "combining e\u0301, BOM \ufeff, separators \u2028\u2029, max BMP \uffff",
    "中文 日本語 한국어 " + "𝕳𝖊𝖑𝖑𝖔",
]


async def test_unicode_round_trips_byte_exact_live_and_in_history(chatd):
    server = chatd()
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "alice", "bob", "bob")

    sent: list[str] = []
    # Each text goes once as raw UTF-8 and once with \uXXXX escapes (surrogate pairs
    # for astral characters); the server must decode both to the same string.
    for ensure_ascii in (False, True):
        for text in UNICODE_TEXTS:
            await alice.send_message("alice", text, ensure_ascii=ensure_ascii)
            received = await bob.recv_message("alice")
            assert received["text"] == text, (
                f"live text differs (ensure_ascii={ensure_ascii}):\n"
                f"sent     {text!r}\nreceived {received['text']!r}")
            sent.append(text)

    late = await ChatClient.open(server, "bob", "alice", "history reader")
    history = await late.recv_messages(len(sent))
    for expected, frame in zip(sent, history):
        assert frame["text"] == expected, (
            f"stored text differs:\nsent   {expected!r}\nstored {frame['text']!r}")
    assert [frame["seq"] for frame in history] == list(range(1, len(sent) + 1))


async def test_non_ascii_usernames(chatd):
    server = chatd()
    zoe, lei = "zoë", "李雷"
    first = await ChatClient.open(server, zoe, lei, "zoë")
    second = await ChatClient.open(server, lei, zoe, "李雷")
    await first.send_message(zoe, "ciao 😀")
    frame = await second.recv_message(zoe, "ciao 😀")
    assert frame["sender"] == zoe
    await second.send_message(lei, "你好")
    await first.recv_message(lei, "你好")


async def test_percent_encoding_is_decoded_once_and_plus_is_literal(chatd):
    server = chatd()
    # "al%69ce" is "alice"; %C3%AB and %c3%ab are both "ë".
    alice = await ChatClient.open_url(server.ws_raw("/ws/al%69ce/zo%C3%AB"), "alice (encoded)")
    zoe = await ChatClient.open_url(server.ws_raw("/ws/zo%c3%ab/alice"), "zoë")
    await alice.send_message("alice", "same chat?")
    await zoe.recv_message("alice", "same chat?")
    await zoe.send_message("zoë", "yes")
    await alice.recv_message("zoë", "yes")

    # In a path "+" is a literal plus, not a space.
    plus = await ChatClient.open_url(server.ws_raw("/ws/a+b/carol"), "a+b")
    carol = await ChatClient.open(server, "carol", "a+b", "carol")
    await plus.send_message("a b", "as a space")
    await plus.expect_error("sender_not_participant")
    await plus.send_message("a+b", "as a plus")
    await carol.recv_message("a+b", "as a plus")
