"""Resource readings that cannot lag: process memory (USS) and descriptors, the server's Redis and
PostgreSQL connections seen from the other side, WAL bytes and exact row counts.

``pg_stat_*`` counters reach other sessions up to seconds late (PostgreSQL 15 flushes them when a
backend goes idle or exits, at most every ~10 s), so the readings here avoid them: WAL positions
(``pg_current_wal_flush_lsn()``), ``count(*)`` of the tables, ``pg_stat_activity`` (live, not
accumulated).
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: The project's tables whose rows a comparison writes.
TABLES = ("comparisons_comparison", "comparisons_modelresponse")


def process_memory(pids: list[int]) -> dict[str, int]:
    """RSS, USS (pages only these processes map: what they would give back when they exit) and
    open descriptors, summed over ``pids``."""
    import psutil

    out = {"rss": 0, "uss": 0, "fds": 0}
    for pid in pids:
        proc = psutil.Process(pid)
        full = proc.memory_full_info()
        out["rss"] += full.rss
        out["uss"] += full.uss
        out["fds"] += proc.num_fds()
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    import psutil

    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


def redis_clients(pids: list[int], redis_url: str) -> tuple[int, int]:
    """(clients in Redis's ``CLIENT LIST`` whose address is a socket of ``pids``, all clients).

    Other programs share the Redis server, so the list is matched against the processes' own
    connected sockets rather than counted whole.
    """
    import psutil
    import redis

    port = urlparse(redis_url).port or 6379
    ours = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == port:
                    ours.add(f"{conn.laddr.ip}:{conn.laddr.port}")
    client = redis.Redis.from_url(redis_url)
    try:
        listed = client.client_list()
    finally:
        client.close()
    return sum(1 for c in listed if c.get("addr") in ours), len(listed)


class Postgres:
    """A connection to the bench database for readings that do not lag."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)
        self.name = str(self.conn.info.dbname)
        self.oid = int(self._one("SELECT oid FROM pg_database WHERE datname = current_database()"))
        # Per-database WAL attribution (the WAL position itself is cluster-wide and other
        # databases on this server write too).
        self.walinspect = False
        self.wal_error = ""
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            self.walinspect = True
        except Exception as exc:
            self.wal_error = f"pg_walinspect: {exc}"

    def _one(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params or None).fetchone()
        return row[0] if row else None

    def lsn(self) -> str:
        # The flushed position: pg_walinspect reads no further, and a committed transaction's
        # records are flushed by its commit.
        return str(self._one("SELECT pg_current_wal_flush_lsn()"))

    def connections(self, ignore: Sequence[int] = ()) -> int:
        """Other sessions connected to this database now (``pg_stat_activity`` is live), less
        the harness's own (``ignore``: backend pids)."""
        return int(
            self._one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)",
                list(ignore),
            )
        )

    def wait_closed(self, ignore: Sequence[int] = (), within: float = 15.0) -> int:
        """Wait until no other session is connected (the server stopped); return how many are."""
        import time

        deadline = time.monotonic() + within
        left = self.connections(ignore)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.connections(ignore)
        return left

    def rows(self) -> dict[str, int]:
        return {t: int(self._one(f"SELECT count(*) FROM {t}")) for t in TABLES}

    def wal(self, start: str, end: str) -> dict[str, int]:
        """WAL bytes between two positions: ``cluster`` (every database on this server) and
        ``ours`` (records touching this database's relations, plus the commit records of the
        transactions that wrote them; needs pg_walinspect, else -1)."""
        cluster = int(self._one("SELECT pg_wal_lsn_diff(%s, %s)", end, start))
        ours = -1
        if cluster <= 0:
            ours = 0
        elif self.walinspect:
            # A checkpoint may have recycled old segments; then the attribution is unknown.
            try:
                ours = int(
                    self._one(
                        """
                        WITH r AS (
                          SELECT xid, record_length, block_ref, resource_manager
                          FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)
                        ), mine AS (
                          SELECT DISTINCT xid FROM r
                          WHERE block_ref LIKE %s AND xid <> '0'::xid
                        )
                        SELECT coalesce(sum(record_length), 0) FROM r
                        WHERE block_ref LIKE %s
                           OR (resource_manager = 'Transaction' AND xid IN (SELECT xid FROM mine))
                        """,
                        start,
                        end,
                        f"%/{self.oid}/%",
                        f"%/{self.oid}/%",
                    )
                )
            except Exception as exc:
                self.wal_error = f"{type(exc).__name__}: {exc}"[:300]
        return {"cluster": cluster, "ours": ours}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class WalMeter:
    """This database's WAL bytes, summed while they are written: a background thread reads the
    records since its last position every ``interval`` seconds, before a checkpoint can recycle
    their segment (other databases on a busy server fill segments within seconds)."""

    def __init__(self, url: str, interval: float = 0.5) -> None:
        import threading

        self.pg = Postgres(url)
        self.interval = interval
        self.bytes = 0
        self.errors: list[str] = []
        self.stopped = threading.Event()
        self.position = self.pg.lsn()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        end = self.pg.lsn()
        wal = self.pg.wal(self.position, end)
        if wal["ours"] < 0:
            self.errors.append(self.pg.wal_error)
        else:
            self.bytes += wal["ours"]
        self.position = end

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self._read()
            except Exception as exc:  # the database went away (dropped, restarted)
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return

    def stop(self) -> int:
        """Stop, read up to the current position, and return the bytes (-1 if any read failed)."""
        self.stopped.set()
        self.thread.join(10)
        self._read()
        self.pg.close()
        return -1 if self.errors else self.bytes


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} cores"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return b, my - b * mx


def write_section(path: Path, marker: str, text: str) -> None:
    """Replace (or append) the ``<!-- bench:<marker>:begin/end -->`` section of a Markdown file."""
    begin, end = f"<!-- bench:{marker}:begin -->", f"<!-- bench:{marker}:end -->"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin not in doc:
        doc = doc.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
