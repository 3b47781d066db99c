"""The month a report covers, in a site's own time zone.

>>> m = Month.parse("2026-11")
>>> m.label, m.next().label, m.previous().label
('2026-11', '2026-12', '2026-10')
>>> Month.parse("2026-13")
Traceback (most recent call last):
...
ValueError: month: '2026-13' is not a month like 2026-11 / 月份格式应为 2026-11
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        found = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if not found or not 1 <= int(found[2]) <= 12:
            raise ValueError(f"month: '{text[:20]}' is not a month like 2026-11 / 月份格式应为 2026-11")
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, t: float, tz: ZoneInfo) -> "Month":
        local = datetime.fromtimestamp(t, tz)
        return cls(local.year, local.month)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> "Month":
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> "Month":
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def bounds(self, tz: ZoneInfo) -> tuple[float, float]:
        """[start, end) of the month at the site, as Unix times."""
        start = datetime(self.year, self.month, 1, tzinfo=tz)
        nxt = self.next()
        return start.timestamp(), datetime(nxt.year, nxt.month, 1, tzinfo=tz).timestamp()

    def days(self) -> list[date]:
        out, day = [], self.first_day()
        while day.month == self.month:
            out.append(day)
            day = date.fromordinal(day.toordinal() + 1)
        return out
