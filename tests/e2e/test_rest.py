"""The REST API under /api (docs/openapi.yaml): every answer is checked against the
OpenAPI document, so the document says exactly what the server does."""

from __future__ import annotations

import functools
import http.client
import re
import time
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from chat_client import ChatClient, in_thread
from chatd_process import REPO_ROOT
from tokens import SECRET, token_for
from v2_client import V2Client

SPEC = yaml.safe_load(Path(REPO_ROOT, "docs", "openapi.yaml").read_text())
MESSAGES = "/api/chats/{user1}/{user2}/messages"
CONVERSATIONS = "/api/users/{user}/conversations"
# Each documented path, as a pattern of request targets.
_PATHS = {MESSAGES: re.compile(r"^/api/chats/[^/?]+/[^/?]+/messages(\?|$)"),
          CONVERSATIONS: re.compile(r"^/api/users/[^/?]+/conversations(\?|$)")}


def response_schema(method: str, status: int, path: str = MESSAGES) -> dict[str, Any]:
    """The JSON schema the OpenAPI document gives for this answer of `path`."""
    responses = SPEC["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} documents no {status}"
    response = responses[str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def check_against_spec(method: str, status: int, body: Any, path: str = MESSAGES) -> None:
    schema = response_schema(method, status, path)
    resolver = jsonschema.RefResolver.from_schema(SPEC)
    jsonschema.Draft202012Validator(schema, resolver=resolver).validate(body)


def call(server, method: str, path: str, body: Any = None, *,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    """One request; the answer's status and JSON body, checked against the spec."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body))
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        assert response.getheader("Content-Type") == "application/json", response.getheaders()
    finally:
        connection.close()
    parsed = json.loads(data)
    for documented, pattern in _PATHS.items():
        if pattern.match(path) and method.lower() in SPEC["paths"][documented]:
            check_against_spec(method.lower(), response.status, parsed, documented)
    return response.status, parsed


async def api(server, method: str, path: str, body: Any = None, **kwargs: Any):
    return await in_thread(functools.partial(call, server, method, path, body, **kwargs))


def next_millisecond() -> None:
    """Returns once the wall clock has moved past the current millisecond."""
    now = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= now:
        pass


def messages_path(user1: str, user2: str, query: str = "") -> str:
    return f"/api/chats/{user1}/{user2}/messages" + (f"?{query}" if query else "")


# ---------------------------------------------------------------------- sending

async def test_a_posted_message_is_stored_acked_and_delivered_to_every_connection(chatd):
    server = chatd()
    bob_v1 = await ChatClient.open(server, "bob", "alice", "bob v1")
    bob_v2 = await V2Client.connect(server, "bob", "alice", "bob v2")
    status, ack = await api(server, "POST", messages_path("alice", "bob"),
                            {"client_id": "svc-1", "text": "from the billing service"})
    assert status == 201, ack
    assert ack["client_id"] == "svc-1" and ack["seq"] == 1 and ack["duplicate"] is False
    live = await bob_v1.recv_message()
    assert (live["sender"], live["text"], live["seq"]) == ("alice", "from the billing service", 1)
    frame = await bob_v2.recv_frame("message")
    assert (frame["id"], frame["seq"], frame["ts"]) == (ack["id"], 1, ack["ts"])
    status, page = await api(server, "GET", messages_path("bob", "alice"))
    assert status == 200
    assert [(m["sender"], m["text"], m["id"]) for m in page["messages"]] == [
        ("alice", "from the billing service", ack["id"])]
    assert page["has_more"] is False
    assert page["chat"] == bob_v2.hello["chat"]


async def test_a_retried_client_id_is_stored_once_with_the_first_ack(chatd):
    server = chatd()
    bob = await ChatClient.open(server, "bob", "alice", "bob")
    first_status, first = await api(server, "POST", messages_path("alice", "bob"),
                                    {"client_id": "svc-7", "text": "once"})
    again_status, again = await api(server, "POST", messages_path("alice", "bob"),
                                    {"client_id": "svc-7", "text": "once"})
    assert (first_status, again_status) == (201, 200)
    assert again["duplicate"] is True
    assert (again["id"], again["seq"], again["ts"]) == (first["id"], first["seq"], first["ts"])
    await api(server, "POST", messages_path("alice", "bob"), {"client_id": "svc-8", "text": "2"})
    assert [m["text"] for m in await bob.recv_messages(2)] == ["once", "2"], "delivered once"
    _, page = await api(server, "GET", messages_path("alice", "bob"))
    assert [m["text"] for m in page["messages"]] == ["once", "2"]


async def test_a_caller_posting_past_its_allowance_gets_429_and_nothing_is_stored(chatd):
    server = chatd("--messages-per-second", "1", "--message-burst", "3")
    statuses = []
    for n in range(5):
        status, body = await api(server, "POST", messages_path("alice", "bob"),
                                 {"client_id": f"burst-{n}", "text": f"burst {n}"})
        statuses.append(status)
        if status == 429:
            assert body["code"] == "rate_limited", body
    assert statuses == [201, 201, 201, 429, 429], "a burst of 3, then refused"
    # Another caller has its own allowance.
    status, _ = await api(server, "POST", messages_path("bob", "alice"),
                          {"client_id": "bob-1", "text": "bob is not held back"})
    assert status == 201
    _, page = await api(server, "GET", messages_path("alice", "bob"))
    assert [m["text"] for m in page["messages"]] == [
        "burst 0", "burst 1", "burst 2", "bob is not held back"], "nothing refused was stored"


# ---------------------------------------------------------------------- reading

async def test_pages_before_and_after(chatd):
    server = chatd()
    for i in range(1, 8):
        status, _ = await api(server, "POST", messages_path("alice", "bob"),
                              {"client_id": f"c{i}", "text": f"m{i}"})
        assert status == 201

    def seqs_of(page: dict) -> list[int]:
        return [m["seq"] for m in page["messages"]]

    _, newest = await api(server, "GET", messages_path("alice", "bob", "limit=3"))
    assert seqs_of(newest) == [5, 6, 7] and newest["has_more"] is True
    _, older = await api(server, "GET", messages_path("alice", "bob", "limit=3&before=5"))
    assert seqs_of(older) == [2, 3, 4] and older["has_more"] is True
    _, oldest = await api(server, "GET", messages_path("alice", "bob", "limit=3&before=2"))
    assert seqs_of(oldest) == [1] and oldest["has_more"] is False
    _, after = await api(server, "GET", messages_path("alice", "bob", "after=2&limit=2"))
    assert seqs_of(after) == [3, 4] and after["has_more"] is True
    _, tail = await api(server, "GET", messages_path("alice", "bob", "after=5"))
    assert seqs_of(tail) == [6, 7] and tail["has_more"] is False
    _, capped = await api(server, "GET", messages_path("alice", "bob", "limit=100000"))
    assert seqs_of(capped) == list(range(1, 8))
    _, empty = await api(server, "GET", messages_path("carol", "dave"))
    assert empty["messages"] == [] and empty["has_more"] is False


# ---------------------------------------------------------------------- errors

@pytest.mark.parametrize("body,code", [
    ("{", "invalid_json"),
    ("[1]", "invalid_frame"),
    ('{"text":"no id"}', "invalid_client_id"),
    ('{"client_id":"c","text":""}', "empty_text"),
    ('{"client_id":"c","text":5}', "invalid_text"),
    ('{"client_id":"c","text":"' + "x" * 101 + '"}', "text_too_long"),
])
async def test_a_bad_body_is_400_with_a_code_and_nothing_is_stored(chatd, body, code):
    server = chatd("--max-text-bytes", "100")
    status, error = await api(server, "POST", messages_path("alice", "bob"), raw=body.encode())
    assert (status, error["code"]) == (400, code), error
    _, page = await api(server, "GET", messages_path("alice", "bob"))
    assert page["messages"] == []


async def test_bad_queries_paths_methods_and_sizes(chatd):
    server = chatd("--max-http-body-bytes", "1000")
    status, error = await api(server, "GET", messages_path("alice", "bob", "before=x"))
    assert (status, error["code"]) == (400, "invalid_query")
    status, error = await api(server, "GET", messages_path("alice", "bob", "limit=-1"))
    assert (status, error["code"]) == (400, "invalid_query")
    status, error = await api(server, "GET", messages_path("alice", "%01"))
    assert (status, error["code"]) == (400, "invalid_username")
    status, error = await in_thread(call, server, "GET", "/api/chats/alice/messages")
    assert (status, error["code"]) == (404, "not_found")
    status, error = await in_thread(call, server, "DELETE", messages_path("alice", "bob"))
    assert (status, error["code"]) == (405, "method_not_allowed")
    big = json.dumps({"client_id": "c", "text": "y" * 2000}).encode()
    status, error = await api(server, "POST", messages_path("alice", "bob"), raw=big)
    assert (status, error["code"]) == (413, "body_too_large")


async def test_unknown_user_is_404_and_a_down_directory_503(chatd, user_search, closed_port_url):
    user_search.unknown = {"ghost"}
    server = chatd(user_search=user_search)
    status, error = await api(server, "POST", messages_path("alice", "ghost"),
                              {"client_id": "c", "text": "boo"})
    assert (status, error["code"]) == (404, "unknown_user") and "ghost" in error["message"]
    status, _ = await api(server, "POST", messages_path("alice", "bob"),
                          {"client_id": "c", "text": "hi"})
    assert status == 201
    down = chatd(user_search=closed_port_url)
    status, error = await api(down, "POST", messages_path("alice", "carol"),
                              {"client_id": "c", "text": "hi"})
    assert (status, error["code"]) == (503, "user_search_unavailable")


# ---------------------------------------------------------------------- identity

async def test_with_secret_key_the_token_subject_is_the_caller(chatd):
    server = chatd("--secret-key", SECRET)
    path = messages_path("alice", "bob")
    status, error = await api(server, "GET", path)
    assert (status, error["message"]) == (401, "unauthorized: missing")
    status, error = await api(server, "GET", path, headers={"Authorization": "Bearer junk"})
    assert (status, error["message"]) == (401, "unauthorized: malformed")
    status, error = await api(server, "GET", path, headers={
        "Authorization": f"Bearer {token_for('alice', exp_in=-3600)}"})
    assert (status, error["message"]) == (401, "unauthorized: expired")
    status, error = await api(server, "POST", path, {"client_id": "c", "text": "x"}, headers={
        "Authorization": f"Bearer {token_for('mallory')}"})
    assert (status, error["code"]) == (403, "forbidden")

    # bob's token on alice's path: bob is the sender, whatever the path's order.
    status, ack = await api(server, "POST", path, {"client_id": "c", "text": "from bob"},
                            headers={"Authorization": f"Bearer {token_for('bob')}"})
    assert status == 201, ack
    status, page = await api(server, "GET", messages_path("alice", "bob",
                                                          f"token={token_for('alice')}"))
    assert status == 200
    assert [(m["sender"], m["text"]) for m in page["messages"]] == [("bob", "from bob")]


async def test_conversations_newest_first_with_last_message_and_unread_count(chatd):
    server = chatd()
    for i in range(3):
        await api(server, "POST", messages_path("bob", "alice"), {"client_id": f"b{i}",
                                                                   "text": f"bob {i}"})
    await api(server, "POST", messages_path("alice", "bob"), {"client_id": "a0", "text": "mine"})
    next_millisecond()  # activity is kept in ms: carol's chat is the later one
    await api(server, "POST", messages_path("carol", "alice"), {"client_id": "c0", "text": "hey"})
    status, listing = await api(server, "GET", "/api/users/alice/conversations")
    assert status == 200
    got = [(c["peer"], c["last_message"]["text"], c["read_seq"], c["unread"])
           for c in listing["conversations"]]
    assert got == [("carol", "hey", 0, 1), ("bob", "mine", 0, 3)], got
    assert listing["user"] == "alice"

    # alice reads bob's messages up to seq 2 on a v2 connection: one of bob's stays unread.
    alice = await V2Client.connect(server, "alice", "bob", "alice")
    bob = await V2Client.connect(server, "bob", "alice", "bob")
    await alice.send_frame("read", seq=2)
    # The peer hears of a receipt once it is stored.
    assert await bob.recv_frame("read") == {"type": "read", "user": "alice", "seq": 2}
    _, listing = await api(server, "GET", "/api/users/alice/conversations?limit=1")
    assert [(c["peer"], c["read_seq"], c["unread"]) for c in listing["conversations"]] == [
        ("carol", 0, 1)], "limit 1: the newest only"
    _, listing = await api(server, "GET", "/api/users/alice/conversations")
    bob_chat = next(c for c in listing["conversations"] if c["peer"] == "bob")
    assert (bob_chat["read_seq"], bob_chat["unread"]) == (2, 1)
    _, nobody = await api(server, "GET", "/api/users/dave/conversations")
    assert nobody == {"user": "dave", "conversations": []}
    status, error = await api(server, "GET", "/api/users/alice/conversations?limit=x")
    assert (status, error["code"]) == (400, "invalid_query")


async def test_conversations_with_secret_key_are_the_subjects_own(chatd):
    server = chatd("--secret-key", SECRET)
    status, _ = await api(server, "GET", "/api/users/alice/conversations")
    assert status == 401
    status, error = await api(server, "GET", "/api/users/alice/conversations",
                              headers={"Authorization": f"Bearer {token_for('bob')}"})
    assert (status, error["code"]) == (403, "forbidden")
    status, _ = await api(server, "GET", "/api/users/alice/conversations",
                          headers={"Authorization": f"Bearer {token_for('alice')}"})
    assert status == 200


def test_the_spec_is_openapi_3_1_and_names_every_error_code_shape():
    assert SPEC["openapi"].startswith("3.1")
    error = SPEC["components"]["schemas"]["Error"]
    jsonschema.Draft202012Validator.check_schema(error)
    with pytest.raises(jsonschema.ValidationError):
        check_against_spec("post", 201, {"type": "ack"})  # the check can fail
