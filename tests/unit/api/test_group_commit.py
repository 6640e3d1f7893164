"""Group commit: asks that arrive while a batch runs go together into the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from jitgate.api.group_commit import GroupCommit


class Recorder:
    """A batch runner that records its batches and can be held until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, asks: Sequence[int]) -> list[int | Exception]:
        self.started.set()
        self.release.wait(5)
        self.batches.append(list(asks))
        return [ValueError(f"odd {a}") if a % 2 else a * 10 for a in asks]


async def running(runner: Recorder) -> None:
    """Until the runner holds its first batch on the worker thread."""
    await asyncio.to_thread(runner.started.wait, 5)


async def queued() -> None:
    """Until the asks just created have reached ``submit`` (each needs a turn of the loop)."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool  # type: ignore[misc]
    pool.shutdown(wait=True)


def test_a_lone_ask_is_a_batch_of_one_and_gets_its_own_answer(executor: ThreadPoolExecutor) -> None:
    runner = Recorder()
    group = GroupCommit(runner, executor)

    assert asyncio.run(group.submit(4)) == 40
    assert runner.batches == [[4]]


def test_asks_arriving_while_a_batch_runs_form_the_next_batch(executor: ThreadPoolExecutor) -> None:
    runner = Recorder()
    group = GroupCommit(runner, executor)

    async def scenario() -> list[int | BaseException]:
        runner.release.clear()
        first = asyncio.ensure_future(group.submit(2))
        await running(runner)  # the first batch is running and held
        rest = [asyncio.ensure_future(group.submit(n)) for n in (4, 6, 8)]
        await queued()
        runner.release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    assert asyncio.run(scenario()) == [20, 40, 60, 80]
    assert runner.batches == [[2], [4, 6, 8]]


def test_one_refused_ask_does_not_touch_the_others_in_its_batch(executor: ThreadPoolExecutor) -> None:
    runner = Recorder()
    group = GroupCommit(runner, executor)

    async def scenario() -> list[int | BaseException]:
        runner.release.clear()
        blocker = asyncio.ensure_future(group.submit(0))
        await running(runner)
        asks = [asyncio.ensure_future(group.submit(n)) for n in (1, 2, 3)]
        await queued()
        runner.release.set()
        return await asyncio.gather(blocker, *asks, return_exceptions=True)

    zero, one, two, three = asyncio.run(scenario())
    assert (zero, two) == (0, 20)
    assert isinstance(one, ValueError)
    assert str(one) == "odd 1"
    assert isinstance(three, ValueError)
    assert str(three) == "odd 3"


def test_a_failing_batch_fails_every_ask_in_it_and_the_next_batch_still_runs(
    executor: ThreadPoolExecutor,
) -> None:
    calls: list[list[int]] = []

    def runner(asks: Sequence[int]) -> list[int | Exception]:
        calls.append(list(asks))
        if len(calls) == 1:
            raise RuntimeError("database gone")
        return list(asks)

    group = GroupCommit(runner, executor)

    async def scenario() -> list[int | BaseException]:
        first = await asyncio.gather(group.submit(1), return_exceptions=True)
        second = await asyncio.gather(group.submit(2), return_exceptions=True)
        return [*first, *second]

    failed, answered = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError)
    assert answered == 2


def test_a_caller_that_goes_away_leaves_the_batch_and_the_others_alone(
    executor: ThreadPoolExecutor,
) -> None:
    runner = Recorder()
    group = GroupCommit(runner, executor)

    async def scenario() -> int:
        runner.release.clear()
        gone = asyncio.ensure_future(group.submit(2))
        stays = asyncio.ensure_future(group.submit(4))
        await running(runner)
        gone.cancel()
        runner.release.set()
        answer = await stays
        assert await group.submit(6) == 60  # the group is not stuck
        return answer

    assert asyncio.run(scenario()) == 40


def test_batches_never_exceed_the_limit(executor: ThreadPoolExecutor) -> None:
    runner = Recorder()
    group = GroupCommit(runner, executor, max_batch=3)

    async def scenario() -> list[int]:
        runner.release.clear()
        asks = [asyncio.ensure_future(group.submit(n * 2)) for n in range(8)]
        await running(runner)
        runner.release.set()
        return list(await asyncio.gather(*asks))

    assert asyncio.run(scenario()) == [n * 20 for n in range(8)]
    assert all(len(batch) <= 3 for batch in runner.batches)
    assert [a for batch in runner.batches for a in batch] == [n * 2 for n in range(8)]
