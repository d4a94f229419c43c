"""Exceptions raised by the ChartMogul provider.

None of them ever carries the API key: API errors hold the HTTP status, the API's own message
and a shortened copy of the answer body; validation errors hold the customer, the attribute key,
a shortened copy of the value and the rule that was broken.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_chartmogul.client.classify import is_retried_status
from airflow_provider_chartmogul.redaction import scrub
from airflow_provider_chartmogul.version_compat import AirflowException, AirflowFailException


def shorten(value: Any, limit: int = 60, *, quote: bool = True) -> str:
    """``value`` as errors, labels and logs show it: its ``repr`` (with ``quote=False``, its
    ``str``), secrets scrubbed, and only its first ``limit`` characters if it is longer.

    A cut text ends with ``...(N chars)``. N is the length of the whole text, or of a ``str``
    value itself (as in "at most 255 characters, got 300"), not of its quoted ``repr``. Secrets
    are scrubbed before the cut: a secret cut in two could no longer be recognised.
    """
    text = scrub(repr(value) if quote else str(value))
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[:limit]}...({size} chars)"


class ChartMogulValidationError(ValueError):
    """A customer record or attribute breaks one of ChartMogul's rules; nothing was sent for it.

    :param rule: what is wrong, in words (for example "must be at most 255 characters").
    :param customer: label of the customer the record is for (``customer_uuid=cus_...``), if known.
    :param key: attribute key (or record field) the problem is in, if any.
    :param value: the offending value; only a shortened ``repr`` of it is kept.
    """

    def __init__(
        self,
        rule: str,
        *,
        customer: str | None = None,
        key: str | None = None,
        value: Any = None,
        has_value: bool = False,
    ) -> None:
        self.rule = rule
        self.customer = customer
        self.key = key
        self.value_repr = shorten(value) if has_value else None
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.customer:
            parts.append(self.customer)
        if self.key is not None:
            parts.append(f"attribute {self.key!r}")
        if self.value_repr is not None:
            parts.append(f"value {self.value_repr}")
        where = ": ".join(parts)
        return f"{where}: {self.rule}" if where else self.rule


class ChartMogulConfigurationError(AirflowException):
    """The ``chartmogul`` connection (or a hook/operator override) is unusable as configured."""


class ChartMogulSourceError(AirflowException):
    """The operator's input cannot be read as customer records at all."""


class ChartMogulAPIError(AirflowException):
    """ChartMogul answered with an error, or could not be reached.

    :param message: what went wrong, including the API's own message when it sent one.
    :param status: HTTP status of the last answer, or ``None`` when no answer came (connection
        error, timeout).
    :param method: HTTP method of the request.
    :param path: path of the request (never with credentials; the key is sent as Basic auth).
    :param body: the answer body, shortened.
    :param attempts: how many attempts were made, retries included.
    :param retryable: whether a later replay may succeed (rate limits, server errors, no answer).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        body: str | None = None,
        attempts: int = 1,
        retryable: bool | None = None,
    ) -> None:
        self.status = status
        self.api_message = scrub(message)
        self.method = method
        self.path = path
        self.body = scrub(body) if body is not None else None
        self.attempts = attempts
        self.retryable = retryable if retryable is not None else is_retried_status(status)
        super().__init__(self._format())

    def with_note(self, note: str) -> ChartMogulAPIError:
        """A new error of the same class, its message followed by ``(note)``: errors are built once,
        never edited (raise the new one ``from`` this one)."""
        return type(self)(
            f"{self.api_message} ({note})",
            status=self.status,
            method=self.method,
            path=self.path,
            body=self.body,
            attempts=self.attempts,
            retryable=self.retryable,
        )

    def _format(self) -> str:
        where = f"ChartMogul {self.method} {self.path}" if self.method else "ChartMogul"
        status = f"HTTP {self.status}" if self.status is not None else "no answer"
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return scrub(f"{where} failed ({status}{tries}): {self.api_message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_api_error,
            (
                type(self),
                self.api_message,
                self.status,
                self.method,
                self.path,
                self.body,
                self.attempts,
                self.retryable,
            ),
        )


def _rebuild_api_error(cls: type[ChartMogulAPIError], *args: Any) -> ChartMogulAPIError:
    message, status, method, path, body, attempts, retryable = args
    return cls(
        message, status=status, method=method, path=path, body=body, attempts=attempts, retryable=retryable
    )


class ChartMogulFatalError(ChartMogulAPIError):
    """The connection cannot work as configured: retrying, or going on with other customers,
    cannot help, so a run stops at once."""


class ChartMogulAuthError(ChartMogulFatalError, AirflowFailException):
    """401 or 403: the key is wrong, or read-only and may not write. An ``AirflowFailException``:
    Airflow does not retry a task that raises it, since a retry cannot succeed either."""


class ChartMogulForbiddenError(ChartMogulAPIError):
    """403 to one request after requests of its kind (reads, or writes) had succeeded with this key:
    the key can do this, so something refused this one request (a firewall rule on its body, a
    record-level permission). Not fatal: that customer fails, the run goes on. A 403 before any
    request of its kind succeeded is a :class:`ChartMogulAuthError`."""


class ChartMogulTLSError(ChartMogulFatalError, AirflowFailException):
    """TLS cannot work as configured: the server's certificate was refused, the server speaks plain
    HTTP, or the CA bundle cannot be read; nothing was sent. An ``AirflowFailException``, as for
    :class:`ChartMogulAuthError`. A handshake cut short (EOF, reset, timeout) is no such error: it
    is a connection error, retried."""


class ChartMogulUnavailableError(ChartMogulFatalError):
    """The circuit breaker opened: nothing succeeded for a while (connection refused, every answer
    a 5xx), so the run stops instead of retrying every remaining customer."""


class ChartMogulCancelledError(ChartMogulFatalError):
    """The hook was cancelled (``ChartMogulHook.cancel()``: ``on_kill``, a timeout): no new request
    starts after it."""


class CustomAttributesPushError(AirflowException):
    """More customers failed than ``max_failures`` allows; ``report`` lists every one of them."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as cls(*args): the report is no positional arg of its own.
        return (type(self), (self.args[0] if self.args else "", self.report))


class CustomAttributesFatalError(CustomAttributesPushError, AirflowFailException):
    """The run stopped on a 401, a 403 or a refused TLS certificate. An ``AirflowFailException``,
    so Airflow does not retry the task: a retry cannot succeed until the connection is fixed."""
