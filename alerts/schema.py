"""The alert store's tables (SQLite, WAL) and the upgrade of a store written by an earlier version.

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
| ``hazards``, ``hazard_trail``, ``reports`` | the hazard register and the report archive (``register/schema.py``) |
"""
from __future__ import annotations

import sqlite3

VERSION = 3  # 3: outages

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, site TEXT NOT NULL,
    room TEXT, zone TEXT, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'firing',
    title_zh TEXT NOT NULL, title_en TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',
    count INTEGER NOT NULL DEFAULT 1, drill INTEGER NOT NULL DEFAULT 0,
    first_at REAL NOT NULL, last_at REAL NOT NULL, created_at REAL NOT NULL,
    fired_at REAL, acknowledged_at REAL, acknowledged_by TEXT,
    resolved_at REAL, resolved_by TEXT, resolution TEXT,
    clearing_since REAL, flaps INTEGER NOT NULL DEFAULT 0, silenced_by TEXT);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, site);
CREATE INDEX IF NOT EXISTS alerts_by_key ON alerts (rule, subject);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id), at REAL NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS audit_by_alert ON audit (alert_id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TABLE IF NOT EXISTS escalations (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id), policy TEXT NOT NULL, severity TEXT NOT NULL,
    level INTEGER NOT NULL, started_at REAL NOT NULL, level_at REAL NOT NULL, due_at REAL, remind_at REAL,
    notified TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS escalations_due ON escalations (due_at);
CREATE TABLE IF NOT EXISTS breaches (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id), site TEXT NOT NULL,
    drill INTEGER NOT NULL DEFAULT 0, policy TEXT NOT NULL, level INTEGER NOT NULL, level_name TEXT NOT NULL,
    due_at REAL NOT NULL, at REAL NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS breaches_by_alert ON breaches (alert_id);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id), contact TEXT NOT NULL,
    level INTEGER, kind TEXT NOT NULL, severity TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued', channel_index INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    sent_at REAL, last_error TEXT, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE INDEX IF NOT EXISTS outbox_by_alert ON outbox (alert_id);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id), contact TEXT NOT NULL,
    channel TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, at REAL NOT NULL,
    outbox_id INTEGER, kind TEXT, level INTEGER, digest INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS deliveries_by_alert ON deliveries (alert_id);
CREATE TABLE IF NOT EXISTS memory (
    ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, room TEXT, devices TEXT NOT NULL DEFAULT '[]',
    starts_at REAL NOT NULL, ends_at REAL NOT NULL, reason TEXT NOT NULL, created_by TEXT NOT NULL,
    created_at REAL NOT NULL, ended_at REAL, ended_by TEXT);
CREATE TABLE IF NOT EXISTS heartbeat (
    service TEXT PRIMARY KEY, at REAL NOT NULL, info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS gateway_status (
    gateway TEXT PRIMARY KEY, site TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outages (
    id INTEGER PRIMARY KEY, hop TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, detail TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS outages_by_hop ON outages (hop, started_at);
"""

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
)


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a version-1 store up to date without losing a row. Each step is
    idempotent, so an upgrade interrupted half-way simply runs again."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        return
    existing = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, column, decl in ADDED:
        if table in existing and column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    db.executescript(SCHEMA)
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
