"""Verification of both users against the user-search service (SPEC §1)."""

from __future__ import annotations

import asyncio

import pytest

from chat_client import ChatClient, in_thread, open_expect_close
from server_metrics import poll, scrape


async def assert_chat_works(server, user1: str, user2: str, label: str = "") -> None:
    """Both users can connect and exchange a message: both were found."""
    first = await ChatClient.open(server, user1, user2, f"{label}{user1}")
    second = await ChatClient.open(server, user2, user1, f"{label}{user2}")
    await first.send_message(user1, f"hello from {user1}")
    await second.recv_message(user1, f"hello from {user1}")
    await second.send_message(user2, f"hello from {user2}")
    await first.recv_message(user2, f"hello from {user2}")


async def test_known_users_are_looked_up_and_accepted(chatd, user_search):
    server = chatd(user_search=user_search)
    await assert_chat_works(server, "alice", "bob")
    assert user_search.request_count("alice") >= 1
    assert user_search.request_count("bob") >= 1


async def test_names_needing_url_and_xml_escaping_are_accepted(chatd, user_search):
    server = chatd(user_search=user_search)
    tricky = "o'brien & <co> \"quoted\" +plus ?q=1#frag 100%"
    await assert_chat_works(server, tricky, "zoë")
    # The stub decoded the query string back to exactly the name: chatd URL-encoded it.
    assert user_search.request_count(tricky) >= 1, (
        f"stub never saw a request for {tricky!r}; it saw: {user_search.log}")
    assert user_search.request_count("zoë") >= 1


@pytest.mark.parametrize("position", ["second", "first"])
async def test_unknown_user_is_closed_with_4404_naming_the_user(chatd, user_search, position):
    user_search.unknown = {"ghost"}
    server = chatd(user_search=user_search)
    users = ("alice", "ghost") if position == "second" else ("ghost", "alice")
    reason = await open_expect_close(server.ws_url(*users), 4404, f"/ws/{users[0]}/{users[1]}")
    assert "ghost" in reason, f"close reason must name the unknown user, got {reason!r}"


async def test_legacy_not_found_answer_is_closed_with_4404(chatd, user_search):
    user_search.legacy = True
    user_search.unknown = {"phantom"}
    server = chatd(user_search=user_search)
    reason = await open_expect_close(server.ws_url("alice", "phantom"), 4404, "/ws/alice/phantom")
    assert "phantom" in reason, f"close reason must name the unknown user, got {reason!r}"
    # Known users still work in legacy mode.
    await assert_chat_works(server, "alice", "bob")


async def test_user_search_down_closes_with_1013(chatd, closed_port_url):
    server = chatd(user_search=closed_port_url)
    await open_expect_close(server.ws_url("alice", "bob"), 1013, "/ws/alice/bob (service down)")


@pytest.mark.parametrize("variant", ["truncated", "mismatched"])
async def test_malformed_user_search_answer_closes_with_1013(chatd, user_search, variant):
    user_search.malformed = variant
    server = chatd(user_search=user_search)
    await open_expect_close(server.ws_url("alice", "bob"), 1013, f"/ws/alice/bob ({variant})")
    # "Unavailable" is not remembered as an answer: once the service is healthy again,
    # the same users get in.
    user_search.malformed = None
    await assert_chat_works(server, "alice", "bob", "after recovery: ")


async def test_user_search_timeout_closes_with_1013(chatd, user_search):
    user_search.delays = {"sleepy": 3.0}
    server = chatd("--user-search-timeout-ms", "300", user_search=user_search)
    await open_expect_close(server.ws_url("alice", "sleepy"), 1013, "/ws/alice/sleepy", timeout=2.5)


async def test_slow_lookup_does_not_stall_other_chats(chatd, user_search):
    user_search.delays = {"slowpoke": 1.5}
    server = chatd("--user-search-timeout-ms", "5000", user_search=user_search)

    slow_connect = asyncio.create_task(
        ChatClient.open(server, "slowpoke", "xavier", "slowpoke", timeout=8))
    arrived = await in_thread(user_search.wait_for_request, "slowpoke", 1, 5.0)
    assert arrived, "chatd never asked user-search about slowpoke"

    # While the lookup of slowpoke is in flight, another chat connects and talks.
    await assert_chat_works(server, "fast1", "fast2")
    assert user_search.answered_count("slowpoke") == 0, (
        "the unrelated chat only got through after the slow lookup finished: "
        "the slow call stalled other chats")

    # The slow connection does complete afterwards.
    answered = await in_thread(user_search.wait_for_answer, "slowpoke", 1, 5.0)
    assert answered, "stub never answered slowpoke"
    slowpoke = await asyncio.wait_for(slow_connect, 8)
    xavier = await ChatClient.open(server, "xavier", "slowpoke", "xavier")
    await xavier.send_message("xavier", "sorry for the wait")
    await slowpoke.recv_message("xavier", "sorry for the wait")


async def test_lookups_waiting_for_the_service_are_bounded_and_counted(chatd, user_search):
    # One connection to the service: hold0's lookup holds it, ten more wait
    # (10 x USER_SEARCH_MAX_IN_FLIGHT), the twelfth is refused as unavailable.
    server = chatd("--user-search-max-in-flight", "1", "--user-search-timeout-ms", "20000",
                   user_search=user_search)
    await assert_chat_works(server, "alice", "bob")  # alice is cached from here on
    user_search.delays = {"hold0": 2.0}

    def open_held(i: int) -> asyncio.Task:
        return asyncio.create_task(ChatClient.open(server, f"hold{i}", "alice", f"hold{i}"))

    holding = [open_held(0)]
    assert await in_thread(user_search.wait_for_request, "hold0", 1, 5.0), "hold0 never asked"
    holding += [open_held(i) for i in range(1, 11)]
    await poll(lambda: scrape(server), lambda m: m.value("chatd_user_lookups_waiting") == 10,
               "chatd_user_lookups_waiting counts the ten lookups behind the one in flight")
    assert user_search.answered_count("hold0") == 0, "the held lookup ended before the check"
    await open_expect_close(server.ws_url("hold11", "alice"), 1013, "a lookup past the bound")

    # The held lookup ends and the ten waiting ones run in turn: all get in.
    await poll(lambda: scrape(server), lambda m: m.value("chatd_user_lookups_waiting") == 0,
               "the waiting lookups ran once the service answered")
    clients = await asyncio.gather(*holding)
    alice = await ChatClient.open(server, "alice", "hold10", "alice")
    await alice.send_message("alice", "you waited and got in")
    await clients[10].recv_message("alice", "you waited and got in")


async def test_lookups_are_cached_and_single_flight(chatd, user_search):
    # The delay keeps the first lookup in flight while the other four connect.
    user_search.delays = {"newbie": 0.5}
    server = chatd(user_search=user_search)
    assert user_search.request_count("newbie") == 0

    newbies = await asyncio.gather(*(
        ChatClient.open(server, "newbie", f"peer{i}", f"newbie#{i}") for i in range(5)))

    async def confirm_verified(index: int, newbie: ChatClient) -> None:
        peer = await ChatClient.open(server, f"peer{index}", "newbie", f"peer{index}")
        await peer.send_message(f"peer{index}", "welcome")
        await newbie.recv_message(f"peer{index}", "welcome")

    await asyncio.gather(*(confirm_verified(i, client) for i, client in enumerate(newbies)))
    assert user_search.request_count("newbie") == 1, (
        f"5 simultaneous connections for one new user caused "
        f"{user_search.request_count('newbie')} lookups; expected exactly 1")

    again = await ChatClient.open(server, "newbie", "peer5", "newbie again")
    await confirm_verified(5, again)
    assert user_search.request_count("newbie") == 1, (
        "a connect shortly after a successful lookup asked user-search again (no cache)")


async def test_service_closing_idle_keepalive_connections_is_not_an_outage(chatd, user_search):
    # Real HTTP servers close idle keep-alive connections. A pooled connection that the
    # service has closed must be replaced, not reported as "service unavailable" (1013).
    user_search.drop_keepalive = True
    server = chatd(user_search=user_search)
    for n in range(4):
        await assert_chat_works(server, f"left{n}", f"right{n}", f"round {n}: ")
