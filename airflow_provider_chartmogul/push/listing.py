"""Read the customer listing in a thread of its own, so that writes start while it is read.

One pass over ``GET /v1/customers`` (200 customers a page, cursor-paginated: one page at a time).
The hook sends these pages ahead of the writes waiting for a send slot (``priority``), so the
listing is not slowed by the writes it unblocks. Pages are handed to the main thread through a
queue; the main thread indexes them, so the directory is never shared between threads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook


class _Stopped(Exception):
    pass


class ListingReader:
    """Reads every customer of the account, page by page, in a daemon thread.

    :param notify: called (from the reading thread) when a page or the end is ready.
    """

    def __init__(self, hook: ChartMogulHook, notify: Callable[[], None]) -> None:
        self.hook = hook
        self.notify = notify
        self.pages: queue.SimpleQueue[list[dict[str, Any]] | None] = queue.SimpleQueue()
        self.requests = 0
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.seconds = 0.0
        self._stopped = False
        self._thread = threading.Thread(target=self._read, name="chartmogul-listing", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No further page is requested (the page being read, if any, still ends)."""
        self._stopped = True

    def _read(self) -> None:
        batch: list[dict[str, Any]] = []

        def on_page() -> None:
            if self._stopped:
                raise _Stopped
            if batch:
                self.pages.put(batch.copy())
                batch.clear()
                self.notify()
            self.requests += 1

        try:
            for customer in self.hook.iter_customers(on_page=on_page):
                batch.append(customer)
            if batch:
                self.pages.put(batch)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the main thread, which decides
            self.error = exc
        finally:
            self.seconds = time.monotonic() - self.started
            self.pages.put(None)
            self.notify()
