"""The rules' memory: what they know between messages, kept across restarts.

:class:`Memory` is a set of small JSON namespaces (``seen``: device → engine time last heard;
``zone``: detectors in alarm per fire zone; ``since``: when a band condition began; ``door``:
when an exit was opened; ``misses``: failed camera probes …). Every change is marked dirty; the
engine writes the dirty entries in the same transaction as the alerts they led to, so after a
restart — even a SIGKILL — the timers and counts go on where they were. One exception, by design:
``seen`` changes with every message (a country's 12,800 readings a second, ~30 % of the engine's
time as store writes), so a device's stored ``seen`` is written again only once it is
:data:`SEEN_LAG_S` (30 s) behind the one kept here. After a restart a device silent since then counts as
silent at most that much early; the duty board's "last heard" lags as much.

Namespaces of :data:`GROUPED` are stored one entry per group of their keys (``seen``: one entry per
gateway, ``seen_of``), not one row per key: a country's 128,000 devices were 4,300 store writes a
second; :func:`unpack` turns the store's rows back into namespaces.
"""
from __future__ import annotations

from typing import Any, Callable


SEEN_LAG_S = 30.0  # a stored `seen` may lag the engine's by this much (silence limits are minutes)
LAZY = {"seen": SEEN_LAG_S}  # namespace → how far a stored number may lag the one kept here


GROUPED = {"seen": "seen_of"}  # namespace → where it is stored: one entry per group (gateway) of its keys (devices)
STORED_AS = {v: k for k, v in GROUPED.items()}
_GROUP = object()  # dirty mark of a group: its entry is written whole


def unpack(data: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The store's memory rows → namespaces: a group's entry becomes its keys' entries again."""
    out = {ns: dict(v) for ns, v in data.items() if ns not in STORED_AS}
    for stored_ns, ns in STORED_AS.items():
        for entry in data.get(stored_ns, {}).values():
            out.setdefault(ns, {}).update(entry)
    return out


class Memory:
    """Namespaced key → JSON value, with dirty tracking.

    >>> m = Memory({"seen": {"smk-1": 10.0}})
    >>> m.put("seen", "smk-2", 12.0); m.get("seen", "smk-1"), m.dirty()
    (10.0, {('seen', 'smk-2'): 12.0})
    """

    def __init__(self, data: dict[str, dict[str, Any]] | None = None, groups: dict[str, str] | None = None):
        self._group = groups or {}  # key → its group, for the namespaces of GROUPED (device → gateway)
        self._members: dict[str, list[str]] = {}
        for key, group in self._group.items():
            self._members.setdefault(group, []).append(key)
        self._data: dict[str, dict[str, Any]] = unpack(data or {})
        self._dirty: dict[tuple[str, str], Any] = {}
        for ns, stored_ns in GROUPED.items():  # entries stored one row each (before 2026-12): stored as groups now
            for key in (data or {}).get(ns, {}):
                if key in self._group:
                    self._dirty[(ns, key)] = None
                    self._dirty[(stored_ns, self._group[key])] = _GROUP
        self._stored: dict[tuple[str, str], float] = {}  # a lazy entry's value as last marked to be written
        self.trace: Any = None  # while a reading's rules run: what they look at (alerts/resting.py)
        self._versions: dict[str, int] = {}  # namespace → its changes so far (alerts/liveness.py SilenceWatch)

    def get(self, ns: str, key: str, default: Any = None) -> Any:
        if self.trace is not None:
            self._looked(ns, key)
        return self._data.get(ns, {}).get(key, default)

    def has(self, ns: str, key: str) -> bool:
        return key in self._data.get(ns, ())

    def _looked(self, ns: str, key: str) -> None:
        """A rule looked at an entry (alerts/resting.py): one found is a reason to judge again."""
        if key in self._data.get(ns, ()):
            self.trace.touched = True
        else:
            self.trace.missing.append((ns, key))

    def put(self, ns: str, key: str, value: Any) -> None:
        if self.trace is not None:
            self.trace.touched = True
        space = self._data.setdefault(ns, {})
        if space.get(key) != value:
            space[key] = value
            self._versions[ns] = self._versions.get(ns, 0) + 1
            lag = LAZY.get(ns)
            if lag is not None and type(value) is float:
                before = self._stored.get((ns, key))
                if before is not None and abs(value - before) < lag:
                    return  # stored close enough; written with a later change
                self._stored[(ns, key)] = value
            self._mark(ns, key, value)

    def _mark(self, ns: str, key: str, value: Any) -> None:
        stored_ns = GROUPED.get(ns)
        group = self._group.get(key) if stored_ns is not None else None
        if group is None:
            self._dirty[(ns, key)] = value
        else:  # the group's entry is written whole (dirty)
            self._dirty[(stored_ns, group)] = _GROUP

    def pop(self, ns: str, key: str) -> Any:
        if self.trace is not None:
            self._looked(ns, key)
        value = self._data.get(ns, {}).pop(key, None)
        if value is not None:
            self._mark(ns, key, None)
            self._versions[ns] = self._versions.get(ns, 0) + 1
        return value

    def space(self, ns: str) -> dict[str, Any]:
        """The namespace's entries (read-only use: write with put/pop)."""
        if self.trace is not None:
            self.trace.touched = True
        return self._data.get(ns, {})

    def adopt(self, stored: dict[str, dict[str, Any]], belongs: Callable[[str, str], bool]) -> None:
        """Take the entries for which ``belongs(ns, key)`` from ``stored`` (the store's), forgetting
        what was known of them here: an engine taking over a site goes on from its last owner's memory."""
        stored = unpack(stored)
        for ns in {*stored, *self._data}:
            space = self._data.setdefault(ns, {})
            for key in [k for k in space if belongs(ns, k)]:
                del space[key]
            space.update({k: v for k, v in stored.get(ns, {}).items() if belongs(ns, k)})
        self._dirty = {k: v for k, v in self._dirty.items() if not belongs(*k)}
        for ns in self._data:
            self._versions[ns] = self._versions.get(ns, 0) + 1

    def versions(self, spaces: tuple[str, ...]) -> tuple[int, ...]:
        """How often each of ``spaces`` has changed: equal tuples, nothing in them changed in between."""
        return tuple(self._versions.get(ns, 0) for ns in spaces)

    def dirty(self) -> dict[tuple[str, str], Any]:
        """The entries to write: (namespace, key) → value, None to delete; a group as its whole entry."""
        out = dict(self._dirty)
        for (stored_ns, group), value in self._dirty.items():
            if value is _GROUP:
                ns = STORED_AS[stored_ns]
                space = self._data.get(ns, {})
                out[(stored_ns, group)] = {k: space[k] for k in self._members.get(group, ()) if k in space}
                for k, v in out[(stored_ns, group)].items():  # stored now: a lazy entry's lag starts again
                    if (ns, k) in self._stored:
                        self._stored[(ns, k)] = v
        return out

    def clean(self) -> None:
        self._dirty.clear()
