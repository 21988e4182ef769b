"""PostgreSQL as a destination, against a real server: the run lock from two sessions and two
processes (kill -9 included), and connection failures that never show the password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from cekura_sessions.destination.address import parse_destination
from cekura_sessions.destination.postgres import (
    PostgresLockHeld,
    PostgresUnavailable,
    advisory_lock,
    connect,
)
from support.ports import refused_port

SECRET = "n0t-for-logs"


def test_a_second_run_on_the_same_dataset_is_refused_and_named(pg_url):
    first = connect(parse_destination(pg_url), "cekura-sessions run aaa on host-1")
    second = connect(parse_destination(pg_url), "cekura-sessions run bbb on host-2")
    with advisory_lock(first, "cekura_raw"):
        with pytest.raises(PostgresLockHeld, match=r"cekura_raw \(cekura-sessions run aaa on host-1, server pid \d+"):
            with advisory_lock(second, "cekura_raw"):
                pass
        with advisory_lock(second, "other_dataset"):  # another dataset is another lock
            pass
    with advisory_lock(second, "cekura_raw"):  # released at the end of the block
        pass


def test_the_lock_of_a_process_killed_with_9_is_released(pg_url, tmp_path):
    ready = tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from cekura_sessions.destination.address import parse_destination\n"
        "from cekura_sessions.destination.postgres import advisory_lock, connect\n"
        "w = connect(parse_destination(sys.argv[1]), 'holder')\n"
        "with advisory_lock(w, 'cekura_raw'):\n"
        "    pathlib.Path(sys.argv[2]).touch()\n"
        "    time.sleep(60)\n"
    ), pg_url, str(ready)], env={**os.environ})
    try:
        deadline = time.monotonic() + 120  # a hang guard: a cold interpreter takes the lock in a second
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        mine = connect(parse_destination(pg_url))
        with pytest.raises(PostgresLockHeld, match="holder"):
            with advisory_lock(mine, "cekura_raw"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(60)
        deadline = time.monotonic() + 60  # the server notices the closed socket at once, or soon
        while True:
            try:
                with advisory_lock(mine, "cekura_raw"):
                    break
            except PostgresLockHeld:
                assert time.monotonic() < deadline, "the killed process's lock was never released"
                time.sleep(0.1)
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize("case", ["wrong-password", "no-server"])
def test_a_failed_connection_is_one_line_without_the_password(pg_url, case):
    parts = urlsplit(pg_url)
    if case == "no-server":
        url = f"postgresql://loader:{SECRET}@127.0.0.1:{refused_port()}/analytics"
    else:  # a database that does not exist, with a password in the URL
        url = urlunsplit(parts._replace(netloc=f"nobody:{SECRET}@", path="/nowhere"))
    with pytest.raises(PostgresUnavailable) as caught:
        connect(parse_destination(url))
    message = str(caught.value)
    assert SECRET not in message and "\n" not in message, message
    assert message.startswith("cannot connect to postgresql://") and "***" in message, message
