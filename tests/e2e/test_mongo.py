"""chatd with MONGO_URI against a real MongoDB-compatible server (FerretDB, or
MONGO_TEST_URI): the schema of SPEC §4, persistence, and several instances on one chat."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from bson import ObjectId

from chat_client import ChatClient, in_thread, seqs, texts
from ferretdb import mongo_client, readyz, unique_database, wait_readyz

FILLER_KIND = 6  # chat::EntryKind::filler: a reserved seq no message took


def start_chatd(chatd, ferretdb, database: str, *args: str):
    server = chatd(*args, env={"MONGO_URI": ferretdb.uri(database)})
    wait_readyz(server, 200)  # the store connects in the background
    return server


async def exchange(sender: ChatClient, receiver: ChatClient, who: str, text: str) -> dict:
    await sender.send_message(who, text)
    return await receiver.recv_message(who, text)


async def test_messages_are_stored_as_documents_per_spec(chatd, ferretdb):
    database = unique_database()
    server = start_chatd(chatd, ferretdb, database)
    assert readyz(server) == 200
    alice = await ChatClient.open(server, "alice", "bob", "alice")
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    first = await exchange(alice, bob, "alice", "hi bob")
    second = await exchange(bob, alice, "bob", "hi alice 😀")
    assert seqs([first, second]) == [1, 2]

    client = mongo_client(ferretdb)
    try:
        db = client[database]
        documents = list(db.messages.find().sort("seq", 1))
        assert [d["text"] for d in documents] == ["hi bob", "hi alice 😀"]
        stored = documents[0]
        assert stored["_id"] == ObjectId(first["id"]), "the message id is the document's _id"
        assert stored["chat"] == "5:alice:bob", "the chat key, not the old service's a_b"
        assert stored["seq"] == 1 and stored["sender"] == "alice"
        assert isinstance(stored["ts"], dt.datetime), "ts is a BSON date"
        assert stored["ts"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" == first["ts"]
        assert "client_id" not in stored, "no client id in v1: the field is left out"
        chat = db.chats.find_one({"_id": "5:alice:bob"})
        assert chat is not None, "one chats document per chat"
        assert chat["participants"] == ["alice", "bob"]
        assert chat["last_seq"] == 2
        assert isinstance(chat["last_activity"], dt.datetime)
        index_keys = {tuple(index["key"].items()) for index in db.messages.list_indexes()}
        assert (("chat", 1), ("seq", 1)) in index_keys
        chat_indexes = {tuple(index["key"].items()) for index in db.chats.list_indexes()}
        assert (("participants", 1), ("last_activity", -1)) in chat_indexes
    finally:
        client.close()


async def test_history_survives_a_chatd_restart(chatd, ferretdb):
    database = unique_database()
    first = start_chatd(chatd, ferretdb, database)
    alice = await ChatClient.open(first, "alice", "bob", "alice")
    bob = await ChatClient.open(first, "alice", "bob", "bob")
    live = [await exchange(alice, bob, "alice", f"before restart {n}") for n in range(1, 4)]

    first.send_sigterm()
    await alice.expect_close(1001)
    assert await in_thread(first.wait_exit) == 0

    second = start_chatd(chatd, ferretdb, database)
    reader = await ChatClient.open(second, "bob", "alice", "bob after restart")
    assert await reader.recv_messages(3) == live
    writer = await ChatClient.open(second, "alice", "bob", "alice after restart")
    after = await exchange(writer, reader, "alice", "after restart")
    assert after["seq"] == 4, "the sequence continues where it stopped"


@pytest.mark.e2e_timeout(60)
async def test_two_instances_writing_one_chat_keep_one_gap_free_order(chatd, ferretdb):
    database = unique_database()
    east = start_chatd(chatd, ferretdb, database, "--history-limit", "1000")
    west = start_chatd(chatd, ferretdb, database, "--history-limit", "1000")
    per_instance = 40

    # Every client connects before anything is sent; still, a receiver's history is
    # read after its handshake, and may already hold the other instance's first
    # messages (there is no Redis here: only its own instance's arrive live).
    clients = {}
    for name, server in (("east", east), ("west", west)):
        clients[name] = (await ChatClient.open(server, "alice", "bob", f"alice@{name}"),
                         await ChatClient.open(server, "alice", "bob", f"bob@{name}"))

    async def write_through(name: str) -> list[dict]:
        sender, receiver = clients[name]
        for n in range(per_instance):  # no waiting between sends: batches interleave
            await sender.send_message("alice", f"{name} {n}")
        # The receiver on the same instance sees each one once it is committed.
        mine = []
        while len(mine) < per_instance:
            frame = await receiver.recv_message(timeout=20)
            if frame["text"].startswith(name):
                mine.append(frame)
        return mine

    east_frames, west_frames = await asyncio.gather(write_through("east"),
                                                    write_through("west"))
    assert texts(east_frames) == [f"east {n}" for n in range(per_instance)]
    assert texts(west_frames) == [f"west {n}" for n in range(per_instance)]

    reader = await ChatClient.open(west, "bob", "alice", "bob reading history")
    history = await reader.recv_messages(2 * per_instance)
    assert seqs(history) == sorted(set(seqs(history))), "one order for the chat: increasing seqs"
    # The chat's entries are 1 … last_seq with no gap. A seq no message took (two
    # instances' reservations crossed: FerretDB's findAndModify is not atomic) holds an
    # invisible filler (docs/scaling.md "Seq allocation"), so a client may see seqs skip.
    client = mongo_client(ferretdb)
    try:
        db = client[database]
        stored = await in_thread(lambda: list(db.messages.find({"chat": "5:alice:bob"})))
        last_seq = (await in_thread(lambda: db.chats.find_one({"_id": "5:alice:bob"})))["last_seq"]
    finally:
        client.close()
    assert sorted(d["seq"] for d in stored) == list(range(1, last_seq + 1)), \
        "every seq of the chat once, no gap"
    visible = {d["seq"] for d in stored if d.get("kind", 0) != FILLER_KIND}
    assert visible == set(seqs(history)), "the entries that are not fillers are the messages"
    by_id = {frame["id"]: frame for frame in east_frames + west_frames}
    assert {frame["id"] for frame in history} == set(by_id), "every committed message is there"
    for frame in history:
        assert by_id[frame["id"]]["seq"] == frame["seq"], "a message keeps the seq it was sent with"
    # Each instance's own messages keep the order they were sent in.
    for name in ("east", "west"):
        mine = [frame["text"] for frame in history if frame["text"].startswith(name)]
        assert mine == [f"{name} {n}" for n in range(per_instance)]
