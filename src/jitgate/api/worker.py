"""``jitgate server --workers N``: N broker processes on one port, each with its own socket.

Each worker is a whole broker on the shared database: its own runtime, scheduler and caches. What
must be done once (policy check, migrations, keys) is done by the parent before the workers start;
the parent passes its settings down as ``JITGATE_*`` environment variables.

Every worker listens on a socket of its own, all bound to the same address with ``SO_REUSEPORT``,
so the kernel spreads new connections across them. With one shared socket, whichever worker is
idle accepts a whole burst of connections, and one worker can end up serving nearly all of them
while the other core idles. (Only processes of the same user can join such a group.)

The parent binds the sockets itself, so a port in use fails at once with one line; it then waits.
If a worker stops on its own the parent stops the others and exits non-zero, for the service
manager to restart the whole broker; SIGINT or SIGTERM stops every worker gracefully.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import wait
from types import FrameType

from fastapi import FastAPI

from jitgate.api.app import create_app, settle_heap
from jitgate.api.serving import process_bounds, server_config
from jitgate.errors import InvalidInput
from jitgate.runtime import build_runtime
from jitgate.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
GRACE_SECONDS = 30.0
log = logging.getLogger("jitgate.server")


def app() -> FastAPI:
    """This worker's app, its runtime built from the environment."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    built = create_app(build_runtime(Settings()), close_runtime=True)
    settle_heap()
    return built


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, ``SO_REUSEPORT`` group or not.

    Without this check a second broker started by the same user on the same port would join the
    first one's group and silently take a share of its connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that others of this user may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _run_worker(sock: socket.socket, environment: dict[str, str], access_log: bool) -> None:
    import uvicorn

    os.environ.update(environment)
    _stop_when_orphaned(os.getppid())
    config = server_config(app(), process_bounds(Settings()), access_log=access_log)
    uvicorn.Server(config).run(sockets=[sock])


def _stop_when_orphaned(parent: int) -> None:
    """Stop this worker gracefully if the server process is gone (killed outright, say)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.error("the server process is gone; this worker stops")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="jitgate-orphan-watch", daemon=True).start()


def serve(settings: Settings, environment: dict[str, str], access_log: bool) -> int:
    """Run ``settings.workers`` workers until told to stop; returns the exit status."""
    host, port = settings.host_port
    check_port_free(host, port)
    sockets = [listening_socket(host, port) for _ in range(settings.workers)]
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_run_worker, args=(sock, environment, access_log), name=f"jitgate-worker-{i}")
        for i, sock in enumerate(sockets)
    ]
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate()  # SIGTERM: uvicorn finishes what it is serving, then stops

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        for sock in sockets:
            sock.close()  # each worker holds its own
        log.info("started %d workers on %s:%d", len(workers), host, port)
        while not stopping:
            done = wait([w.sentinel for w in workers], timeout=1.0)
            if done and not stopping:
                gone = next(w for w in workers if w.sentinel in done)
                gone.join()
                log.error("worker %s stopped (exit code %s); stopping the others", gone.name, gone.exitcode)
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(GRACE_SECONDS)
            if worker.is_alive():
                worker.kill()
                worker.join()
    return 0 if stopping else 1
