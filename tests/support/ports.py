"""A loopback port that refuses connections for as long as a test needs it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    """A port bound but never listened on: connecting is refused, and since the socket stays
    bound until the block ends, no other test (or xdist worker) can start a server on it.
    Binding, closing and reusing the number would leave that window open."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
