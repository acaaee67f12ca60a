"""Concurrent ingests share a detector shard's calls (serving/shardcalls.py)."""

from __future__ import annotations

import asyncio

import pytest

from opsradar.serving.shardcalls import ShardCalls


def test_calls_queued_while_one_is_in_flight_go_out_together_each_with_its_own_result() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(parts: list[int]) -> list[int]:
        sent.append(list(parts))
        if len(sent) == 1:
            await release.wait()  # the first call is in flight while the others arrive
        return [p * 10 for p in parts]

    async def main() -> list[int]:
        shard: ShardCalls[int, int] = ShardCalls(send, max_parts=3)
        tasks = [asyncio.create_task(shard.call(0))]
        await asyncio.sleep(0.01)  # 0 is in flight
        tasks += [asyncio.create_task(shard.call(i)) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        release.set()
        out = await asyncio.gather(*tasks)
        assert shard.calls == 3
        assert await shard.call(9) == 90  # nothing in flight: out at once, alone
        return out

    assert asyncio.run(main()) == [0, 10, 20, 30, 40, 50]
    assert sent == [[0], [1, 2, 3], [4, 5], [9]]  # in arrival order, at most max_parts a call


def test_a_failed_call_fails_its_ingests_only() -> None:
    async def send(parts: list[str]) -> list[str]:
        await asyncio.sleep(0)
        if "bad" in parts:
            raise RuntimeError("shard unavailable")
        return parts

    async def main() -> list[object]:
        shard: ShardCalls[str, str] = ShardCalls(send)
        first = asyncio.create_task(shard.call("ok"))
        await asyncio.sleep(0)
        group = [asyncio.create_task(shard.call(p)) for p in ("bad", "with-bad")]
        done = await asyncio.gather(first, *group, return_exceptions=True)
        return [*done, await shard.call("after")]

    first, bad, with_bad, after = asyncio.run(main())
    assert first == "ok"
    assert isinstance(bad, RuntimeError)
    assert isinstance(with_bad, RuntimeError)  # it shared the failed call
    assert after == "after"


def test_an_answer_with_the_wrong_number_of_parts_is_an_error() -> None:
    async def send(parts: list[int]) -> list[int]:
        return []

    async def main() -> None:
        await ShardCalls(send).call(1)

    with pytest.raises(RuntimeError, match="answered 0 parts for 1"):
        asyncio.run(main())
