"""Group commit: asks that arrive while a batch is being written go together in the next one.

Requests wait on the event loop; one batch at a time runs on a worker thread (so a database lock
wait never stalls the loop). When it finishes, everything that queued up meanwhile becomes the
next batch. A lone request is a batch of one and waits for nothing; under load the batches grow
by themselves, and the cost shared per batch (a commit, an audit head update and its signature)
is paid once for all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

Ask = TypeVar("Ask")
Answer = TypeVar("Answer")

MAX_BATCH = 256
"""Enough to cover every waiting connection of a busy worker; bounds one transaction's size."""


class GroupCommit(Generic[Ask, Answer]):
    """Runs ``run_batch`` over the asks waiting at each moment, one batch at a time.

    ``run_batch(asks)`` returns one answer per ask, in order: a value, or an exception that is
    raised to that ask's caller alone. An exception *from* ``run_batch`` fails the whole batch, so
    ``run_batch`` keeps whatever one ask brings to that ask (``workflow/minting.mint_many`` does,
    unexpected errors included) and raises only for what fails them all, such as the database.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Ask]], Sequence[Answer | Exception]],
        executor: Executor | None,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self._max_batch = max_batch
        self._waiting: list[tuple[Ask, asyncio.Future[Answer]]] = []
        self._busy = False

    async def submit(self, ask: Ask) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((ask, future))
        if not self._busy:
            self._next_batch()
        return await future

    def _next_batch(self) -> None:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        if not batch:
            self._busy = False
            return
        self._busy = True
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._executor, self._run_batch, [ask for ask, _ in batch])
        running.add_done_callback(lambda done: self._finish(batch, done))

    def _finish(
        self,
        batch: list[tuple[Ask, asyncio.Future[Answer]]],
        done: asyncio.Future[Sequence[Answer | Exception]],
    ) -> None:
        try:
            error = RuntimeError("the batch was cancelled") if done.cancelled() else done.exception()
            answers = [] if error is not None else list(done.result())
            if error is None and len(answers) != len(batch):
                error = RuntimeError(f"a batch of {len(batch)} asks got {len(answers)} answers")
            for index, (_, future) in enumerate(batch):
                if future.done():  # the caller went away; what was done for it stays done
                    continue
                if error is not None:
                    future.set_exception(error)
                elif isinstance(answers[index], Exception):
                    future.set_exception(answers[index])  # type: ignore[arg-type]
                else:
                    future.set_result(answers[index])  # type: ignore[arg-type]
        finally:
            self._next_batch()
