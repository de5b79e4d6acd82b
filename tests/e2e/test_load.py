"""Many chats at once: ordering, exactly-once delivery and no cross-talk."""

from __future__ import annotations

import asyncio

import pytest

from chat_client import ChatClient

PAIRS = 100
MESSAGES_PER_SIDE = 20


@pytest.mark.e2e_timeout(45)
@pytest.mark.parametrize("verified", [False, True], ids=["open", "user-search"])
async def test_hundred_concurrent_pairs(chatd, user_search, verified):
    # With user-search, 200 first-time lookups also run at once (more than chatd's
    # default number of lookups in flight, so some wait their turn).
    # The generous lookup timeout keeps a busy CI machine (the stub is Python) from
    # turning this ordering test into a timeout test.
    server = (chatd("--user-search-timeout-ms", "10000", user_search=user_search)
              if verified else chatd())
    handshakes = asyncio.Semaphore(50)  # stay well inside the listen backlog

    async def open_side(pair: int, me: str, peer: str) -> ChatClient:
        async with handshakes:
            return await ChatClient.open(server, me, peer, f"pair{pair}:{me}", timeout=15)

    async def run_pair(pair: int) -> list[int]:
        names = (f"p{pair}a", f"p{pair}b")
        sides = [await open_side(pair, names[0], names[1]),
                 await open_side(pair, names[1], names[0])]

        async def send_all(side: int) -> None:
            for n in range(MESSAGES_PER_SIDE):
                await sides[side].send_message(names[side], f"{names[side]} #{n}")

        async def receive_all(side: int) -> list[dict]:
            return await sides[side].recv_messages(MESSAGES_PER_SIDE, timeout=20)

        _, _, at_a, at_b = await asyncio.gather(send_all(0), send_all(1),
                                                receive_all(0), receive_all(1))
        for receiver, frames, sender in ((names[0], at_a, names[1]), (names[1], at_b, names[0])):
            expected = [f"{sender} #{n}" for n in range(MESSAGES_PER_SIDE)]
            assert [(f["sender"], f["text"]) for f in frames] == \
                [(sender, text) for text in expected], (
                    f"{receiver} must get exactly {sender}'s messages in send order")
            seq_list = [f["seq"] for f in frames]
            assert seq_list == sorted(set(seq_list)), (
                f"{receiver}: seq not strictly increasing: {seq_list}")
        all_seqs = sorted(f["seq"] for f in at_a + at_b)
        assert all_seqs == list(range(1, 2 * MESSAGES_PER_SIDE + 1)), (
            f"pair {pair}: the chat's sequence must be 1..{2 * MESSAGES_PER_SIDE} "
            f"without gaps or duplicates, got {all_seqs}")
        await asyncio.gather(*(side.expect_silence() for side in sides))
        return all_seqs

    results = await asyncio.gather(*(run_pair(pair) for pair in range(PAIRS)))
    assert len(results) == PAIRS
