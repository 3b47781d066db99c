"""The register's tables on PostgreSQL: the same DDL (alerts/register/schema.py, PostgreSQL dialect) runs on
the machine's PostgreSQL server in a database of this test's own, and there too the sign-off trail refuses
UPDATE and DELETE. Talks to the server with ``psql`` as the ``postgres`` user (local socket)."""
from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from stationwatch.alerts.register.schema import ddl


def _psql(*args: str, sql: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], input=sql, capture_output=True, text=True,
                          check=check, timeout=60)


def _server() -> str | None:
    if not (shutil.which("runuser") and shutil.which("psql")):
        return "psql or runuser not installed"
    try:
        r = _psql("psql", "-XAtc", "SELECT 1", check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if r.returncode == 0 else f"no PostgreSQL server answering: {r.stderr.strip()[:200]}"


@pytest.fixture
def database():
    why = _server()
    if why:
        pytest.skip(why)
    name = f"sw_register_{uuid.uuid4().hex[:8]}"
    _psql("createdb", name)
    yield name
    _psql("dropdb", "--if-exists", name, check=False)


def test_the_register_schema_runs_on_postgresql_and_its_trail_is_append_only(database):
    _psql("psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", database, sql=ddl("postgresql"))
    _psql("psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", database, sql=ddl("postgresql"))  # idempotent
    insert = """
        INSERT INTO hazards (site, category, description, source, deadline_at, path, standard, responsible,
                             created_at, created_by, updated_at)
            VALUES ('sl-station', 'fire', '灭火器过期', 'inspection', 1795614000.25, '更换', '有效期内', '陈七',
                    1795000000.5, 'wangwu', 1795000000.5);
        INSERT INTO hazard_trail (hazard_id, at, actor, role, action, status) VALUES (1, 1795000000.5, 'wangwu',
                                  'bureau', 'create', 'open');
        SELECT deadline_at FROM hazards WHERE id = 1;"""
    out = _psql("psql", "-XAt", "-v", "ON_ERROR_STOP=1", "-d", database, sql=insert).stdout
    assert out.strip().splitlines()[-1] == "1795614000.25"  # DOUBLE PRECISION keeps Unix times to the sub-second
    for change in ("UPDATE hazard_trail SET actor = 'someone else'", "DELETE FROM hazard_trail"):
        refused = _psql("psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", database, sql=change + ";", check=False)
        assert refused.returncode != 0 and "append-only" in refused.stderr
    bad = _psql("psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", database, check=False,
                sql="UPDATE hazards SET status = 'done' WHERE id = 1;")
    assert bad.returncode != 0 and "check constraint" in bad.stderr
