"""Connections to a directory (kind ``ldap``): settings, the bind secret, TLS, timeouts, a pool, and
errors that say in one line what failed, never with the secret.

The bind password is never in the policy: ``bind_password_env`` names an environment variable,
``bind_password_file`` a file (its trailing newline dropped), read each time a connection is
opened, so a rotated secret takes effect without a restart. An empty password is refused: LDAP
treats a simple bind without one as an anonymous bind that "succeeds".

Transport: ``ldaps://`` (TLS from the first byte) or ``ldap://`` with ``start_tls: true``; the
server's certificate is always verified (``OPT_X_TLS_REQUIRE_CERT`` demand, TLS 1.2 at least,
host name checked by the client library) against ``tls_ca_file`` when given, else the system's
trust. A plain ``ldap://`` without StartTLS would send the bind password in clear, so it is
allowed only to a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``); anything else is a
policy problem (``option_problems``), reported by ``jitgate policy check`` and refused at connect.

Every connection has a network timeout and an operation timeout (``timeout``, default 10 s), so
a directory that accepts connections and then says nothing cannot hang the revocation worker.
Refused, timed out or dropped → ``TargetUnreachable``; a wrong bind password → a ``ProviderError``
naming the bind DN and where the password came from; a certificate that does not verify → a
``ProviderError`` saying so (python-ldap reports it as "can't contact", so whether the port
answers at all is checked to tell the two apart).

Opening a connection (TCP, TLS, bind) costs more than the few operations of an elevation, so a
``Directory`` keeps a few bound connections per target in the broker's ``AdminPool``; each is lent
to one thread at a time (python-ldap connections are not shared across threads here). A pooled
connection the server dropped (a restart) is noticed before use or, failing that, by the
operation, which then runs once more on a new connection: every operation is idempotent.

Target options:
    timeout      seconds for connecting and for each operation (default 10, 1 to 300).
    connections  bound connections kept open per target (default 4, 1 to 32).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import weakref
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import Target
from jitgate.providers.dsn import AdminPool, scrub, socket_readable

OPTIONS = frozenset({"timeout", "connections"})
DEFAULT_TIMEOUT = 10
DEFAULT_CONNECTIONS = 4
UNREACHABLE = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR)
# What python-ldap puts in "info" when the library has nothing to say.
_NO_INFO = {"", "(unknown error code)"}

Connection = Any
"""A bound ``ldap.ldapobject.LDAPObject`` (python-ldap ships no type information)."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """How to reach and bind to one directory target; ``password`` never leaves this object."""

    url: str
    host: str
    port: int
    start_tls: bool
    bind_dn: str
    password: str = field(repr=False)
    password_source: str
    ca_file: str | None
    timeout: int
    connections: int

    @property
    def tls(self) -> bool:
        return self.start_tls or self.url.lower().startswith("ldaps://")

    @property
    def fingerprint(self) -> str:
        """Changes with anything that makes a pooled connection stale (a rotated password)."""
        text = "\x1f".join(
            (
                self.url,
                self.bind_dn,
                self.password,
                str(self.start_tls),
                self.ca_file or "",
                str(self.timeout),
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _int_option(target: Target, name: str, default: int, low: int, high: int) -> str | None:
    value = target.options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        return f"ldap target {target.name}: {name} must be {low} to {high}"
    return None


def option_problems(target: Target) -> list[str]:
    """Every problem of the target's URL, TLS settings and options; needs neither secret nor server."""
    where = f"ldap target {target.name}"
    problems: list[str] = []
    unknown = sorted(set(target.options) - OPTIONS)
    if unknown:
        problems.append(f"{where}: unknown option(s) {', '.join(unknown)}")
    for problem in (
        _int_option(target, "timeout", DEFAULT_TIMEOUT, 1, 300),
        _int_option(target, "connections", DEFAULT_CONNECTIONS, 1, 32),
    ):
        if problem:
            problems.append(problem)
    url = target.url or ""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return [*problems, f"{where}: url {url!r} is not an ldap:// or ldaps:// URL"]
    if parts.scheme.lower() not in {"ldap", "ldaps"} or not host:
        return [*problems, f"{where}: url {url!r} is not an ldap:// or ldaps:// URL with a host"]
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or port == 0:
        problems.append(f"{where}: url must be scheme://host[:port] only (no DN, query or user)")
    ldaps = parts.scheme.lower() == "ldaps"
    if ldaps and target.start_tls:
        problems.append(f"{where}: start_tls is for ldap:// URLs; ldaps:// is TLS already")
    if not ldaps and not target.start_tls:
        if target.tls_ca_file:
            problems.append(
                f"{where}: tls_ca_file is set but the connection is not TLS (set start_tls: true)"
            )
        if not _is_loopback(host):
            problems.append(
                f"{where}: {url} without start_tls would send the bind password in clear to a remote "
                "host; use ldaps:// or start_tls: true"
            )
    return problems


def read_password(environ: Mapping[str, str], target: Target) -> tuple[str, str]:
    """The bind password and where it came from (for messages); the errors never hold the value."""
    where = f"ldap target {target.name}"
    if target.bind_password_env:
        source = f"environment variable {target.bind_password_env}"
        value = environ.get(target.bind_password_env)
        if value is None:
            raise ProviderError(f"{where}: {source} is not set")
    elif target.bind_password_file:
        source = f"file {target.bind_password_file}"
        try:
            value = Path(target.bind_password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProviderError(
                f"{where}: cannot read the bind password {source}: {type(exc).__name__}"
            ) from None
    else:
        raise ProviderError(f"{where} names no bind password (bind_password_env or bind_password_file)")
    if not value:
        # An empty password makes a simple bind anonymous (RFC 4513 5.1.2), which would "succeed".
        raise ProviderError(f"{where}: the bind password in {source} is empty")
    return value, source


def settings_of(environ: Mapping[str, str], target: Target) -> Settings:
    problems = option_problems(target)
    if problems:
        raise ProviderError(problems[0])
    if not target.bind_dn or not target.url:
        raise ProviderError(f"ldap target {target.name} needs url and bind_dn")
    password, source = read_password(environ, target)
    parts = urlsplit(target.url)
    ldaps = parts.scheme.lower() == "ldaps"
    return Settings(
        url=f"{parts.scheme.lower()}://{parts.netloc}",
        host=parts.hostname or "",
        port=parts.port or (636 if ldaps else 389),
        start_tls=target.start_tls,
        bind_dn=target.bind_dn,
        password=password,
        password_source=source,
        ca_file=target.tls_ca_file,
        timeout=int(target.options.get("timeout", DEFAULT_TIMEOUT)),
        connections=int(target.options.get("connections", DEFAULT_CONNECTIONS)),
    )


def detail(exc: ldap.LDAPError, settings: Settings | None = None) -> str:
    """python-ldap's description and server text of ``exc`` as one line, with no secret in it."""
    info: Mapping[str, Any] = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    desc = str(info.get("desc") or type(exc).__name__)
    extra = str(info.get("info") or "").strip()
    text = desc if extra in _NO_INFO or extra == desc else f"{desc}: {extra}"
    return scrub(text, [settings.password] if settings else [])


def failure(exc: ldap.LDAPError, settings: Settings, target: Target, doing: str) -> ProviderError:
    """The one-line error for ``exc`` met while ``doing`` something at ``target``."""
    where = f"ldap target {target.name}"
    if isinstance(exc, ldap.INVALID_CREDENTIALS):
        return ProviderError(
            f"{where}: the directory refused the bind as {settings.bind_dn}: invalid credentials "
            f"(check the password in {settings.password_source})"
        )
    if isinstance(exc, ldap.INSUFFICIENT_ACCESS):
        return ProviderError(f"{where}: {settings.bind_dn} may not {doing}: insufficient access")
    if isinstance(exc, ldap.TIMEOUT):
        return TargetUnreachable(f"{where}: {settings.url} did not answer within {settings.timeout}s")
    if isinstance(exc, UNREACHABLE):
        return TargetUnreachable(f"{where}: cannot reach {settings.url}: {detail(exc, settings)}")
    return ProviderError(f"{where}: {doing} failed: {detail(exc, settings)}")


def _tls_failure(settings: Settings, target: Target) -> ProviderError:
    trust = f"tls_ca_file {settings.ca_file}" if settings.ca_file else "the system's trusted CAs"
    how = "StartTLS" if settings.start_tls else "TLS"
    return ProviderError(
        f"ldap target {target.name}: {how} with {settings.url} failed: the server's certificate is not "
        f"trusted by {trust} or does not name {settings.host}"
    )


def _port_answers(settings: Settings) -> bool:
    with suppress(OSError), socket.create_connection((settings.host, settings.port), settings.timeout):
        return True
    return False


def connect(settings: Settings, target: Target) -> Connection:
    """A new connection, TLS set up and bound as ``bind_dn``; raises a ``ProviderError`` otherwise."""
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise ProviderError(
            f"ldap target {target.name}: tls_ca_file {settings.ca_file} is not a readable file"
        )
    conn = ldap.initialize(settings.url)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
    conn.set_option(ldap.OPT_REFERRALS, 0)  # never carry our bind to another server
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, float(settings.timeout))
    conn.set_option(ldap.OPT_TIMEOUT, float(settings.timeout))
    if settings.tls:
        if settings.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, settings.ca_file)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_X_TLS_PROTOCOL_TLS1_2)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # last: builds the TLS context from the above
    try:
        if settings.start_tls:
            try:
                conn.start_tls_s()
            except (ldap.SERVER_DOWN, ldap.TIMEOUT):
                raise
            except ldap.LDAPError:
                raise _tls_failure(settings, target) from None
        conn.simple_bind_s(settings.bind_dn, settings.password)
    except ldap.SERVER_DOWN as exc:
        close(conn)
        if settings.tls and not settings.start_tls and _port_answers(settings):
            raise _tls_failure(settings, target) from None
        raise failure(exc, settings, target, "bind") from None
    except ldap.LDAPError as exc:
        close(conn)
        raise failure(exc, settings, target, "bind") from None
    except BaseException:
        close(conn)
        raise
    return conn


def alive(conn: Connection) -> bool:
    """An idle connection with something to read was closed or told off by the server."""
    return not socket_readable(int(conn.fileno()))


def close(conn: Connection) -> None:
    with suppress(Exception):
        conn.unbind_s()


class Directory:
    """Bound connections to the directory targets, shared by every thread of the provider."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._pool: AdminPool[Connection] = AdminPool(alive=alive, reusable=lambda _conn: True, close=close)
        self._finalizer = weakref.finalize(self, self._pool.close)

    def settings(self, target: Target) -> Settings:
        return settings_of(self._environ, target)

    def run(self, target: Target, doing: str, work: Callable[[Connection], T]) -> T:
        """``work`` on a pooled connection; python-ldap errors it lets out become ``ProviderError``s.

        ``work`` must be idempotent: when the connection turns out to be dead (the server went
        away since it was opened) it runs once more on a new one.
        """
        settings = self.settings(target)
        try:
            return self._attempt(settings, target, work)
        except ldap.SERVER_DOWN:
            pass  # most likely a pooled connection the server dropped: once more, on a new one
        except ldap.LDAPError as exc:
            raise failure(exc, settings, target, doing) from None
        try:
            return self._attempt(settings, target, work)
        except ldap.LDAPError as exc:
            raise failure(exc, settings, target, doing) from None

    def _attempt(self, settings: Settings, target: Target, work: Callable[[Connection], T]) -> T:
        with self._pool.connection(
            target.name,
            settings.fingerprint,
            lambda: connect(settings, target),
            size=settings.connections,
            label=f"ldap target {target.name}",
        ) as conn:
            return work(conn)

    def probe(self, target: Target) -> str:
        """Open, bind and close a fresh connection (not a pooled one): who the directory says we are."""
        settings = self.settings(target)
        conn = connect(settings, target)
        try:
            return str(conn.whoami_s() or "anonymous")
        except ldap.LDAPError as exc:
            raise failure(exc, settings, target, "ask who it is bound as") from None
        finally:
            close(conn)

    def close(self) -> None:
        self._finalizer()
        self._pool = AdminPool(alive=alive, reusable=lambda _conn: True, close=close)
        self._finalizer = weakref.finalize(self, self._pool.close)
