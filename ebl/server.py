"""Serving the app with uvicorn: one process, or several on one port, each listening on a socket of its own.

uvicorn's own workers share one listening socket, and it served us badly on two counts (docs/benchmarks-history.md):

- whichever worker wakes first accepts every connection waiting (asyncio accepts up to the backlog at each wake-up),
  and clients that keep their connections open (wrk's 32, a bank's connection pool) stay with it: under load one of
  two workers did three quarters of the work (23.3 against 7.4 s of CPU);
- the socket did not say it was TCP, so asyncio left Nagle's algorithm on for its connections, and an answer on a
  kept-alive connection could wait ~40 ms for the client's delayed ACK: two workers answered 715 requests a second
  with it and 1,650 without it (uvicorn issue #3149, open at the time of writing).

Here each worker binds a TCP socket of its own with ``SO_REUSEPORT``, and the kernel spreads new connections over
the workers.

The supervisor only starts the workers and waits: it never imports uvicorn, the web adapter or the settings, so that
it stays small (docs/operations.md). Each worker builds its own :class:`uvicorn.Config`.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import signal
import socket
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("ebl.server")

# The web adapter is loaded by name: the domain library never imports it.
APP = "api.app:create_app"


@dataclass(frozen=True)
class _Serving:
    """What ``ebl serve`` was asked for, as plain values: the supervisor hands them to the processes it starts."""

    host: str
    port: int
    workers: int
    options: dict[str, Any]
    """:class:`uvicorn.Config`'s other options, as plain values."""

    def uvicorn_options(self) -> dict[str, Any]:
        from ebl.config import Settings

        return {
            "app": APP,
            "factory": True,
            "host": self.host,
            "port": self.port,
            # On SIGTERM or Ctrl-C: stop accepting, let the requests in flight finish (up to this long), then exit.
            "timeout_graceful_shutdown": Settings().shutdown_grace_seconds,
            **self.options,
        }

    def config(self) -> uvicorn.Config:
        """uvicorn's configuration, which also configures this process's logging."""
        import uvicorn

        return uvicorn.Config(**self.uvicorn_options())

    def configure_logging(self) -> None:
        """The logging ``options`` ask for. Python's warnings (a library's, say) become log lines too: printed as they
        are, they would be the only lines on stderr that are not JSON."""
        logging.captureWarnings(True)
        log_config = self.options.get("log_config")
        if log_config is not None:
            logging.config.dictConfig(log_config)


def serve(host: str, port: int, workers: int, **options: Any) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit status. ``options`` are :class:`uvicorn.Config`'s.

    With ``workers`` above 1, start that many processes and wait. SIGTERM or SIGINT stops them gracefully (each
    finishes the requests it has in flight); a worker that exits on its own stops the others too, and the node exits
    with status 1 for its service manager to restart it whole. Workers whose supervisor was killed stop gracefully."""
    serving = _Serving(host, port, workers, options)
    serving.configure_logging()
    # Bound, never listening: the port is checked before the database is opened, and this socket takes no connections.
    try:
        # A socket that shares the port binds wherever all the sockets there share it too, as another node's workers
        # do: only one that does not share it is refused by them.
        _bound_socket(serving.host, serving.port, shared=False).close()
        probe = _bound_socket(serving.host, serving.port)
    except OSError as error:
        logger.error("cannot listen on %s:%s: %s", serving.host, serving.port, error.strerror)
        return 1
    if workers == 1:
        import uvicorn

        probe.close()  # uvicorn binds a socket of its own
        uvicorn.run(**serving.uvicorn_options())
        return 0
    with probe:
        return _run_workers(serving)


def _bound_socket(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A TCP socket bound to the port; ``shared``: with ``SO_REUSEPORT``, as every worker's is."""
    # IPPROTO_TCP named, not left to the default: asyncio turns Nagle's algorithm off only on sockets that say so.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _prepare(serving: _Serving) -> None:
    from ebl.config import Settings
    from ebl.errors import SetupError
    from ebl.service import Node

    serving.configure_logging()
    try:
        Node.open(Settings()).close()
    except SetupError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None


def _worker(serving: _Serving) -> None:
    import uvicorn

    serving.configure_logging()
    config = serving.config()
    sock = _bound_socket(config.host, config.port)
    # Listening before the app has started: connections made meanwhile wait in this worker's queue, where they would
    # otherwise all go to the workers already up, and stay there for as long as their clients keep them open.
    sock.listen(config.backlog)
    server = uvicorn.Server(config)
    threading.Thread(target=_stop_when_orphaned, args=(server,), name="ebl-supervisor-watch", daemon=True).start()
    server.run(sockets=[sock])


def _stop_when_orphaned(server: uvicorn.Server) -> None:
    """Stop ``server`` gracefully once the supervisor has exited: killed (SIGKILL), it cannot stop its workers, which
    would serve on with nobody to stop them, sharing the port with the node that replaces it."""
    supervisor = multiprocessing.parent_process()
    assert supervisor is not None  # a worker is always started by the supervisor
    supervisor.join()
    logger.error("the supervisor (process %s) exited; this worker stops", supervisor.pid)
    server.should_exit = True


def _run_workers(serving: _Serving) -> int:
    spawn = multiprocessing.get_context("spawn")
    # One process migrates the database, seeds it and makes the keys before the workers open it: workers that did
    # it together on a new SQLite file collided ("database is locked" while one set its journal mode).
    preparing = spawn.Process(target=_prepare, args=(serving,), name="ebl-prepare")
    preparing.start()
    preparing.join()
    if preparing.exitcode != 0:
        logger.error("preparing the database and the keys failed (above); no worker started")
        return 1
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    processes = [spawn.Process(target=_worker, args=(serving,), name=f"ebl-worker-{n}") for n in range(serving.workers)]
    for process in processes:
        process.start()
    logger.info("serving on %s:%s with %d worker processes", serving.host, serving.port, serving.workers)
    # Woken by a worker's exit, or every half second to see whether a signal asked the node to stop.
    while not stopping.is_set() and not wait([p.sentinel for p in processes], timeout=0.5):
        pass
    failed = not stopping.is_set()
    if failed:
        logger.error("a worker process exited; stopping the others")
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()
    return 1 if failed else 0
