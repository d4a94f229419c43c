"""The test server's command line: ``python -m airflow_provider_chartmogul.testing.server --help``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_chartmogul.testing.server.customers import CUSTOMER_SHAPES, NEWEST_SHAPE
from airflow_provider_chartmogul.testing.server.faults import parse_faults
from airflow_provider_chartmogul.testing.server.server import ChartMogulServer


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_chartmogul.testing.server",
        description="Serve a ChartMogul-compatible API (in memory) until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18765, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", metavar="KEY", help="read-write key (repeatable)"
    )
    parser.add_argument("--read-only-key", action="append", default=[], metavar="KEY", help="repeatable")
    parser.add_argument(
        "--seed", metavar="FILE", help="JSON list of add_customer keyword objects (.jsonl: one a line)"
    )
    parser.add_argument(
        "--seed-synthetic", type=int, default=0, metavar="N", help="add N synthetic customers (see the docs)"
    )
    parser.add_argument(
        "--synthetic-custom-share",
        type=float,
        default=1.0,
        metavar="F",
        help="share of the synthetic customers that hold custom attributes (0..1, default 1)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429")
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--faults", default=None, help="e.g. 429=0.05,drop=0.02")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--type-conflict", choices=("error", "overwrite"), default="error")
    parser.add_argument("--delete-status", type=int, choices=(200, 202, 204), default=204)
    parser.add_argument(
        "--customer-shape",
        choices=tuple(CUSTOMER_SHAPES),
        default=NEWEST_SHAPE,
        help="the customer object as recorded in this year",
    )
    parser.add_argument("--no-record", action="store_true", help="do not keep the request log")
    parser.add_argument(
        "--request-log-limit", type=int, default=100_000, metavar="N", help="most records kept (0: no limit)"
    )
    parser.add_argument(
        "--request-log-body-bytes",
        type=int,
        default=64 * 1024 * 1024,
        metavar="N",
        help="bodies kept in the log, in bytes, before the oldest are released (-1: no limit)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print nothing but the listening line")
    output.add_argument("--verbose", action="store_true", help="access log on stderr")
    return parser


def _seed(server: ChartMogulServer, path: str) -> None:
    if path.endswith(".jsonl"):  # one object a line, streamed: a large seed is never all in memory
        with open(path, encoding="utf-8") as seed_file:
            server.load_customers(json.loads(line) for line in seed_file if line.strip())
        return
    with open(path, encoding="utf-8") as seed_file:
        seed = json.load(seed_file)
    if isinstance(seed, dict):  # {"definitions": {...}, "customers": [...]} is accepted too
        for key, type_ in (seed.get("definitions") or {}).items():
            server.define_attribute(key, type_)
        seed = seed.get("customers") or []
    server.load_customers(seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server from the command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    api_keys = dict.fromkeys(args.api_keys or ["sk_test"], "read-write")
    api_keys.update(dict.fromkeys(args.read_only_key, "read-only"))
    try:
        server = ChartMogulServer(
            api_keys=api_keys,
            host=args.host,
            port=args.port,
            latency=args.latency,
            rate_limit=args.rate_limit,
            rate_limit_retry_after=args.retry_after,
            max_parallel=args.max_parallel,
            faults=parse_faults(args.faults),
            fault_seed=args.fault_seed,
            slow_seconds=args.slow_seconds,
            type_conflict=args.type_conflict,
            delete_status=args.delete_status,
            customer_shape=args.customer_shape,
            record_requests=not args.no_record,
            request_log_limit=args.request_log_limit or None,
            request_log_body_bytes=None if args.request_log_body_bytes < 0 else args.request_log_body_bytes,
            verbose=args.verbose,
            quiet=args.quiet,
        )
        if args.seed:
            _seed(server, args.seed)
        if args.seed_synthetic:
            server.seed_synthetic(args.seed_synthetic, custom_share=args.synthetic_custom_share)
        server.start()
    except (OSError, ValueError, TypeError) as exc:
        if not args.quiet:
            print(f"error: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"ChartMogul-compatible server listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
