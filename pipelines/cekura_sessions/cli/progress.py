"""A one-line progress display on interactive terminals; silent under cron and in logs."""

from __future__ import annotations

import sys
import threading

from cekura_sessions.extract.report import RunReport


class Progress:
    def __init__(self, report: RunReport, enabled: bool) -> None:
        self._report, self._enabled = report, enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._show, daemon=True)

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            self._stop.set()
            self._thread.join()
            sys.stderr.write("\r\033[K")

    def _show(self) -> None:
        while not self._stop.wait(0.5):
            report = self._report
            if report.projects_wanted:
                sys.stderr.write(
                    f"\r\033[K  {report.projects_done}/{report.projects_wanted} projects listed, "
                    f"{report.sessions_listed} sessions, {report.stats.retries} retries"
                )
                sys.stderr.flush()
