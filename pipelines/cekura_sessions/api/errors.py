"""What can go wrong talking to the API, as classes that say what to do about it."""

from __future__ import annotations


class ApiError(Exception):
    """Base class: something went wrong talking to the API."""


class FatalApiError(ApiError):
    """No request of this run can succeed: the run stops (exit 2) with one line (run/outcome.py)."""


class AuthError(FatalApiError):
    """The key was refused (a 401, or a 403 whose `detail` says the key is invalid or missing):
    no request can succeed, so the whole run stops. `status`: 401 or 403; `detail`: DRF's words
    on a 403 (one of a fixed few, api/responses.py), else None."""

    def __init__(self, status: int = 401, detail: str | None = None) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"the API refused the key {self.said}")

    @property
    def said(self) -> str:
        """`(HTTP 401)`, or `(HTTP 403: "Invalid API key.")`."""
        return f'(HTTP {self.status}: "{self.detail}")' if self.detail else f"(HTTP {self.status})"


class Challenged(FatalApiError):
    """A firewall or bot protection answered instead of the API (`cf-mitigated: challenge`, or a
    403 with an HTML page): no key and no retry gets through it, so the whole run stops.
    `evidence`: what showed it, such as "HTTP 403, cf-mitigated: challenge"."""

    def __init__(self, evidence: str) -> None:
        super().__init__(f"a firewall or bot challenge answered instead of the API ({evidence})")
        self.evidence = evidence


class Untrusted(FatalApiError):
    """TLS failed in a way no retry changes (the certificate fails verification, or the port
    does not speak TLS): the whole run stops; the message names REQUESTS_CA_BUNDLE."""


class ProjectError(ApiError):
    """This request can never succeed as asked (a 4xx other than 401, 408 and 429, or a
    redirect): fail the project, not the run."""


class NotFound(ProjectError):
    """HTTP 404. On a `next` link it means the page is gone (DRF answers `{"detail": "Invalid
    page."}` past the end): the listing shrank while it was paged, see ListingMoved."""


class ListingMoved(ApiError):
    """A listing changed while its pages were read (`count` changed, a page vanished, the rows
    did not add up to `count`): the pages do not make one listing, so it is read again from
    the start (api/client.py), a bounded number of times (RetryPolicy.listing_reads)."""


class RetryableError(ApiError):
    """A transient failure worth another attempt; `retry_after` is the server's hint in seconds;
    `outage`: what a server that is down for a while gives (a gateway's 502/503/504, a refused or
    dropped connection), retried for at least RetryPolicy.outage_seconds once the server has
    answered this night."""

    def __init__(self, message: str, retry_after: float | None = None, outage: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.outage = outage


class Unreachable(RetryableError):
    """No answer at all: the connection failed or timed out."""


class RateLimited(RetryableError):
    """HTTP 429: the whole client slows down, not just the worker that was told (api/pacing.py);
    asked again for as long as the night's time budget lasts, whatever the attempts."""


class ThrottledTooLong(ApiError):
    """The API still throttled (429) when the night's time budget ran out: this request is not
    asked again and its project fails (keeping its stored rows); the run goes on."""


class MalformedBody(RetryableError):
    """200 with a body that is not the JSON the spec promises; retried, then fails the project."""


class ConfigError(ValueError):
    """The client cannot be set up as configured; the message says what to fix."""


class InsecureUrlError(ConfigError):
    """The key would travel in clear text to a host other than this machine."""


def describe_error(error: BaseException | None) -> str:
    """One line for people; the errors above carry no key and no body."""
    if error is None:
        return "unknown error"
    return str(error)
