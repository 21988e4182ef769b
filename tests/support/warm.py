"""`python -m cekura_sessions.cli ...` and dlt's own `dlt ...` as real processes that start warm:
`run` and `Popen` take what subprocess's do.

Why by hand: a new interpreter spends about 1.5 s of CPU importing dlt, pyarrow and pandas
before the CLI reads its arguments, and the suite starts about two hundred of them. Here the
process is forked from a server that imported those libraries once (support/warm_server.py, one
per test worker): it is still a process of its own, with its own pid, signals, exit status, file
descriptors, working folder and environment, and it imports the project afresh. What changes how
an interpreter starts (PYTHON*, LD_*, TZ and locale variables that differ from this process's,
a preexec_fn, a program other than these two) gets a new interpreter, through subprocess itself.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "cekura_sessions.cli"]  # the CLI as tests start it (support/processes.py)
DLT = [str(Path(sys.executable).with_name("dlt"))]  # dlt's command line (`dlt pipeline ... info`), a script
STARTUP_VARIABLES = ("PYTHON", "LD_", "TZ", "LANG", "LC_")  # read as an interpreter starts
SERVER = Path(__file__).with_name("warm_server.py")
ROOM = 8192  # bytes of the server's command line, which each process rewrites as its own

_server_lock = threading.Lock()
_server: tuple[subprocess.Popen, str] | None = None


def _socket_path() -> str:
    """The server's socket, started on first use (one per test worker)."""
    global _server
    with _server_lock:
        if _server is None or _server[0].poll() is not None:
            folder = tempfile.mkdtemp(prefix="cekura-warm-")
            path = os.path.join(folder, "cli.sock")
            server = subprocess.Popen([sys.executable, str(SERVER), path, "-" * ROOM], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_server_env())
            if server.stdout.readline().strip() != b"ready":
                raise RuntimeError("the warm CLI server did not start")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            atexit.register(server.stdin.close)  # its standard input closing ends it (run first: last in)
            _server = (server, path)
        return _server[1]


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CEKURA_", "SOURCES__", "PYTEST_"))}


def _program(args: Any) -> list[str] | None:
    """CLI or DLT, whichever `args` starts with; None for any other program."""
    if not isinstance(args, (list, tuple)):
        return None
    return next((program for program in (CLI, DLT) if [str(a) for a in args[:len(program)]] == program), None)


def _warm(args: Any, kwargs: dict[str, Any]) -> bool:
    if _program(args) is None:
        return False
    if kwargs.get("preexec_fn") is not None or any(kwargs.get(k) for k in ("pass_fds", "shell", "executable")):
        return False
    env = kwargs.get("env")
    if env is None:
        return True
    names = {k for k in {*env, *os.environ} if k.startswith(STARTUP_VARIABLES)}
    return all(env.get(k) == os.environ.get(k) for k in names)


class Popen(subprocess.Popen):
    """subprocess.Popen; the CLI forked warm when it can be (module docstring)."""

    def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
        self._warm = _warm(args, kwargs)
        self._connection: socket.socket | None = None
        self._answers = b""
        super().__init__(args, *rest, **kwargs)

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,  # noqa: PLR0913
                       startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread,
                       errwrite, restore_signals, *rest):
        if not self._warm:
            return super()._execute_child(args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                                          creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread,
                                          errwrite, restore_signals, *rest)
        start_new_session = rest[-2] if len(rest) >= 2 else False  # (..., start_new_session, process_group)
        # the child's stdin, stdout and stderr; -1: this process's own, as a new process inherits them
        fds = [given if given != -1 else own for given, own in ((p2cread, 0), (c2pwrite, 1), (errwrite, 2))]
        program = _program(args)
        request = {
            "script": program[0] if program == DLT else None,  # None: `python -m cekura_sessions.cli`
            "argv": [str(a) for a in args[len(program):]],
            "env": {str(k): str(v) for k, v in (env if env is not None else os.environ).items()},
            "cwd": str(cwd) if cwd is not None else os.getcwd(),
            "new_session": bool(start_new_session),
        }
        try:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.connect(_socket_path())
            socket.send_fds(connection, [json.dumps(request).encode()], fds)
            self._connection = connection
            self.pid = self._answer()["pid"]
            self._child_created = True
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _answer(self, block: bool = True) -> dict | None:
        """The server's next line, or None if it has not come (block=False)."""
        connection = self._connection
        while b"\n" not in self._answers:
            connection.setblocking(block)
            try:
                part = connection.recv(4096)
            except BlockingIOError:
                return None
            finally:
                connection.setblocking(True)
            if not part:
                raise ChildProcessError(f"the warm CLI server lost process {self.pid}")
            self._answers += part
        line, self._answers = self._answers.split(b"\n", 1)
        return json.loads(line)

    def _try_wait(self, wait_flags):
        if not self._warm:
            return super()._try_wait(wait_flags)
        answer = self._answer(block=not wait_flags & os.WNOHANG)
        if answer is None:
            return 0, 0
        self._connection.close()
        return self.pid, answer["status"]

    def _internal_poll(self, _deadstate=None, **ignored):
        if not self._warm:
            return super()._internal_poll(_deadstate)
        if self.returncode is None and self._connection is not None and self._waitpid_lock.acquire(False):
            try:
                if self.returncode is None:
                    pid, status = self._try_wait(os.WNOHANG)
                    if pid == self.pid:
                        self._handle_exitstatus(status)
            finally:
                self._waitpid_lock.release()
        return self.returncode


def run(*popenargs: Any, input: Any = None, capture_output: bool = False, timeout: float | None = None,
        check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run, through this module's Popen (subprocess.run takes no Popen class of its
    own, so its few lines are repeated here)."""
    if capture_output:
        kwargs["stdout"] = subprocess.PIPE
        kwargs["stderr"] = subprocess.PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        code = process.poll()
        if check and code:
            raise subprocess.CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)
