"""Another integration on the same ChartMogul account: a steady stream of reads.

``python _load.py SPEC.json OUT.json`` (run by ``_sharing.py``). Sends ``rate`` requests per second
(``GET /v1/customers/{uuid}``, customers ``0..customers-1`` in turn) on a fixed schedule from
several threads, so latency does not slow the schedule; a 429 is counted, not retried, as a
simple integration does. Touches ``ready_file`` after its first answer and stops when
``stop_file`` exists. Only ever sends to 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from _common import API_KEY, OTHER_CLIENT_AGENT, customer_uuid

THREADS = 8


def run(spec: dict[str, Any]) -> dict[str, Any]:
    url = spec["url"]
    if urlsplit(url).hostname != "127.0.0.1":
        raise SystemExit(f"the load only goes to 127.0.0.1, not {url}")
    rate, customers = float(spec["rate"]), int(spec["customers"])
    stop_file, ready_file = Path(spec["stop_file"]), Path(spec["ready_file"])
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    slots = itertools.count()
    start = time.monotonic() + 0.2
    stop = threading.Event()

    def worker() -> None:
        with requests.Session() as session:
            session.auth = (API_KEY, "")
            session.headers["User-Agent"] = OTHER_CLIENT_AGENT
            while not stop.is_set():
                with lock:
                    slot = next(slots)
                delay = start + slot / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if stop.is_set():
                    return
                uuid = customer_uuid(slot % customers)
                try:
                    status = str(session.get(f"{url}/v1/customers/{uuid}", timeout=30).status_code)
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] += 1
                ready_file.touch()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    while not stop_file.exists():
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=35)
    return {"statuses": dict(statuses), "seconds": time.monotonic() - start}


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    result = run(json.loads(Path(spec_path).read_text(encoding="utf-8")))
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
