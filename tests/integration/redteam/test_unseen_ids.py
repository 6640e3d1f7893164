"""An id the caller may not see must cost the broker exactly what a missing id costs.

The answer bodies are already the same 404. But a request or grant that exists used to be loaded
whole (its reviews, its grant, its pending revocations) before the visibility check, and a missing
one stopped after the first query: a fraction of a millisecond, measurable from outside over a few
hundred tries, that tells an outsider holding a leaked id whether it is real. The statements run
against the real database are what the timing follows, so they are what is compared here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from jitgate.errors import NotFound
from jitgate.workflow import grants, requests
from jitgate.workflow.context import WorkflowContext
from support import ALICE, MALLORY


@contextmanager
def statements(ctx: WorkflowContext) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(ctx.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(ctx.db.engine, "before_cursor_execute", record)


def cost(ctx: WorkflowContext, look: Callable[[], object]) -> list[str]:
    with statements(ctx) as seen, pytest.raises(NotFound) as refused:
        look()
    return [*seen, refused.value.message.split()[0]]


def test_an_unseen_request_or_grant_runs_the_same_queries_as_a_missing_one(ctx: WorkflowContext) -> None:
    pending = requests.submit(ctx, ALICE, role="prod-shell", reason="INC-1 disk", duration="30m")
    active = requests.submit(ctx, ALICE, role="stage-shell", duration="10m")
    grant_id = active["grant"]["id"]

    unseen = cost(ctx, lambda: requests.visible_request_view(ctx, MALLORY, pending["id"]))
    missing = cost(ctx, lambda: requests.visible_request_view(ctx, MALLORY, "r-000000000000"))
    assert unseen == missing

    unseen = cost(ctx, lambda: grants.visible_grant_view(ctx, MALLORY, grant_id))
    missing = cost(ctx, lambda: grants.visible_grant_view(ctx, MALLORY, "g-000000000000"))
    assert unseen == missing
