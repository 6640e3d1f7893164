"""What the database providers share: the admin DSN, secret-free error text, ephemeral login names,
and a small pool of admin connections.

The policy names only the variable (``admin_dsn_env``); its value is read at the moment of use so
that a rotated DSN takes effect without a restart. Drivers can echo connection strings in their
errors, so whatever a driver says goes through ``scrub`` before it reaches a ``ProviderError``.
Login names have one strict shape, so a revocation can never be pointed at a login jitgate did not
create.

Opening an admin connection (TCP, TLS, SCRAM) costs more than the statements that create or drop a
login, so the providers keep a few open per target in an ``AdminPool``. A connect that reaches no
server (refused, timed out, no such host, closed before the server said anything) raises
``TargetUnreachable``, on which the revocation worker skips the target's other revocations of the
batch; a server that answers with an error (a wrong password, a missing database) and any failure
after connecting raise a plain ``ProviderError``.
"""

from __future__ import annotations

import re
import secrets as random
import selectors
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote, quote_plus

from jitgate.errors import ProviderError
from jitgate.policy.model import Target

MAX_REASON = 300
REDACTED = "***"
LOGIN = re.compile(r"^jit_[a-z0-9]{1,16}_[0-9a-f]{12}$")

POOL_SIZE = 4
POOL_WAIT_SECONDS = 30.0
POOL_IDLE_SECONDS = 60.0
POOL_MAX_AGE_SECONDS = 600.0

_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def admin_dsn(environ: Mapping[str, str], target: Target) -> str:
    """Return the admin DSN of ``target``; the error names the variable, never its value."""
    variable = target.admin_dsn_env
    if not variable:
        raise ProviderError(f"{target.kind} target {target.name} has no admin_dsn_env")
    value = environ.get(variable)
    if value is None:
        raise ProviderError(f"{target.kind} target {target.name}: environment variable {variable} is not set")
    if not value.strip():
        raise ProviderError(f"{target.kind} target {target.name}: environment variable {variable} is empty")
    return value.strip()


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Reduce driver text to one line with every given secret and anything password-shaped masked."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    forms = {
        form for secret in secrets if secret for form in (secret, quote(secret, safe=""), quote_plus(secret))
    }
    for form in sorted(forms, key=len, reverse=True):
        line = line.replace(form, REDACTED)
    line = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", line)
    line = _KEYWORD_PASSWORD.sub(rf"\1={REDACTED}", line)
    if len(line) > MAX_REASON:
        line = line[: MAX_REASON - 3] + "..."
    return line or "no detail"


def new_login(user: str) -> str:
    """A fresh login name ``jit_<user slug>_<48 random bits>``: lowercase, at most 33 bytes, no quoting."""
    slug = re.sub(r"[^a-z0-9]", "", user.lower())[:16] or "user"
    return f"jit_{slug}_{random.token_hex(6)}"


def checked_login(handle: str) -> str:
    """Return ``handle`` if it has the shape of a login jitgate creates; refuse anything else."""
    if not LOGIN.fullmatch(handle):
        raise ProviderError(f"refusing {handle!r}: not a login name jitgate creates")
    return handle


def pool_size_problem(target: Target) -> str | None:
    """Check the ``admin_connections`` option shared by the database providers (1 to 32)."""
    size = target.options.get("admin_connections", POOL_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 32:
        return f"{target.kind} target {target.name}: admin_connections must be 1 to 32"
    return None


def socket_readable(fd: int) -> bool:
    """True when an idle connection's socket has something to read: the server closed it or sent an
    error (a terminated session, a restart), so it must not be used again."""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            return bool(selector.select(timeout=0))
    except (OSError, ValueError):
        return True


C = TypeVar("C")


@dataclass(slots=True)
class _Entry(Generic[C]):
    conn: C
    dsn: str = field(repr=False)
    born: float
    idle_since: float = 0.0


class AdminPool(Generic[C]):
    """A few open admin connections per key (a target and database), shared by every thread.

    ``connection(...)`` lends one connection to one caller at a time and takes it back only when
    the block ended without an exception and ``reusable`` finds it in a clean state (no open
    transaction, not closed); anything else is closed, so no connection is ever kept in a broken
    state. An idle connection is checked with ``alive`` before it is lent out; when that fails, the
    other idle ones of the key are closed too (the server most likely went away) and a new one is
    opened. Connections idle for ``idle_seconds`` or older than ``max_age_seconds`` are closed
    instead of reused, and a changed DSN (a rotated admin password) retires the old ones.

    At most ``size`` connections per key are open; a caller finding them all busy waits up to
    ``wait_seconds`` for one, then gets a ``ProviderError``. Opening a connection happens outside
    the pool's lock, so a slow or unreachable server blocks only its own callers.
    """

    def __init__(
        self,
        *,
        alive: Callable[[C], bool],
        reusable: Callable[[C], bool],
        close: Callable[[C], None],
        wait_seconds: float = POOL_WAIT_SECONDS,
        idle_seconds: float = POOL_IDLE_SECONDS,
        max_age_seconds: float = POOL_MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._alive = alive
        self._reusable = reusable
        self._close = close
        self._wait = wait_seconds
        self._idle_seconds = idle_seconds
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._idle: dict[Hashable, list[_Entry[C]]] = {}
        self._open: dict[Hashable, int] = {}
        self._closed = False

    @contextmanager
    def connection(
        self, key: Hashable, dsn: str, connect: Callable[[], C], *, size: int, label: str
    ) -> Iterator[C]:
        """Lend a connection for ``key``; ``connect`` opens a new one (raising ``ProviderError``)."""
        entry = self._checkout(key, dsn, connect, size, label)
        try:
            yield entry.conn
        except BaseException:
            self._discard(key, entry)
            raise
        self._checkin(key, entry)

    def open_count(self, key: Hashable) -> int:
        """Connections of ``key`` open now, lent out or idle."""
        with self._cond:
            return self._open.get(key, 0)

    def idle_count(self, key: Hashable) -> int:
        with self._cond:
            return len(self._idle.get(key, ()))

    def close(self) -> None:
        """Close every idle connection; those lent out are closed when they come back."""
        with self._cond:
            self._closed = True
            doomed = [entry for entries in self._idle.values() for entry in entries]
            for key, entries in self._idle.items():
                self._open[key] -= len(entries)
            self._idle.clear()
            self._cond.notify_all()
        self._close_all(doomed)

    def _checkout(
        self, key: Hashable, dsn: str, connect: Callable[[], C], size: int, label: str
    ) -> _Entry[C]:
        entry, doomed = self._take_or_reserve(key, dsn, size, self._monotonic() + self._wait, label)
        self._close_all(doomed)
        if entry is None:
            return self._open_new(key, dsn, connect)
        if self._checked_alive(entry.conn):
            return entry
        # The server closed this one, so the key's other idle connections are as stale; the new
        # connection takes this one's slot.
        with self._cond:
            stale = self._idle.pop(key, [])
            self._open[key] -= len(stale)
            self._cond.notify_all()
        self._close_all([entry, *stale])
        return self._open_new(key, dsn, connect)

    def _take_or_reserve(
        self, key: Hashable, dsn: str, size: int, deadline: float, label: str
    ) -> tuple[_Entry[C] | None, list[_Entry[C]]]:
        """Under the lock: an idle connection, or a reserved slot for a new one (``None``); and the
        idle connections found too old, for the caller to close outside the lock."""
        doomed: list[_Entry[C]] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise ProviderError(f"{label}: the provider has been closed")
                    now = self._monotonic()
                    idle: list[_Entry[C]] = []
                    for entry in self._idle.get(key, []):
                        fresh = entry.dsn == dsn and not self._expired(entry, now)
                        (idle if fresh else doomed).append(entry)
                    self._open[key] = self._open.get(key, 0) - (len(self._idle.get(key, [])) - len(idle))
                    self._idle[key] = idle
                    if idle:
                        return idle.pop(), doomed
                    if self._open[key] < size:
                        self._open[key] += 1
                        return None, doomed
                    if now >= deadline:
                        raise ProviderError(
                            f"{label}: all {size} admin connections stayed busy for {self._wait:g}s"
                        )
                    self._cond.wait(deadline - now)
        except ProviderError:
            self._close_all(doomed)
            raise

    def _open_new(self, key: Hashable, dsn: str, connect: Callable[[], C]) -> _Entry[C]:
        try:
            conn = connect()
        except BaseException:
            with self._cond:
                self._open[key] -= 1
                self._cond.notify_all()
            raise
        return _Entry(conn=conn, dsn=dsn, born=self._monotonic())

    def _checkin(self, key: Hashable, entry: _Entry[C]) -> None:
        now = self._monotonic()
        if not self._checked_reusable(entry.conn) or now - entry.born >= self._max_age:
            self._discard(key, entry)
            return
        with self._cond:
            if not self._closed:
                entry.idle_since = now
                self._idle.setdefault(key, []).append(entry)
                self._cond.notify_all()
                return
        self._discard(key, entry)

    def _discard(self, key: Hashable, entry: _Entry[C]) -> None:
        self._close_all([entry])
        with self._cond:
            self._open[key] -= 1
            self._cond.notify_all()

    def _expired(self, entry: _Entry[C], now: float) -> bool:
        return now - entry.idle_since >= self._idle_seconds or now - entry.born >= self._max_age

    def _checked_alive(self, conn: C) -> bool:
        try:
            return self._alive(conn)
        except Exception:
            return False

    def _checked_reusable(self, conn: C) -> bool:
        try:
            return self._reusable(conn)
        except Exception:
            return False

    def _close_all(self, entries: Iterable[_Entry[C]]) -> None:
        for entry in entries:
            with suppress(Exception):
                self._close(entry.conn)


class PooledProvider(Generic[C]):
    """Base of the database providers: their environment and an ``AdminPool`` of admin connections,
    closed when the provider goes away (or at interpreter exit) or on ``close()``."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        alive: Callable[[C], bool],
        reusable: Callable[[C], bool],
        close: Callable[[C], None],
    ) -> None:
        self._environ = environ
        self._hooks = (alive, reusable, close)
        self._pool, self._finalizer = self._new_pool()

    def _new_pool(self) -> tuple[AdminPool[C], weakref.finalize[[], PooledProvider[C]]]:
        alive, reusable, close = self._hooks
        pool: AdminPool[C] = AdminPool(alive=alive, reusable=reusable, close=close)
        return pool, weakref.finalize(self, pool.close)

    def close(self) -> None:
        """Close the pooled admin connections (the provider opens new ones if used again)."""
        self._finalizer()
        self._pool, self._finalizer = self._new_pool()
