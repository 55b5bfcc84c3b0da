"""Django's PostgreSQL backend for the test process, with a cheaper flush between tests.

A transactional test (``django_db(transaction=True)``: the async consumers write from other
threads' connections) ends with ``flush``, which on PostgreSQL is one ``TRUNCATE`` of every table:
a new file per table and index, ~1 s on this shared machine's disk. The tables hold a few rows at
that point, so ``DELETE`` in one transaction (foreign keys are ``DEFERRABLE INITIALLY DEFERRED``,
checked at commit) leaves them as empty in ~30 ms. Nothing else differs from Django's backend;
server processes started by the suite use Django's own (their DATABASE_URL).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, operations


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
        return ["SET CONSTRAINTS ALL DEFERRED"] + [
            f"DELETE FROM {self.quote_name(table)}" for table in tables
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
