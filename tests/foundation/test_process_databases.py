"""The pool of server-process databases (tests/servers.py): a reused database is a fresh one."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.servers import ProcessDatabases

pytestmark = pytest.mark.postgres


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True)


def test_a_reused_database_has_nothing_of_the_previous_test(
    process_databases: ProcessDatabases,
) -> None:
    with process_databases.copy() as url, connect(url) as conn:
        fresh_user_id = conn.execute("SELECT nextval('auth_user_id_seq')").fetchone()
        conn.execute(
            "INSERT INTO django_session VALUES ('left-over', 'data', now() + interval '1 day')"
        )
        conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name,"
            " email, is_staff, is_active, date_joined)"
            " VALUES ('', true, 'left-over', '', '', '', true, true, now())"
        )
        # A server's connection still open when its test ends (here: idle in a transaction).
        server = connect(url)
        server.execute("BEGIN")
        server.execute("SELECT 1 FROM django_session")

    with process_databases.copy() as reused:
        # The pool gave the same database back (else this test proves nothing about reuse).
        assert reused == url
        with pytest.raises(psycopg.OperationalError):
            server.execute("SELECT 1")
        with connect(reused) as conn:
            assert conn.execute("SELECT count(*) FROM django_session").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM auth_user").fetchone() == (0,)
            # Ids start as on a fresh copy.
            user_id = conn.execute("SELECT nextval('auth_user_id_seq')").fetchone()
            assert user_id == fresh_user_id
    server.close()


def test_a_database_that_cannot_be_reset_fails_the_test_and_is_not_reused(
    process_databases: ProcessDatabases,
) -> None:
    with (
        pytest.raises(AssertionError, match="django_content_type"),
        process_databases.copy() as url,
        connect(url) as conn,
    ):
        # Migrate fills this table and the reset keeps it: a change is not undone.
        conn.execute("INSERT INTO django_content_type (app_label, model) VALUES ('x', 'y')")
    with process_databases.copy() as other:
        assert other != url
        with connect(other) as conn:
            assert conn.execute(
                "SELECT count(*) FROM django_content_type WHERE app_label = 'x'"
            ).fetchone() == (0,)
