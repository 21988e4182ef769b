"""waitress, the WSGI server the fake runs in, with the two things a fault needs of it: a
connection closed with nothing sent (`drop`); every write is flushed at once by default
(`send_bytes` is 1), so a trickled body goes out byte by byte.

waitress has no switch for the first: a WSGI application cannot close its socket, and an
exception before any byte would be answered with a 500. So its task class is extended by the
few lines that turn fake.middleware.Dropped into a closed connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from waitress import create_server as _waitress_server
from waitress.channel import HTTPChannel
from waitress.task import WSGITask

from cekura_sessions.fake.middleware import Dropped


class _DroppingTask(WSGITask):
    dropped = False

    def execute(self) -> None:
        try:
            super().execute()
        except Dropped:
            self.dropped = True
            self.close_on_finish = True

    def finish(self) -> None:
        if not self.dropped:  # finish() would write the headers of an empty answer
            super().finish()


class _Channel(HTTPChannel):
    task_class = _DroppingTask


class FakeServer:
    """One waitress server bound to host:port; run() serves until stop()."""

    def __init__(self, app: Callable[..., Any], host: str, port: int, threads: int) -> None:
        self._server = _waitress_server(
            app, host=host, port=port, threads=threads,
            ident="FakeCekura",
            channel_timeout=120,  # idle keep-alive connections end eventually
            connection_limit=1000,
            backlog=1024,  # benchmarks open many connections at once
            expose_tracebacks=False,
        )
        self._server.channel_class = _Channel
        self._closed = False
        self.effective_port = self._server.effective_port

    def run(self) -> None:
        self._loop = threading.current_thread()
        self._server.run()

    def stop(self) -> None:
        """Close the listening socket and every connection; run() then returns. While the loop
        runs, its own thread does the closing (the trigger), as waitress's channels are its."""
        loop = getattr(self, "_loop", None)
        try:
            if loop is not None and loop.is_alive():
                self._server.trigger.pull_trigger(self._close_all)
                loop.join(timeout=10)
        except OSError:  # the loop ended on its own: its trigger is closed
            pass
        if loop is None or not loop.is_alive():
            self._close_all()
        self._server.task_dispatcher.shutdown(timeout=2)

    def open_connections(self) -> list[Any]:
        """The sockets of the connections open now (what a test inspects: keep-alive, TCP_NODELAY)."""
        server = self._server
        return [channel.socket for channel in list(server._map.values())
                if isinstance(channel, HTTPChannel) and channel.socket is not None]

    def _close_all(self) -> None:
        server = self._server
        for channel in list(server._map.values()):
            if channel is not server and channel is not server.trigger:
                channel.close()
        if not self._closed:
            self._closed = True
            server.close()  # the listening socket and the trigger: the loop's map empties, run() returns


def create_server(app: Callable[..., Any], host: str, port: int, threads: int) -> FakeServer:
    return FakeServer(app, host, port, threads)
