"""The server behind support/warm.py: a Python process that imported the CLI's heavy libraries once,
and forks a CLI process (or one of dlt's own command line) for each request.

Run as `python warm_server.py SOCKET ROOM` (ROOM: a long argument whose bytes become each
process's command line); it prints `ready` once it listens, and exits when its standard input
closes (the test worker that started it ended). A request on the Unix socket is
one JSON object (script: None for `python -m cekura_sessions.cli`, or the path of a Python script
such as `.venv/bin/dlt`; argv after either; env, cwd, new_session) with the
child's stdin, stdout and stderr passed as file descriptors (SCM_RIGHTS). The answer is two JSON
lines on the same connection: {"pid": N} once forked, {"status": S} (the raw wait status) once
the process ended.

The libraries and the project's own modules are imported here, none run: no import reads the
environment (dlt's configuration container is empty until a pipeline runs; the project's reads
are all inside its functions, which test_warm_processes.py checks), so each process still
configures itself from its own environment. The CLI's entry (`python -m cekura_sessions.cli`),
or the script, runs afresh in each.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import json
import os
import pkgutil
import runpy
import selectors
import signal
import socket
import sys
import threading
import traceback

# this folder holds modules named as the standard library's (support/secrets.py): off the path
del sys.path[0]

PRELOADED = (
    "dlt", "dlt.pipeline", "dlt.normalize", "dlt.load", "dlt.extract", "dlt.destinations",
    "dlt.destinations.impl.duckdb.duck", "dlt.destinations.impl.duckdb.sql_client",
    "dlt.destinations.impl.postgres.postgres", "dlt.common.libs.pyarrow", "dlt.common.libs.pandas",
    "dlt.pipeline.trace", "dlt.pipeline.platform", "dlt.common.storages", "dlt.common.configuration.plugins",
    "duckdb", "pyarrow", "pyarrow.parquet", "pandas", "numpy", "psycopg2", "psycopg2.extras", "sqlglot",
    "requests", "urllib3", "tenacity", "waitress", "pendulum", "yaml", "sqlparse", "pluggy",
    "concurrent.futures", "email.message", "http.client",
)
MODULE = "cekura_sessions.cli"


def _set_command_line(argv: list[str]) -> None:
    """Make /proc/PID/cmdline read `argv`, as other programs see a process (the product names a
    file's holder from it): the bytes the kernel reads it from are rewritten in place, within the
    room the server's own command line left (support/warm.py's ROOM). No library does this with
    separate arguments (setproctitle writes one string)."""
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start and arg_end: fields 48 and 49 of proc(5)
    text = b"\0".join(arg.encode() for arg in argv)[: end - start - 1]
    ctypes.memmove(start, text.ljust(end - start, b"\0"), end - start)


def _preload() -> None:
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:  # an extra not installed: the process imports what it can
            pass
    # the project's modules too (measured: a `status` process 0.26 -> 0.20 s of CPU, a `run` of the
    # suite's data 1.00 -> 0.82 s; the suite forks about 200); the fake API's Django is imported by
    # the few processes that serve it
    import cekura_sessions

    for module in pkgutil.walk_packages(cekura_sessions.__path__, "cekura_sessions."):
        if not module.name.endswith("__main__") and not module.name.startswith("cekura_sessions.fake"):
            importlib.import_module(module.name)


def _exit_code(code: object) -> int:
    """What the interpreter makes of SystemExit's code."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _child(request: dict, fds: list[int], keep_closed: list[int]) -> None:
    """In the forked process: become `python -m cekura_sessions.cli ARGS` (or `python SCRIPT ARGS`),
    and never return."""
    code = 1
    try:
        for fd in keep_closed:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds):
            if fd > 2:
                os.close(fd)
        if request["new_session"]:
            os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        script = request["script"]
        if script is None:
            sys.path.insert(0, os.getcwd())  # as `python -m` puts it
            sys.argv = [MODULE, *request["argv"]]
            _set_command_line([sys.executable, "-m", MODULE, *request["argv"]])
            runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(script))  # as `python SCRIPT` puts it
            sys.argv = [script, *request["argv"]]
            _set_command_line([sys.executable, script, *request["argv"]])  # as its #! line starts it
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # as the interpreter ends on an unhandled Ctrl-C
    except BaseException:  # noqa: BLE001 - the interpreter prints it and exits 1
        traceback.print_exc()
        code = 1
    _finish()
    os._exit(code)


def _finish() -> None:
    """What the interpreter does on its way out: join the threads, run atexit, flush."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more can be said
                pass


def serve(path: str) -> None:
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")
    waiting: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, connection)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "parent":
                if not sys.stdin.buffer.read1(1):
                    return
            elif key.data == "accept":
                connection, _ = listener.accept()
                message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
                request = json.loads(message)
                sys.stdout.flush()
                sys.stderr.flush()
                # the server's own descriptors, the other processes' connections among them
                own = [listener.fileno(), connection.fileno(), selector.fileno(), *waiting,
                       *(other.fileno() for _, other in waiting.values())]
                pid = os.fork()
                if pid == 0:
                    _child(request, fds, own)
                for fd in set(fds):
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                waiting[pidfd] = (pid, connection)
                selector.register(pidfd, selectors.EVENT_READ, "child")
                connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            else:
                pidfd = key.fd
                pid, connection = waiting.pop(pidfd)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                try:
                    connection.sendall(json.dumps({"status": status}).encode() + b"\n")
                except OSError:  # the test gave up on it
                    pass
                connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
