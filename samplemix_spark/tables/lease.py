"""One writer per warehouse: a lease row in the table ``lease``, taken by a conditional commit.

Every command that writes tables (``run``, a stage command, ``evaluate``, ``tune``,
``sweep``) takes the lease before its first read and gives it back when it ends.
A second writer stops at once with one line naming the holder and when its lease
expires. All of it runs on the driver.

Why a MERGE is a conditional write: the table holds one row in one file. Taking
the lease is ``MERGE ... ON token = <the token we read>``, which rewrites that
file. Two takers that read the same row both remove the same file, so Delta's
optimistic concurrency lets exactly one commit (the JVM's Delta and the embedded
engine's both refuse the second commit); a taker that read an older row matches
nothing. Each taker then reads the row back and holds the lease only if it finds
its own token there.

A holder renews its lease from a background thread every third of
``tables.lease_seconds``. A holder that crashes stops renewing, so its lease
expires; on the same host a holder whose process is gone is taken over at once.
A holder that finds its lease taken over (it stalled past the expiry) refuses its
next table write (``TableStore.write`` asks ``check``), so it never writes over
the new holder's tables. Expiry compares the holder's clock with the taker's:
hosts whose clocks differ by minutes need a longer lease.

Parquet warehouses have no conditional commit; they get no lease (logged once).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from pyspark.sql import SparkSession

from samplemix_spark.config import TablesConfig
from samplemix_spark.errors import SampleMixError
from samplemix_spark.tables.store import WRITE_GUARDS, TableStore, _first_line

log = logging.getLogger(__name__)
TABLE = "lease"
ROW = "writer"
COLUMNS = ("name", "token", "holder", "host", "pid", "taken_at", "expires_at", "released")


class LeaseError(SampleMixError):
    """Another command holds the warehouse's writer lease, or took this one's over."""


@dataclass(frozen=True)
class LeaseRow:
    """The lease as stored: who holds it, and until when (seconds since the epoch, the holder's clock)."""

    token: str
    holder: str
    host: str
    pid: int
    taken_at: float
    expires_at: float
    released: bool

    def describe(self) -> str:
        return f"`{self.holder}` on host {self.host} (pid {self.pid}) since {_utc(self.taken_at)}"

    def free_because(self, now: float, host: str) -> Optional[str]:
        """Why the lease can be taken, or None while its holder keeps it."""
        if self.released or not self.token:
            return "released"
        if self.expires_at <= now:
            return f"expired at {_utc(self.expires_at)}"
        if self.host == host and not _process_alive(self.pid):
            return "its process is gone"
        return None


class WriterLease:
    """The writer lease of one warehouse (one ``tables`` setting): take, renew, check, release."""

    def __init__(self, store: TableStore, holder: str, seconds: float):
        self.store = store
        self.holder = _plain(holder)
        self.seconds = float(seconds)
        self.token = uuid.uuid4().hex
        self.host = _plain(socket.gethostname()) or "unknown"
        self.pid = os.getpid()
        self.taken_at = 0.0
        self.lost: Optional[str] = None
        self.created = False
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None

    @property
    def location(self) -> str:
        return self.store.location(TABLE)

    def take(self) -> None:
        """Take the lease, or raise ``LeaseError`` naming its holder."""
        rows = self._rows()
        if rows is None:
            self._create()
            rows = self._rows() or []
        current = _effective(rows)
        reason = current.free_because(time.time(), self.host) if current else "new"
        if current is not None and reason is None:
            raise LeaseError(self._held_message(current))
        self.taken_at = time.time()
        refused: Optional[Exception] = None
        try:
            self._merge(expected=[row.token for row in rows], expires_at=self.taken_at + self.seconds)
        except Exception as exc:  # noqa: BLE001 - engines name a lost commit race differently
            refused = exc
        won = self.read()
        if won is None or won.token != self.token:
            if won is not None and won.free_because(time.time(), self.host) is None:
                raise LeaseError(self._held_message(won))
            raise LeaseError(f"could not take the writer lease at {self.location}: "
                             f"{_first_line(refused) if refused else 'the conditional commit matched no row'}")
        if current is not None and current.token and reason != "released":
            log.warning("took over the writer lease of %s: %s", current.describe(), reason)
        WRITE_GUARDS[self.location] = self.check
        log.info("writer lease taken at %s until %s (renewed every %.0f s)", self.location,
                 _utc(self.taken_at + self.seconds), self.seconds / 3)

    def renew(self) -> None:
        """Push the expiry on; mark the lease lost if another holder has it now."""
        if self.lost:
            return
        self._merge(expected=[self.token], expires_at=time.time() + self.seconds)
        current = self.read()
        if current is None or current.token != self.token:
            self.lost = (f"this command's writer lease at {self.location} was taken over by "
                         f"{current.describe() if current else 'nobody'}")
            log.error("%s; its next table write will stop it", self.lost)

    def check(self, table: str = "") -> None:
        """Raise before a write when the lease was lost; called by ``TableStore.write``."""
        if self.lost:
            raise LeaseError(f"{self.lost}; not writing table '{table}'")

    def release(self, failed: bool = False) -> None:
        """Give the lease back, unless it was already taken over.

        ``failed``: the command stopped on an error; if it created the warehouse and wrote nothing
        else there, the warehouse goes too, so a bad first command leaves nothing behind.
        """
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        WRITE_GUARDS.pop(self.location, None)
        if self.lost:
            return
        self._merge(expected=[self.token], expires_at=time.time(), released=True)
        log.info("writer lease released at %s", self.location)
        if failed and self.created and self.store.remove_if_only(TABLE):
            log.info("removed %s: it held only the writer lease", self.store.cfg.warehouse)

    def start_heartbeat(self) -> None:
        self._heartbeat = threading.Thread(target=self._renew_until_stopped, name="samplemix-lease", daemon=True)
        self._heartbeat.start()

    def read(self) -> Optional[LeaseRow]:
        """The lease as it stands: its one unreleased row, else the latest released one."""
        return _effective(self._rows() or [])

    def _rows(self) -> Optional[list[LeaseRow]]:
        """Every row of the lease table; None when the table does not exist yet."""
        table = self.store.read_if_exists(TABLE)
        if table is None:
            return None
        rows = table.where(f"name = '{ROW}'").collect()
        return [LeaseRow(r["token"], r["holder"], r["host"], int(r["pid"]), float(r["taken_at"]),
                         float(r["expires_at"]), bool(r["released"])) for r in rows]

    def __enter__(self) -> "WriterLease":
        self.take()
        self.start_heartbeat()
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.release(failed=exc_type is not None)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried on the next beat
                log.warning("could not renew the writer lease at %s: %s", self.location, _first_line(exc))

    def _create(self) -> None:
        """Create the table with one free row; a writer that creates it at the same time is no error."""
        free = self._row_sql("", "", "", 0, 0.0, 0.0, True)
        try:
            self.store.create(self.store.spark.sql(free), TABLE)
            self.created = True
        except Exception as exc:  # noqa: BLE001 - another writer created it first
            if not self.store.exists(TABLE):
                raise
            log.debug("lease table created concurrently: %s", _first_line(exc))

    def _merge(self, expected: list[str], expires_at: float, released: bool = False) -> None:
        """Rewrite the rows that still hold the ``expected`` tokens (all the taker read) with this holder's."""
        tokens = ", ".join(f"'{token}'" for token in sorted(set(expected) or {""}))
        source = self._row_sql(self.token, self.holder, self.host, self.pid, self.taken_at, expires_at, released)
        updates = ", ".join(f"{c} = s.{c}" for c in COLUMNS[1:])
        self.store.spark.sql(
            f"MERGE INTO {self.store.sql_ref(TABLE)} t USING ({source}) s "
            f"ON t.name = s.name AND t.token IN ({tokens}) WHEN MATCHED THEN UPDATE SET {updates}").collect()

    @staticmethod
    def _row_sql(token: str, holder: str, host: str, pid: int, taken_at: float, expires_at: float,
                 released: bool) -> str:
        return (f"SELECT '{ROW}' AS name, '{token}' AS token, '{holder}' AS holder, '{host}' AS host, "
                f"CAST({pid} AS BIGINT) AS pid, CAST({taken_at!r} AS DOUBLE) AS taken_at, "
                f"CAST({expires_at!r} AS DOUBLE) AS expires_at, {str(released).upper()} AS released")

    def _held_message(self, current: LeaseRow) -> str:
        return (f"the warehouse at {self.location} is being written by {current.describe()}; its lease "
                f"expires at {_utc(current.expires_at)} unless renewed. Run this command when it has finished "
                f"(a holder that crashed loses the lease at that time)")


def _effective(rows: list[LeaseRow]) -> Optional[LeaseRow]:
    """The one unreleased row, else the latest released one; None for an empty table.

    Writers that create the table at once can each leave a free row (the embedded engine
    commits a losing create as an append). Free copies are harmless: a taker rewrites every
    row it read, and a row written later than that holds no token anyone holds.
    """
    held = {row for row in rows if not row.released and row.token}
    if len(held) > 1:  # only a write around the lease can do this: no holder can be trusted
        raise LeaseError(f"the lease table holds {len(held)} unreleased rows, not one: stop every writer of this "
                         "warehouse, then delete the table `lease`")
    if held:
        return held.pop()
    return max(rows, key=lambda row: row.taken_at, default=None)


def writer_lease(spark: SparkSession, tables: TablesConfig, holder: str) -> Optional[WriterLease]:
    """The lease a writing command holds, or None where the format has no conditional commit."""
    if tables.format != "delta" and not tables.catalog:
        log.info("tables.format %s has no conditional commit, so no writer lease: run one writer at a time",
                 tables.format)
        return None
    return WriterLease(TableStore(spark, tables), holder, tables.lease_seconds)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _plain(text: str) -> str:
    """Text safe inside a SQL string literal: letters, digits and a few separators."""
    return re.sub(r"[^A-Za-z0-9 ._:/@=-]", "_", text)[:200]


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
