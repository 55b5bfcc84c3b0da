"""Django's PostgreSQL backend for the test process, with a cheaper flush between tests.

A transactional test (``django_db(transaction=True)``: the async consumers write from other
threads' connections) ends with ``flush``, which on PostgreSQL is one ``TRUNCATE`` of every table:
a new file per table and index, ~1 s on this shared machine's disk. The tables hold a few rows at
that point, so ``DELETE`` in one transaction (foreign keys are ``DEFERRABLE INITIALLY DEFERRED``,
checked at commit) leaves them as empty in ~30 ms; and the test process's commits do not wait
for the WAL flush. At the end of the session the test database is dropped ``WITH (FORCE)``: asgiref's executor
threads keep their idle thread-local connections (unreachable from the test thread), and a plain
``DROP DATABASE`` waited 5 s for them, then failed ("being accessed by other users"); and the
drop is not waited for (``drop_database_unwaited``), so its name is new in each run. Nothing
else differs from Django's backend; server processes started by the suite use Django's own
(their DATABASE_URL).
"""

from __future__ import annotations

import time
from typing import Any

from django.db.backends.postgresql import base, creation, operations

KEPT = frozenset({"django_content_type", "auth_permission"})


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(
        self,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if not tables or reset_sequences or allow_cascade:
            return list(
                super().sql_flush(
                    style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
                )
            )
        # Content types and permissions stay: the post_migrate handlers that run after each
        # flush would insert the same rows again (~0.2 s per test), and no test changes them.
        return ["SET CONSTRAINTS ALL DEFERRED"] + [
            f"DELETE FROM {self.quote_name(table)}" for table in tables if table not in KEPT
        ]


def drop_database_unwaited(params: dict[str, Any], name: str) -> None:
    """Send ``DROP DATABASE name`` and go: PostgreSQL finishes it after the test process ends.

    A drop waits for a checkpoint, which writes out every buffer other sessions have dirtied:
    4-11 s at the end of a worker while the other workers still ran (docs/benchmarks.md). The
    server runs a query it has received to its end before it reads the connection's close.
    """
    import psycopg

    params = {**params, "dbname": "postgres", "autocommit": True}
    conn = psycopg.connect(**params)
    try:
        conn.pgconn.send_query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        while conn.pgconn.flush():  # a non-blocking connection: until all of it is sent
            time.sleep(0.001)
    finally:
        conn.close()


class DatabaseCreation(creation.DatabaseCreation):
    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        drop_database_unwaited(self.connection.get_connection_params(), test_database_name)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    creation_class = DatabaseCreation

    def get_connection_params(self) -> dict[str, Any]:
        # A commit returns before its WAL reaches the disk: on this shared machine a WAL flush
        # waits up to a second behind other sessions' writes, and every flush above and most
        # tests commit. What is lost in a crash of PostgreSQL is a test database.
        params = dict(super().get_connection_params())
        params["options"] = f"{params.get('options', '')} -c synchronous_commit=off".strip()
        return params
