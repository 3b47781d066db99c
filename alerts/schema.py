"""The alert store's tables and the upgrade of a store written by an earlier version. One DDL for
SQLite (WAL) and PostgreSQL: Unix times are ``DOUBLE PRECISION`` (REAL affinity in SQLite, 8 bytes
in PostgreSQL, where ``REAL`` would be 4), and only the id column, the append-only triggers of the
audit trail and SQLite's ``WITHOUT ROWID`` are spelled per dialect (:data:`DIALECT_PARTS`).

| table | holds |
|---|---|
| ``alerts`` | one row per alert; at most one open row per (rule, subject) — the dedup key |
| ``audit`` | every transition: who, when, what, note (append-only, enforced by triggers) |
| ``escalations`` | per firing alert: policy, level reached, ack deadline, next reminder |
| ``breaches`` | every missed deadline (and every level given up on for failed delivery) |
| ``outbox`` | notices to send, durable: written in the same transaction as the transition |
| ``deliveries`` | every channel tried for a notice: state, attempts, last error |
| ``memory`` | what the rules remember (timers, detectors in alarm, camera misses …) |
| ``silences`` | maintenance windows created through the API |
| ``heartbeat``, ``gateway_status`` | each service's last heartbeat (engine, dispatcher, API, watcher, and the hops the engine watches); the last status of each gateway |
| ``outages`` | every outage of a pipeline hop as a span (hop, from, to), for the monthly report |
| ``site_leases``, ``engines`` | which engine owns which site, and the engines alive (``leases.py``; PostgreSQL) |
| ``hazards``, ``hazard_trail``, ``reports`` | the hazard register and the report archive (``register/schema.py``) |
"""
from __future__ import annotations

from .database import POSTGRESQL, SQLITE, Dialect

VERSION = 4  # 3: outages; 4: who claimed an outbox row, engines and site leases

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id {id}, rule TEXT NOT NULL, subject TEXT NOT NULL, site TEXT NOT NULL,
    room TEXT, zone TEXT, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'firing',
    title_zh TEXT NOT NULL, title_en TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',
    count INTEGER NOT NULL DEFAULT 1, drill INTEGER NOT NULL DEFAULT 0,
    first_at DOUBLE PRECISION NOT NULL, last_at DOUBLE PRECISION NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    fired_at DOUBLE PRECISION, acknowledged_at DOUBLE PRECISION, acknowledged_by TEXT,
    resolved_at DOUBLE PRECISION, resolved_by TEXT, resolution TEXT,
    clearing_since DOUBLE PRECISION, flaps INTEGER NOT NULL DEFAULT 0, silenced_by TEXT);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, site);
CREATE INDEX IF NOT EXISTS alerts_by_key ON alerts (rule, subject);
CREATE TABLE IF NOT EXISTS audit (
    id {id}, alert_id INTEGER NOT NULL REFERENCES alerts(id), at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS audit_by_alert ON audit (alert_id);
CREATE TABLE IF NOT EXISTS escalations (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id), policy TEXT NOT NULL, severity TEXT NOT NULL,
    level INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL, level_at DOUBLE PRECISION NOT NULL, due_at DOUBLE PRECISION, remind_at DOUBLE PRECISION,
    notified TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS escalations_due ON escalations (due_at);
CREATE TABLE IF NOT EXISTS breaches (
    id {id}, alert_id INTEGER NOT NULL REFERENCES alerts(id), site TEXT NOT NULL,
    drill INTEGER NOT NULL DEFAULT 0, policy TEXT NOT NULL, level INTEGER NOT NULL, level_name TEXT NOT NULL,
    due_at DOUBLE PRECISION NOT NULL, at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS breaches_by_alert ON breaches (alert_id);
CREATE TABLE IF NOT EXISTS outbox (
    id {id}, alert_id INTEGER NOT NULL REFERENCES alerts(id), contact TEXT NOT NULL,
    level INTEGER, kind TEXT NOT NULL, severity TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued', channel_index INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, next_at DOUBLE PRECISION NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION, last_error TEXT, note TEXT NOT NULL DEFAULT '', claimed_by TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE INDEX IF NOT EXISTS outbox_by_alert ON outbox (alert_id);
CREATE TABLE IF NOT EXISTS deliveries (
    id {id}, alert_id INTEGER NOT NULL REFERENCES alerts(id), contact TEXT NOT NULL,
    channel TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, at DOUBLE PRECISION NOT NULL,
    outbox_id INTEGER, kind TEXT, level INTEGER, digest INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS deliveries_by_alert ON deliveries (alert_id);
CREATE TABLE IF NOT EXISTS memory (
    ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (ns, key)) {without_rowid};
CREATE TABLE IF NOT EXISTS silences (
    id {id}, site TEXT NOT NULL, room TEXT, devices TEXT NOT NULL DEFAULT '[]',
    starts_at DOUBLE PRECISION NOT NULL, ends_at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL, created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, ended_by TEXT);
CREATE TABLE IF NOT EXISTS heartbeat (
    service TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS gateway_status (
    gateway TEXT PRIMARY KEY, site TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS outages (
    id {id}, hop TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, detail TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS outages_by_hop ON outages (hop, started_at);
CREATE TABLE IF NOT EXISTS engines (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS site_leases (
    site TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
    taken_at DOUBLE PRECISION NOT NULL);
"""

SQLITE_AUDIT = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""

POSTGRES_AUDIT = """
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""

# dialect → (SQLite's WITHOUT ROWID or nothing, the audit trail's triggers)
DIALECT_PARTS = {"sqlite": ("WITHOUT ROWID", SQLITE_AUDIT), "postgresql": ("", POSTGRES_AUDIT)}


def ddl(dialect: Dialect = SQLITE) -> str:
    """Every table of the alert store (not the register's: register/schema.py) in ``dialect``."""
    without_rowid, audit = DIALECT_PARTS[dialect.name]
    return SCHEMA.replace("{id}", dialect.identity).replace("{without_rowid}", without_rowid) + audit

# one open alert per (rule, subject): the dedup key, enforced by the database itself
OPEN_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (rule, subject)"
              " WHERE state IN ('pending', 'firing', 'acknowledged')")

# columns added since version 1 (the store of the first alert engine)
ADDED: tuple[tuple[str, str, str], ...] = (
    ("alerts", "fired_at", "REAL"),
    ("alerts", "clearing_since", "REAL"),
    ("alerts", "flaps", "INTEGER NOT NULL DEFAULT 0"),
    ("alerts", "silenced_by", "TEXT"),
    ("deliveries", "outbox_id", "INTEGER"),
    ("deliveries", "kind", "TEXT"),
    ("deliveries", "level", "INTEGER"),
    ("deliveries", "digest", "INTEGER NOT NULL DEFAULT 0"),
    ("outbox", "claimed_by", "TEXT"),
)


def migrate(db) -> None:
    """Create the tables, or bring a version-1 store up to date without losing a row. Each step is
    idempotent, so an upgrade interrupted half-way simply runs again."""
    if db.dialect is POSTGRESQL:
        return _migrate_postgresql(db)
    if db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        return
    existing = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, column, decl in ADDED:
        if table in existing and column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    db.executescript(ddl(SQLITE))
    db.execute("BEGIN IMMEDIATE")
    try:
        if "alerts" in existing:  # version 1: dismissals were 'resolved' with resolution 'dismissed'
            db.execute("DROP INDEX IF EXISTS alerts_one_active")
            db.execute("UPDATE alerts SET state='dismissed' WHERE state='resolved' AND resolution='dismissed'")
            db.execute("UPDATE alerts SET fired_at=created_at WHERE fired_at IS NULL")
        db.execute(OPEN_INDEX)
        db.execute(f"PRAGMA user_version={VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _migrate_postgresql(db) -> None:
    """A PostgreSQL store starts at the current version (no version-1 store ever lived there). The
    DDL runs under the writers' lock: several engines and the API may start at once."""
    for statement in POSTGRESQL.begin:
        db.execute(statement)
    try:
        db.executescript(ddl(POSTGRESQL))
        db.execute(OPEN_INDEX)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
