"""The customer index: every customer of the account from one pass over the customer listing, in a
private SQLite database whose memory does not grow with the account (docs/large-accounts.md).

SQLite (standard library) rather than Python dicts: an account of 10^6 customers held in dicts
takes about 1.8 KB a customer; a temporary SQLite database keeps at most its page cache in memory
and spills the rest to a file that SQLite deletes when it is closed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_chartmogul.client.identifiers import data_source_uuids, external_ids

# SQLite's page cache for the index, in KiB: the most of it that stays in memory.
CACHE_KIB = 16 * 1024
_SEPARATOR = "\x1f"  # between a customer's data source uuids (no uuid holds a control character)

_SCHEMA = (
    "CREATE TABLE customer (uuid TEXT PRIMARY KEY, sources TEXT NOT NULL, custom TEXT) WITHOUT ROWID",
    "CREATE TABLE external_id (id TEXT NOT NULL, uuid TEXT NOT NULL)",
    "CREATE INDEX external_id_id ON external_id (id)",
    "CREATE TABLE email (email TEXT NOT NULL, uuid TEXT NOT NULL)",
    "CREATE INDEX email_email ON email (email)",
    # Customers a record of the run was matched to (a mirror clears the managed keys of the others).
    "CREATE TABLE matched (uuid TEXT PRIMARY KEY) WITHOUT ROWID",
)


class CustomerIndex:
    """Customers by uuid, external id and email (lower-cased), with their custom attributes.

    Used from one thread at a time (the run's main thread).

    :param keep_state: keep each customer's custom attributes (sync mode and dry runs need them).
    """

    def __init__(self, *, keep_state: bool) -> None:
        self.keep_state = keep_state
        self.customers = 0
        # "": a private temporary database, in memory up to its cache, then in a file.
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def close(self) -> None:
        """Drop the index (and its temporary file)."""
        self._db.close()

    def add(self, page: Sequence[Mapping[str, Any]]) -> None:
        """Index one listing page of customers (a customer listed again replaces itself)."""
        customers: list[tuple[str, str, str | None]] = []
        ids: list[tuple[str, str]] = []
        emails: list[tuple[str, str]] = []
        for customer in page:
            uuid = str(customer["uuid"])
            custom = None
            if self.keep_state:
                custom = json.dumps((customer.get("attributes") or {}).get("custom") or {})
            customers.append((uuid, _SEPARATOR.join(sorted(data_source_uuids(customer))), custom))
            ids.extend((external_id, uuid) for external_id in external_ids(customer))
            if customer.get("email"):
                emails.append((str(customer["email"]).lower(), uuid))
        db = self._db
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO customer VALUES (?, ?, ?)", customers)
        db.executemany("INSERT INTO external_id VALUES (?, ?)", ids)
        db.executemany("INSERT INTO email VALUES (?, ?)", emails)
        db.execute("COMMIT")
        self.customers += len(customers)

    def __contains__(self, uuid: object) -> bool:
        row = self._db.execute("SELECT 1 FROM customer WHERE uuid = ?", (uuid,)).fetchone()
        return row is not None

    def by_email(self, email: str) -> list[str]:
        """The uuids of the customers whose email equals ``email`` case-insensitively."""
        rows = self._db.execute("SELECT uuid FROM email WHERE email = ?", (email.lower(),))
        return [uuid for (uuid,) in rows]

    def by_external_id(self, external_id: str, data_source_uuid: str | None = None) -> list[str]:
        """The uuids of the customers with ``external_id`` (exactly), in ``data_source_uuid`` if given."""
        if data_source_uuid is None:
            rows = self._db.execute("SELECT uuid FROM external_id WHERE id = ?", (external_id,))
            return [uuid for (uuid,) in rows]
        rows = self._db.execute(
            "SELECT e.uuid, c.sources FROM external_id e JOIN customer c ON c.uuid = e.uuid WHERE e.id = ?",
            (external_id,),
        )
        return [uuid for uuid, sources in rows if data_source_uuid in sources.split(_SEPARATOR)]

    def state(self, uuid: str) -> dict[str, Any] | None:
        """The customer's custom attributes as listed (or last written); None if not indexed."""
        row = self._db.execute("SELECT custom FROM customer WHERE uuid = ?", (uuid,)).fetchone()
        if row is None:
            return None
        return json.loads(row[0]) if row[0] is not None else {}

    def set_state(self, uuid: str, custom: Mapping[str, Any]) -> None:
        """The customer's attributes after a write, for the next record for the same customer."""
        if self.keep_state:
            self._db.execute("UPDATE customer SET custom = ? WHERE uuid = ?", (json.dumps(custom), uuid))

    def mark_matched(self, uuid: str) -> None:
        """A record of the run is for customer ``uuid``: a mirror does not clear it."""
        self._db.execute("INSERT OR IGNORE INTO matched VALUES (?)", (uuid,))

    def holders(self, keys: Collection[str]) -> int:
        """How many indexed customers hold at least one of ``keys``."""
        return sum(1 for _ in self._holding(keys, unmatched_only=False))

    def unmatched_holders(self, keys: Collection[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each indexed customer no record matched that holds any of ``keys``, by uuid, with the
        ones of ``keys`` it holds and their values (what a mirror clears)."""
        return self._holding(keys, unmatched_only=True)

    def _holding(
        self, keys: Collection[str], *, unmatched_only: bool
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.keep_state:
            raise ValueError("this index keeps no custom attributes (keep_state=False)")
        wanted = frozenset(keys)
        query = "SELECT uuid, custom FROM customer WHERE custom IS NOT NULL AND custom != '{}'"
        if unmatched_only:
            query += " AND uuid NOT IN (SELECT uuid FROM matched)"
        # A cursor of its own streams the rows (the filter is in Python: JSON1 is not in every
        # SQLite Python is built with), so memory stays flat however many customers are indexed.
        for uuid, custom in self._db.cursor().execute(query + " ORDER BY uuid"):
            held = {key: value for key, value in json.loads(custom).items() if key in wanted}
            if held:
                yield uuid, held
