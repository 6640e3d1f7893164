"""The shared pieces of the database providers: admin DSN lookup, scrubbing, login names and the
admin connection pool (no server: the pool is driven with stand-in connections and a fake clock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest

from jitgate.errors import ProviderError
from jitgate.policy.model import Target
from jitgate.providers.dsn import AdminPool, admin_dsn, checked_login, new_login, scrub

TARGET = Target(name="orders-db", kind="postgres", admin_dsn_env="ORDERS_DSN")


def test_admin_dsn_is_read_at_use_and_errors_name_only_the_variable() -> None:
    assert admin_dsn({"ORDERS_DSN": " postgresql://a:b@h/d "}, TARGET) == "postgresql://a:b@h/d"
    with pytest.raises(
        ProviderError, match=r"^postgres target orders-db: environment variable ORDERS_DSN is not set$"
    ):
        admin_dsn({}, TARGET)
    with pytest.raises(ProviderError, match="ORDERS_DSN is empty"):
        admin_dsn({"ORDERS_DSN": ""}, TARGET)


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        (
            'missing "=" after "postgress://u:pw-1@h/d" in connection info string\n',
            (),
            'missing "=" after "postgress://u:***@h/d" in connection info string',
        ),
        ("bad option near password=hunter2 sslmode=x", (), "bad option near password=*** sslmode=x"),
        ("bad option near PASSWORD = 'hunter 2' x", (), "bad option near PASSWORD=*** x"),
        ("login as s3cr%2Ft failed", ("s3cr/t",), "login as *** failed"),
        ("first line\n\tsecond line with s3cret", ("s3cret",), "first line"),
        ("", (), "no detail"),
    ],
)
def test_scrub_leaves_one_line_without_secrets(text: str, secrets: tuple[str, ...], expected: str) -> None:
    assert scrub(text, secrets) == expected


def test_scrub_bounds_the_length() -> None:
    assert len(scrub("x" * 5000)) == 300


def test_login_names_are_fresh_safe_and_checked() -> None:
    name = new_login("Bob.Smith@Example.COM")
    assert name.startswith("jit_bobsmithexamplec_")
    assert checked_login(name) == name
    assert new_login("!!!").startswith("jit_user_")
    for bad in ("postgres", "jit_bob_XYZ", f"{name}'", "jit__0123456789ab"):
        with pytest.raises(ProviderError, match="not a login name jitgate creates"):
            checked_login(bad)


class FakeConn:
    """Stands in for a driver connection: the pool only ever asks the callables below about it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.alive = True
        self.clean = True
        self.closed = False
        self.users = 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def close(conn: FakeConn) -> None:
    conn.closed = True


def make_pool(
    clock: Callable[[], float] | None = None, **kw: float
) -> tuple[AdminPool[FakeConn], list[FakeConn]]:
    opened: list[FakeConn] = []
    pool: AdminPool[FakeConn] = AdminPool(
        alive=lambda c: c.alive,
        reusable=lambda c: c.clean,
        close=close,
        monotonic=clock or Clock(),
        **kw,
    )
    return pool, opened


def lend(
    pool: AdminPool[FakeConn], opened: list[FakeConn], *, key: str = "db", dsn: str = "dsn-1", size: int = 2
) -> AbstractContextManager[FakeConn]:
    def connect() -> FakeConn:
        opened.append(FakeConn(len(opened)))
        return opened[-1]

    return pool.connection(key, dsn, connect, size=size, label="postgres target db")


def test_a_connection_is_reused_while_it_stays_clean() -> None:
    pool, opened = make_pool()
    for _ in range(3):
        with lend(pool, opened) as conn:
            assert conn is opened[0]
    assert len(opened) == 1
    assert (pool.open_count("db"), pool.idle_count("db")) == (1, 1)
    with lend(pool, opened, key="other") as other:
        assert other is opened[1]


def test_a_connection_that_failed_or_is_left_unclean_is_closed_never_reused() -> None:
    pool, opened = make_pool()
    with pytest.raises(ProviderError, match="boom"), lend(pool, opened):
        raise ProviderError("boom")
    assert opened[0].closed
    with lend(pool, opened) as conn:
        conn.clean = False  # e.g. a transaction left open
    assert opened[1].closed
    with lend(pool, opened) as conn:
        assert conn is opened[2]
    assert (pool.open_count("db"), pool.idle_count("db")) == (1, 1)


def test_a_dead_idle_connection_is_replaced_and_takes_its_idle_siblings_with_it() -> None:
    pool, opened = make_pool()
    with lend(pool, opened), lend(pool, opened):
        pass
    assert pool.idle_count("db") == 2
    for conn in opened:
        conn.alive = False  # the server restarted
    with lend(pool, opened) as conn:
        assert conn is opened[2]
    assert opened[0].closed
    assert opened[1].closed
    assert (pool.open_count("db"), pool.idle_count("db")) == (1, 1)


def test_idle_old_and_superseded_connections_are_closed_instead_of_reused() -> None:
    clock = Clock()
    pool, opened = make_pool(clock, idle_seconds=60, max_age_seconds=600)
    with lend(pool, opened):
        pass
    clock.now += 61
    with lend(pool, opened) as conn:
        assert conn is opened[1]
    assert opened[0].closed
    for _ in range(12):
        clock.now += 50
        with lend(pool, opened):
            pass
    assert opened[1].closed, "recycled once older than max_age"
    with lend(pool, opened, dsn="dsn-2") as conn:
        assert conn.n == len(opened) - 1
    assert all(c.closed for c in opened[:-1])
    assert pool.open_count("db") == 1


def test_a_failed_connect_gives_its_slot_back() -> None:
    pool, _ = make_pool()

    def refuse() -> FakeConn:
        raise ProviderError("postgres target db: cannot connect: refused")

    for _ in range(3):
        with (
            pytest.raises(ProviderError, match="cannot connect"),
            pool.connection("db", "dsn-1", refuse, size=1, label="x"),
        ):
            pass
    assert pool.open_count("db") == 0


def test_at_most_size_connections_and_a_busy_pool_is_a_clear_error() -> None:
    pool, opened = make_pool(time.monotonic, wait_seconds=0.05)
    busy = r"^postgres target db: all 1 admin connections stayed busy"
    with lend(pool, opened, size=1), pytest.raises(ProviderError, match=busy), lend(pool, opened, size=1):
        pass
    assert len(opened) == 1


def test_many_threads_share_a_few_connections_one_user_at_a_time() -> None:
    pool, opened = make_pool()
    guard = threading.Lock()
    peak = 0

    def work(_: int) -> None:
        nonlocal peak
        with lend(pool, opened, size=3) as conn:
            with guard:
                conn.users += 1
                assert conn.users == 1
                peak = max(peak, pool.open_count("db"))
            with guard:
                conn.users -= 1

    with ThreadPoolExecutor(max_workers=8) as workers:
        list(workers.map(work, range(400)))
    assert 1 <= len(opened) <= 3
    assert peak <= 3
    assert not any(conn.closed for conn in opened)


def test_close_closes_idle_connections_and_those_still_lent_when_they_return() -> None:
    pool, opened = make_pool()
    with lend(pool, opened, size=3), lend(pool, opened, size=3) as held:
        with lend(pool, opened, size=3):
            pass
        pool.close()
        assert opened[2].closed
        assert not held.closed
    assert all(conn.closed for conn in opened)
    assert pool.open_count("db") == 0
    with pytest.raises(ProviderError, match="closed"), lend(pool, opened):
        pass
