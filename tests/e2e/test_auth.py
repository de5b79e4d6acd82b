"""JWT authentication with SECRET_KEY (README "Tokens"; close codes 4401 and 4403).

The tokens are made in tokens.py with hmac/hashlib/base64 rather than a JWT library, so
that hostile ones (alg none, HS512, tampered payloads, wrong claim types) can be crafted
byte for byte. Every refused connection is opened on a chat that already has history:
the handshake must succeed (HTTP 101) and the close must be the first thing the client
receives (open_expect_close fails on any frame before it).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from chat_client import ChatClient, in_thread, open_expect_close, seqs, texts
from tokens import OMIT as _OMIT
from tokens import OTHER_SECRET, SECRET, b64url, claims_for, make_jwt, tampered, token_for
from tokens import json_bytes as _json

HISTORY_TEXT = "said before the newcomer connected"


# ---------------------------------------------------------------------- tokens

def percent_encode_all(text: str) -> str:
    """Every byte as %XX: a server that does not decode the query sees no JWT at all."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


# ---------------------------------------------------------------------- carriers

# How a client presents its token (README "Tokens").
CARRIERS = ["query", "query among other parameters", "percent-encoded query",
            "authorization header", "bearer subprotocol", "bare JWT subprotocol"]


def carried(server, user1: str, user2: str, token: str | None,
            how: str = "query") -> tuple[str, dict[str, Any]]:
    """URL and websockets.connect arguments presenting `token` the way `how` says."""
    url = server.ws_url(user1, user2)
    if token is None:
        return url, {}
    if how == "query":
        return f"{url}?token={token}", {}
    if how == "query among other parameters":
        return f"{url}?client=e2e&token={token}&v=1", {}
    if how == "percent-encoded query":
        return f"{url}?token={percent_encode_all(token)}", {}
    if how == "authorization header":
        return url, {"extra_headers": {"Authorization": f"Bearer {token}"}}
    if how == "bearer subprotocol":
        return url, {"subprotocols": [f"bearer.{token}"]}
    if how == "bare JWT subprotocol":
        return url, {"subprotocols": [token]}
    raise ValueError(how)


async def open_with_token(server, user1: str, user2: str, token: str | None,
                          how: str = "query", label: str | None = None) -> ChatClient:
    url, kwargs = carried(server, user1, user2, token, how)
    return await ChatClient.open_url(url, label or f"/ws/{user1}/{user2} ({how})", **kwargs)


async def expect_refused(server, user1: str, user2: str, token: str | None, code: int,
                         how: str = "query") -> str:
    """Handshake accepted, then closed with `code` before any frame; returns the reason."""
    url, kwargs = carried(server, user1, user2, token, how)
    return await open_expect_close(url, code, f"/ws/{user1}/{user2} ({how})", **kwargs)


# ---------------------------------------------------------------------- servers

def auth_server(chatd, *args: str, **kwargs: Any):
    return chatd("--secret-key", SECRET, *args, **kwargs)


async def seed_history(server) -> tuple[ChatClient, ChatClient]:
    """alice and bob, connected with valid query tokens, after alice said HISTORY_TEXT
    (seq 1) and bob received it, so it is stored."""
    alice = await open_with_token(server, "alice", "bob", token_for("alice"), label="alice")
    bob = await open_with_token(server, "bob", "alice", token_for("bob"), label="bob")
    await alice.send_message("alice", HISTORY_TEXT)
    await bob.recv_message("alice", HISTORY_TEXT)
    return alice, bob


def assert_no_subprotocol_selected(client: ChatClient, token: str) -> None:
    headers = client.ws.response_headers
    assert client.ws.subprotocol is None, (
        f"{client.label}: chatd selected subprotocol {client.ws.subprotocol!r}")
    assert "Sec-WebSocket-Protocol" not in headers, (
        f"{client.label}: handshake response has Sec-WebSocket-Protocol: "
        f"{headers.get_all('Sec-WebSocket-Protocol')!r}")
    signature = token.rsplit(".", 1)[-1]
    assert signature not in str(headers), (
        f"{client.label}: the token appears in the handshake response:\n{headers}")


async def assert_session_works(newcomer: ChatClient, me: str, alice: ChatClient,
                               bob: ChatClient) -> None:
    """`newcomer` (authenticated as `me`) joined the chat seeded by seed_history: it gets
    the history, then chats live with alice's and bob's connections (no echo to itself,
    delivery to every other connection)."""
    history = await newcomer.recv_message("alice", HISTORY_TEXT)
    assert history["seq"] == 1

    await newcomer.send_message(me, f"{me} on the new connection")
    for other in (alice, bob):
        frame = await other.recv_message(me, f"{me} on the new connection")
        assert frame["seq"] == 2, f"{other.label}: {frame!r}"

    await bob.send_message("bob", "reply from bob")
    # The newcomer's next frame is bob's reply: its own message was not echoed to it.
    frame = await newcomer.recv_message("bob", "reply from bob")
    assert frame["seq"] == 3
    await alice.recv_message("bob", "reply from bob")


# ---------------------------------------------------------------------- refused tokens

def _no_token() -> str | None:
    return None


BAD_TOKENS: dict[str, tuple[Callable[[], str | None], str]] = {
    "no token": (_no_token, "missing"),
    "empty token parameter": (lambda: "", "missing"),
    "garbage string": (lambda: "this-is-not-a-jwt", "malformed"),
    "three garbage parts": (lambda: "abc.def.ghi", "malformed"),
    "header is not JSON": (
        lambda: f"{b64url(b'not json')}.{b64url(_json(claims_for()))}.{b64url(b'x' * 32)}",
        "malformed"),
    "signed with another key": (
        lambda: make_jwt(claims_for("alice"), key=OTHER_SECRET), "bad_signature"),
    "payload changed after signing": (
        lambda: tampered(token_for("mallory"), sub="alice"), "bad_signature"),
    "signature cut off": (
        lambda: token_for("alice").rsplit(".", 1)[0] + ".", "bad_signature"),
    "expired an hour ago": (lambda: token_for("alice", exp_in=-3600), "expired"),
    "not valid for another hour": (
        lambda: token_for("alice", nbf_in=3600, exp_in=7200), "not_yet_valid"),
    "alg none, empty signature": (
        lambda: make_jwt(claims_for("alice"), alg="none", sign_with=None), "wrong_algorithm"),
    "alg none, HS256 signature": (
        lambda: make_jwt(claims_for("alice"), alg="none"), "wrong_algorithm"),
    "HS512 with the secret": (
        lambda: make_jwt(claims_for("alice"), alg="HS512", sign_with="HS512"),
        "wrong_algorithm"),
    "alg hs256 in lower case": (
        lambda: make_jwt(claims_for("alice"), alg="hs256"), "wrong_algorithm"),
    "no exp": (lambda: token_for("alice", exp_in=_OMIT), "malformed"),
    "exp is a string": (lambda: token_for("alice", exp_in="9999999999"), "malformed"),
    "no sub": (lambda: make_jwt(claims_for(_OMIT)), "no_subject"),
    "empty sub": (lambda: token_for(""), "no_subject"),
    "sub is a number": (lambda: make_jwt(claims_for(42)), "no_subject"),
}


@pytest.mark.parametrize("make_token,code", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_token_closes_4401_with_the_reason_before_any_history(chatd, make_token,
                                                                        code):
    server = auth_server(chatd)
    _, bob = await seed_history(server)
    reason = await expect_refused(server, "alice", "bob", make_token(), 4401)
    assert reason == f"unauthorized: {code}"
    # Nothing reached the chat either: bob's next frame is a later message of alice's.
    alice = await open_with_token(server, "alice", "bob", token_for("alice"), label="alice 2")
    await alice.recv_message("alice", HISTORY_TEXT)
    await alice.send_message("alice", "after the refusal")
    assert (await bob.recv_message("alice", "after the refusal"))["seq"] == 2


@pytest.mark.parametrize("how", CARRIERS)
async def test_every_carrier_is_verified(chatd, how):
    """A token is checked whichever way it comes: one signed with another key is
    refused as bad_signature (not accepted, not reported missing)."""
    server = auth_server(chatd)
    await seed_history(server)
    forged = make_jwt(claims_for("alice"), key=OTHER_SECRET)
    reason = await expect_refused(server, "alice", "bob", forged, 4401, how)
    assert reason == "unauthorized: bad_signature"


@pytest.mark.parametrize("sub", ["mallory", "bobby", "alic"])
async def test_subject_outside_the_chat_closes_4403_before_any_history(chatd, sub):
    server = auth_server(chatd)
    await seed_history(server)
    reason = await expect_refused(server, "alice", "bob", token_for(sub), 4403)
    assert reason.startswith("forbidden"), reason


async def test_authorization_header_comes_before_the_subprotocol(chatd):
    """An expired token in the Authorization header is refused even though the
    subprotocol list carries a valid one: the first carrier found wins."""
    server = auth_server(chatd)
    await seed_history(server)
    url = server.ws_url("alice", "bob")
    reason = await open_expect_close(
        url, 4401, "expired header + valid subprotocol",
        extra_headers={"Authorization": f"Bearer {token_for('alice', exp_in=-3600)}"},
        subprotocols=[f"bearer.{token_for('alice')}"])
    assert reason == "unauthorized: expired"


async def test_query_token_comes_before_the_header(chatd):
    server = auth_server(chatd)
    alice, bob = await seed_history(server)
    url = server.ws_url("alice", "bob")
    # A bad query token is not rescued by a valid header ...
    reason = await open_expect_close(
        f"{url}?token=garbage", 4401, "garbage query + valid header",
        extra_headers={"Authorization": f"Bearer {token_for('alice')}"})
    assert reason == "unauthorized: malformed"
    # ... and a valid query token wins over a bad header.
    newcomer = await ChatClient.open_url(
        f"{url}?token={token_for('alice')}", "valid query + bad header",
        extra_headers={"Authorization": f"Bearer {token_for('alice', exp_in=-3600)}"})
    await assert_session_works(newcomer, "alice", alice, bob)


# ---------------------------------------------------------------------- accepted tokens

@pytest.mark.parametrize("how", CARRIERS)
async def test_valid_token_opens_the_session(chatd, how):
    server = auth_server(chatd)
    alice, bob = await seed_history(server)
    token = token_for("alice")
    newcomer = await open_with_token(server, "alice", "bob", token, how)
    assert_no_subprotocol_selected(newcomer, token)
    await assert_session_works(newcomer, "alice", alice, bob)


async def test_subject_may_be_the_second_user_of_the_path(chatd):
    server = auth_server(chatd)
    alice, bob = await seed_history(server)
    newcomer = await open_with_token(server, "alice", "bob", token_for("bob"),
                                     label="/ws/alice/bob as bob")
    await assert_session_works(newcomer, "bob", alice, bob)


async def test_secret_key_and_leeway_from_the_environment(chatd):
    server = chatd(env={"SECRET_KEY": SECRET, "TOKEN_LEEWAY_SECONDS": "0"})
    alice, bob = await seed_history(server)
    reason = await expect_refused(server, "alice", "bob", None, 4401)
    assert reason == "unauthorized: missing"
    reason = await expect_refused(server, "alice", "bob", token_for("alice", exp_in=-10), 4401)
    assert reason == "unauthorized: expired", "TOKEN_LEEWAY_SECONDS=0 allows no skew"
    newcomer = await open_with_token(server, "alice", "bob", token_for("alice"))
    await assert_session_works(newcomer, "alice", alice, bob)


# ---------------------------------------------------------------------- leeway

async def test_exp_just_past_is_accepted_within_the_default_leeway(chatd):
    server = auth_server(chatd)  # TOKEN_LEEWAY_SECONDS defaults to 30
    alice, bob = await seed_history(server)
    newcomer = await open_with_token(server, "alice", "bob", token_for("alice", exp_in=-10))
    await assert_session_works(newcomer, "alice", alice, bob)


async def test_nbf_just_ahead_is_accepted_within_the_default_leeway(chatd):
    server = auth_server(chatd)
    alice, bob = await seed_history(server)
    newcomer = await open_with_token(server, "alice", "bob", token_for("alice", nbf_in=10))
    await assert_session_works(newcomer, "alice", alice, bob)


async def test_leeway_flag_widens_and_narrows_the_window(chatd):
    wide = auth_server(chatd, "--token-leeway-seconds", "120")
    alice, bob = await seed_history(wide)
    newcomer = await open_with_token(wide, "alice", "bob", token_for("alice", exp_in=-90))
    await assert_session_works(newcomer, "alice", alice, bob)
    reason = await expect_refused(wide, "alice", "bob", token_for("alice", exp_in=-200), 4401)
    assert reason == "unauthorized: expired"
    reason = await expect_refused(wide, "alice", "bob", token_for("alice", nbf_in=200), 4401)
    assert reason == "unauthorized: not_yet_valid"

    strict = auth_server(chatd, "--token-leeway-seconds", "0")
    await seed_history(strict)
    reason = await expect_refused(strict, "alice", "bob", token_for("alice", exp_in=-10), 4401)
    assert reason == "unauthorized: expired"
    reason = await expect_refused(strict, "alice", "bob", token_for("alice", nbf_in=10), 4401)
    assert reason == "unauthorized: not_yet_valid"


async def test_leeway_over_300_seconds_stops_chatd_at_start(chatd):
    server = auth_server(chatd, "--token-leeway-seconds", "301", wait=False)
    code = await in_thread(server.wait_exit)
    assert code is not None and code != 0, (
        f"expected chatd to refuse --token-leeway-seconds 301 and exit non-zero, got "
        f"{'no exit (killed)' if code is None else code}\n--- log ---\n{server.log_text(20)}")
    assert "leeway" in server.log_text().lower(), server.log_text(20)


# ---------------------------------------------------------------------- sender

async def test_sending_as_the_peer_gets_sender_not_authenticated(chatd):
    server = auth_server(chatd)
    alice = await open_with_token(server, "alice", "bob", token_for("alice"), label="alice")
    bob = await open_with_token(server, "bob", "alice", token_for("bob"), label="bob")

    await alice.send_message("bob", "spoofed: alice pretending to be bob")
    await alice.expect_error("sender_not_authenticated")
    # The connection stays open; bob's next frame is alice's genuine message, seq 1.
    await alice.send_message("alice", "genuine from alice")
    frame = await bob.recv_message("alice", "genuine from alice")
    assert frame["seq"] == 1, "the spoofed frame must not consume a sequence number"
    await alice.expect_silence()

    # A fresh connection's history lacks the spoofed text; then only live frames.
    reader = await open_with_token(server, "bob", "alice", token_for("bob"), label="reader")
    history = await reader.recv_messages(1)
    await alice.send_message("alice", "marker")
    marker = await reader.recv_message("alice", "marker")
    assert texts(history) == ["genuine from alice"]
    assert seqs(history) + [marker["seq"]] == [1, 2]


async def test_tokens_do_not_appear_in_the_log(chatd):
    server = auth_server(chatd, "--log-level", "debug")
    await seed_history(server)
    accepted = token_for("alice")
    refused = token_for("alice", exp_in=-3600)
    for how in CARRIERS:
        await open_with_token(server, "alice", "bob", accepted, how)
        await expect_refused(server, "alice", "bob", refused, 4401, how)
    log = server.log_text()
    for token in (accepted, refused):
        signature = token.rsplit(".", 1)[1]
        assert signature not in log, "a token's signature appears in chatd's log"
    assert SECRET not in log, "SECRET_KEY appears in chatd's log"


async def test_an_open_session_is_closed_4401_when_its_token_expires(chatd):
    # A token's lifetime bounds the session's: with no leeway, a token valid for 2 more
    # seconds opens the chat, which is then closed as expired.
    server = auth_server(chatd, "--token-leeway-seconds", "0")
    lasting = await open_with_token(server, "bob", "alice", token_for("bob", exp_in=3600))
    short = await open_with_token(server, "alice", "bob", token_for("alice", exp_in=2))
    await short.send_message("alice", "before the expiry")
    assert (await lasting.recv_message())["text"] == "before the expiry"
    reason = await short.expect_close(4401, timeout=15)
    assert reason == "unauthorized: expired"
    # The other session, with its own token, goes on.
    again = await open_with_token(server, "alice", "bob", token_for("alice", exp_in=3600))
    assert (await again.recv_message())["text"] == "before the expiry"
    await again.send_message("alice", "with a new token")
    assert (await lasting.recv_message())["text"] == "with a new token"
