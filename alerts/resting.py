"""Readings at rest: a sensor that says again what it said last, while nothing its rules look at has
changed, is noted but not run through the rules again.

Nearly all of a country's 12,800 readings a second say "as before" — the dormitory at 20.5 °C, the
smoke detector at 0 — and every one used to cost the engine its whole rule table (~40 µs). What the
rules of one reading decide depends only on

* what the reading says (value, quality, unit, drill, replayed) and the sensor's config;
* the entries of the rules' memory they look at (a band's ``since``, a zone's detectors, …);
* the site's calendar at the reading's rule time (heating season, night window);
* which alerts are open (a ``Clear`` of nothing open does nothing).

While a reading's rules run, the memory records what they look at (:class:`Trace`). When they found
no entry there, wrote none, looked at no whole namespace, raised nothing and cleared only what was
not open, the sensor is *at rest*: a :class:`Rest` keeps the reading's signature, the entries found
missing, the calendar answers and the subjects cleared. The next reading of that sensor with the same
signature whose entries are all still missing, whose calendar answers are the same and whose
subjects are still not open would be judged by the rules to the same nothing: it is noted as any
reading is (heard, last value, sequence, clock — :meth:`~.situation.Situation.observe`) and the rules
are skipped. Anything else — a new value, a rule that found or wrote an entry (a heat detector's rate
of rise history, the outdoor temperature), a rule error — goes through the rules and ends the rest.
``tests/test_resting.py`` runs the same sequences through engines with and without it and requires
the same alerts, memory and counts.
"""
from __future__ import annotations

from typing import Any, Callable

from .situation import Observation, Situation
from .verdicts import Clear, Verdict


class Trace:
    """What one reading's rules looked at (filled in by :class:`~.memory.Memory` and the calendar)."""
    __slots__ = ("ts", "site", "missing", "calendar", "touched")

    def __init__(self, ts: float, site: str):
        self.ts, self.site = ts, site  # calendar questions of another time or site are not replayed
        self.missing: list[tuple[str, str]] = []
        self.calendar: list[tuple[str, Any]] = []  # (question, answer)
        self.touched = False  # an entry found, written or removed, or a namespace read whole

    def asked(self, question: str, ts: float, site: str, answer: Any) -> None:
        if ts != self.ts or site != self.site:
            self.touched = True
        else:
            self.calendar.append((question, answer))


# (sensor config, signature, entries missing, calendar answers, subjects cleared): a tuple, there
# is one per sensor of the country
Rest = tuple


def signature(obs: Observation) -> tuple:
    body = obs.body
    return body.value, body.quality, body.unit, obs.historical, obs.drill


class Resting:
    """The sensors at rest, and the judgement whether a reading may skip the rules."""

    def __init__(self, situation: Situation, stats: Any):
        self.sit = situation
        self.stats = stats  # the engine's: ``resting`` counts the readings noted without running the rules
        self._rests: dict[str, Rest] = {}

    def judge(self, obs: Observation, is_open: Callable[[tuple[str, str]], bool],
              run: Callable[[], tuple[list[Verdict], bool]]) -> list[Verdict]:
        """The verdicts of ``obs`` (a reading): none when its sensor is at rest, else ``run()``'s
        (verdicts, whether every rule ran without an error), which may put the sensor at rest."""
        device, said = obs.device, signature(obs)
        rest = self._rests.get(device.id)
        if rest is not None and rest[0] is device and rest[1] == said and self._holds(rest, obs, is_open):
            self.stats.resting += 1
            return []
        mem = self.sit.mem
        mem.trace = trace = Trace(obs.trusted_ts, obs.site.id)
        try:
            verdicts, clean = run()
        finally:
            mem.trace = None
        if clean and not trace.touched and all(type(v) is Clear and not is_open((v.rule, v.subject)) for v in verdicts):
            self._rests[device.id] = (device, said, tuple(trace.missing), tuple(trace.calendar),
                                      tuple((v.rule, v.subject) for v in verdicts))
        elif rest is not None:
            del self._rests[device.id]
        return verdicts

    def _holds(self, rest: Rest, obs: Observation, is_open: Callable[[tuple[str, str]], bool]) -> bool:
        _, _, missing, calendar, cleared = rest
        mem, sit, ts = self.sit.mem, self.sit, obs.trusted_ts
        return (all(not mem.has(ns, key) for ns, key in missing)
                and all(sit.calendar(question, ts, obs.site) == answer for question, answer in calendar)
                and not any(is_open(key) for key in cleared))

    def forget(self) -> None:
        """Every sensor judged in full again (the sites owned changed: alerts/ownership.py)."""
        self._rests.clear()
