"""PostgreSQL for the tests: the server on the machine (127.0.0.1:5432, trust auth, user ``postgres``;
``STATIONWATCH_TEST_POSTGRES`` names another), with a database of its own for each test, dropped
afterwards. ``.ci/run`` (through ``make test``) makes sure a server answers there."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

SERVER = os.environ.get("STATIONWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def unavailable() -> str | None:
    """Why no PostgreSQL test can run here, or None when the server answers."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg not installed: {exc}"
    try:
        psycopg.connect(f"{SERVER}/postgres", connect_timeout=5).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server answering at {SERVER}: {str(exc).strip()[:200]}"
    return None


@contextmanager
def fresh_database(prefix: str = "sw_test") -> Iterator[str]:
    """A new, empty database; yields its URL; dropped afterwards (connections still open are ended)."""
    import psycopg
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
