"""`chatd import-legacy`: the old service's `chats` collection into the new schema,
into MongoDB and into SQLite, twice (the second run finds everything in place)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chat_client import ChatClient, seqs, texts
from chatd_process import chatd_binary, clean_environment
from ferretdb import mongo_client, unique_database, wait_readyz

# Documents as the old service wrote them: {chat_id: sorted names joined by "_", messages}.
OLD_CHATS = [
    {"chat_id": "alice_bob", "messages": [
        {"sender": "alice", "text": "hi bob"},
        {"sender": "bob", "text": "hi alice"},
        {"sender": "alice", "text": "how are you?"}]},
    # Ambiguous: (a, b_c) or (a_b, c). The senders say (a_b, c).
    {"chat_id": "a_b_c", "messages": [
        {"sender": "a_b", "text": "from a_b"},
        {"sender": "c", "text": "from c"}]},
    # Ambiguous the other way: (p, q_r).
    {"chat_id": "p_q_r", "messages": [
        {"sender": "q_r", "text": "from q_r"},
        {"sender": "p", "text": "from p"}]},
    # No split holds the sender: skipped, with the reason.
    {"chat_id": "m_n_o", "messages": [{"sender": "zed", "text": "who am I"}]},
    # One good message among broken ones.
    {"chat_id": "carol_dave", "messages": [
        {"sender": "carol", "text": ""},
        {"sender": "mallory", "text": "not a user of this chat"},
        {"text": "no sender"},
        {"sender": "dave", "text": "the good one"}]},
    {"messages": [{"sender": "x", "text": "no chat_id"}]},
]


def seed_old_service(ferretdb) -> str:
    database = unique_database("CatalogServiceDB")
    client = mongo_client(ferretdb)
    try:
        client[database].chats.insert_many([dict(document) for document in OLD_CHATS])
    finally:
        client.close()
    return ferretdb.uri(database)


def run_import(tmp_path: Path, from_uri: str, *target: str) -> dict[str, str]:
    """Runs the sub-command; returns the summary as {key: value}."""
    binary = chatd_binary()
    workdir = tmp_path / "import-cwd"
    workdir.mkdir(exist_ok=True)
    done = subprocess.run([str(binary), "import-legacy", "--from-uri", from_uri, *target],
                          cwd=workdir, env=clean_environment(binary), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, \
        f"import-legacy exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    summary = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.rpartition(": ")
        if sep:
            summary[key] = value
    assert "chats read" in summary, f"no summary printed:\n{done.stdout}\n{done.stderr}"
    return summary


def check_first_run(summary: dict[str, str]) -> None:
    assert summary["chats read"] == "6"
    assert summary["chats imported"] == "4"
    assert summary["messages imported"] == "8"
    assert summary["messages already present"] == "0"
    assert summary["messages failed"] == "0"
    assert summary["skipped chat: no chat_id string"] == "1"
    assert summary["skipped chat: ambiguous chat id, and no split of it has every sender as "
                   "a user"] == "1"
    assert summary["skipped message: missing or empty text"] == "1"
    assert summary["skipped message: missing or invalid sender"] == "1"
    assert summary["skipped message: sender is not one of the chat's two users"] == "1"


def check_second_run(summary: dict[str, str]) -> None:
    assert summary["messages imported"] == "0", "a second run stores nothing twice"
    assert summary["messages already present"] == "8"
    assert summary["chats imported"] == "4"


async def check_histories(server) -> None:
    expectations = {
        ("alice", "bob"): ["hi bob", "hi alice", "how are you?"],
        ("a_b", "c"): ["from a_b", "from c"],
        ("p", "q_r"): ["from q_r", "from p"],
        ("carol", "dave"): ["the good one"],
    }
    for (first, second), expected in expectations.items():
        reader = await ChatClient.open(server, second, first, f"{second} reading")
        history = await reader.recv_messages(len(expected))
        assert texts(history) == expected, "the old order is kept"
        assert seqs(history) == list(range(1, len(expected) + 1))
        await reader.expect_silence()
    # The other split of an ambiguous id got nothing.
    reader = await ChatClient.open(server, "a", "b_c", "a with b_c")
    await reader.expect_silence()


@pytest.mark.e2e_timeout(90)
async def test_import_into_mongo_twice(chatd, ferretdb, tmp_path):
    from_uri = seed_old_service(ferretdb)
    target = ferretdb.uri(unique_database())
    check_first_run(run_import(tmp_path, from_uri, "--mongo-uri", target))
    check_second_run(run_import(tmp_path, from_uri, "--mongo-uri", target))

    server = chatd(env={"MONGO_URI": target})
    wait_readyz(server, 200)
    await check_histories(server)


@pytest.mark.e2e_timeout(90)
async def test_import_into_sqlite_twice(chatd, ferretdb, tmp_path):
    from_uri = seed_old_service(ferretdb)
    sqlite_path = tmp_path / "imported" / "chat.db"
    check_first_run(run_import(tmp_path, from_uri, "--sqlite-path", str(sqlite_path)))
    check_second_run(run_import(tmp_path, from_uri, "--sqlite-path", str(sqlite_path)))

    server = chatd(sqlite_path=sqlite_path)
    await check_histories(server)
