"""Chats are keyed unambiguously (SPEC §1, defect 1 of the old service)."""

from __future__ import annotations

import asyncio

import pytest

from chat_client import ChatClient, texts


@pytest.mark.parametrize("separator", ["_", "|", ":", "-", " "])
async def test_pairs_that_join_to_the_same_string_are_different_chats(chatd, separator):
    # The old service keyed chats by sorted names joined with "_": (a_b, c) and (a, b_c)
    # collided. Other separators are checked too, in case chatd joined with one of them.
    left = (f"a{separator}b", "c")
    right = ("a", f"b{separator}c")
    server = chatd()
    left_first = await ChatClient.open(server, *left, f"{left} first")
    left_second = await ChatClient.open(server, left[1], left[0], f"{left} second")
    right_first = await ChatClient.open(server, *right, f"{right} first")
    right_second = await ChatClient.open(server, right[1], right[0], f"{right} second")

    await left_first.send_message(left[0], "only for the left chat")
    frame = await left_second.recv_message(left[0], "only for the left chat")
    assert frame["seq"] == 1

    await right_first.send_message(right[0], "only for the right chat")
    # Positive markers: each side's next frame is its own chat's message.
    frame = await right_second.recv_message(right[0], "only for the right chat")
    assert frame["seq"] == 1, "the right chat must have its own sequence"
    await asyncio.gather(left_first.expect_silence(), right_first.expect_silence())

    async def check_history(users: tuple[str, str], expected: str) -> None:
        reader = await ChatClient.open(server, *users, f"history of {users}")
        history = await reader.recv_messages(1)
        assert texts(history) == [expected]
        await reader.expect_silence()

    await asyncio.gather(check_history(left, "only for the left chat"),
                         check_history(right, "only for the right chat"))
