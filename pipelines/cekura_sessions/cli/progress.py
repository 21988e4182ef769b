"""A one-line progress display on interactive terminals; silent under cron and in logs.

The line counts projects as their listings finish (RunReport.projects_fetched), not as the
extract hands them to dlt, which gathers 20,000 sessions before it converts any. While the line
is up, every write to stderr (the log handlers' and any other) goes through one stream that
clears the line first and draws it again after a whole line, so a log record never lands inside
it. Written by hand: logging has no notion of a status line, and the libraries that draw one
(rich, tqdm) would add a dependency for a dozen lines.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, TextIO

from cekura_sessions.extract.report import RunReport

TICK_SECONDS = 0.1  # how often the line is checked; it is drawn again only when its text changed
_CLEAR = "\r\033[K"  # back to column 0, erase to the end of the line


class Progress:
    """`with Progress(report, enabled=sys.stderr.isatty()):` around the run."""

    def __init__(self, report: RunReport, enabled: bool, stream: TextIO | None = None) -> None:
        self._report, self._enabled = report, enabled
        self._terminal = stream or sys.stderr
        self._lock = threading.Lock()  # one writer at a time on the terminal: the line or a log record
        self._text = ""  # the line's latest text
        self._up = False  # the line is on screen now
        self._midline = False  # a write left the cursor mid-line: drawing now would erase it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._show, name="cekura-progress", daemon=True)
        self._restore: list[tuple[logging.StreamHandler, Any]] = []
        self._stderr: TextIO | None = None

    def __enter__(self) -> Progress:
        if self._enabled:
            self._route_writes_through(_AroundTheLine(self._terminal, self))
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._enabled:
            return
        self._stop.set()
        self._thread.join()
        with self._lock:
            if self._up:
                self._terminal.write(_CLEAR)
                self._terminal.flush()
            self._up = False
        for handler, stream in self._restore:
            handler.setStream(stream)
        if self._stderr is not None:
            sys.stderr = self._stderr

    def line(self) -> str:
        """The progress line for the report as it is now; "" before the projects are known."""
        report = self._report
        if not report.projects_wanted:
            return ""
        text = (f"  {report.projects_fetched}/{report.projects_wanted} projects listed, "
                f"{report.sessions_fetched:,} sessions, {report.stats.retries} retries")
        if report.projects_fetched >= report.projects_wanted:
            text += "; loading"
        return text[: self._columns() - 1]  # a wrapped line could not be cleared with one \r

    def write_around(self, text: str) -> None:
        """Write `text` (a log record, a message) to the terminal without breaking the line: the
        line is cleared first and drawn again once `text` ends a line."""
        if not text:
            return
        with self._lock:
            if self._up:
                self._terminal.write(_CLEAR)
                self._up = False
            self._terminal.write(text)
            self._midline = not text.endswith("\n")
            if not self._midline and self._text:
                self._terminal.write(self._text)
                self._up = True
            self._terminal.flush()

    def _show(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            text = self.line()
            with self._lock:
                if text and not self._midline and (text != self._text or not self._up):
                    self._terminal.write(_CLEAR + text)
                    self._terminal.flush()
                    self._text, self._up = text, True

    def _route_writes_through(self, stream: _AroundTheLine) -> None:
        """Point every log handler that writes to this terminal, and sys.stderr, at `stream`."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and _same_file(handler.stream, self._terminal):
                self._restore.append((handler, handler.setStream(stream)))
        if _same_file(sys.stderr, self._terminal):
            self._stderr, sys.stderr = sys.stderr, stream

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self._terminal.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return 80


class _AroundTheLine:
    """A text stream that writes through Progress.write_around; everything else (fileno, isatty,
    encoding) is the terminal's."""

    def __init__(self, terminal: TextIO, progress: Progress) -> None:
        self._terminal, self._progress = terminal, progress

    def write(self, text: str) -> int:
        self._progress.write_around(text)
        return len(text)

    def flush(self) -> None:
        self._terminal.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._terminal, name)


def _same_file(stream: Any, terminal: TextIO) -> bool:
    if stream is terminal:
        return True
    try:
        return os.path.sameopenfile(stream.fileno(), terminal.fileno())
    except (OSError, ValueError, AttributeError):
        return False
