"""The report as XLSX (xlsxwriter): one sheet per section, numbers as numbers, native Excel charts, and
columns sized for CJK text (a Chinese character is two columns wide).
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

import xlsxwriter

from .sections import L, Section


def display_width(text: str) -> int:
    """Columns ``text`` takes in a spreadsheet: East Asian wide and full-width characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render(path: Path, title: L, subtitle: str, sections: list[Section], lang: str = "zh") -> None:
    book = xlsxwriter.Workbook(str(path), {"constant_memory": False})
    book.set_properties({"title": title.text(lang), "author": "StationWatch", "comments": subtitle})
    big = book.add_format({"bold": True, "font_size": 14})
    head = book.add_format({"bold": True, "bg_color": "#EBEFF3", "text_wrap": True, "valign": "top", "border": 1})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    names: set[str] = set()
    for s in sections:
        sheet = book.add_worksheet(_sheet_name(s.key, names))
        widths: dict[int, int] = {}
        sheet.write(0, 0, s.title.text(lang), big)
        row = 1
        if s is sections[0]:
            sheet.write(row, 0, subtitle)
            row += 1
        for line in s.lines:
            sheet.write(row, 0, line)
            row += 1
        chart_anchor = None
        for t in s.tables:
            row += 1
            for j, col in enumerate(t.columns):
                text = col.text(lang, "\n")
                sheet.write(row, j, text, head)
                widths[j] = max(widths.get(j, 0), *(display_width(x) for x in text.split("\n")))
            first = row + 1
            for values in t.rows:
                row += 1
                for j, v in enumerate(values):
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        sheet.write_number(row, j, v)
                        widths[j] = max(widths.get(j, 0), len(f"{v:g}"))
                    else:
                        text = "" if v is None else str(v)
                        sheet.write_string(row, j, text, wrap if display_width(text) > 60 else None)
                        widths[j] = max(widths.get(j, 0), min(60, display_width(text)))
            if not t.rows:
                row += 1
                sheet.write(row, 0, L("（无）", "(none)").text(lang))
            elif chart_anchor is None:
                chart_anchor = (first, row)
            row += 1
        for j, w in widths.items():
            sheet.set_column(j, j, min(62, w + 2))
        sheet.set_column(0, 0, max(widths.get(0, 0) + 2, display_width(s.title.text(lang)) // 2))
        if s.chart is not None and s.chart.values and any(s.chart.values):
            _chart(book, sheet, s, row + 1, lang)
        sheet.freeze_panes(1, 0)
    book.close()


def _chart(book, sheet, s: Section, row: int, lang: str) -> None:
    """The section's chart as a native bar chart over data written below the tables."""
    c = s.chart
    sheet.write(row, 0, c.title.text(lang), None)
    for i, (label, value) in enumerate(zip(c.labels, c.values)):
        sheet.write_string(row + 1 + i, 0, str(label))
        sheet.write_number(row + 1 + i, 1, round(value, 2))
    chart = book.add_chart({"type": "bar"})
    name = sheet.get_name()
    chart.add_series({"name": c.title.text(lang), "categories": [name, row + 1, 0, row + len(c.values), 0],
                      "values": [name, row + 1, 1, row + len(c.values), 1], "fill": {"color": "#366EB4"},
                      "data_labels": {"value": True}})
    chart.set_title({"name": c.title.text(lang), "name_font": {"size": 11}})
    chart.set_legend({"none": True})
    chart.set_size({"width": 640, "height": max(220, 40 + 26 * len(c.values))})
    sheet.insert_chart(row, 3, chart)


def _sheet_name(key: str, used: set[str]) -> str:
    name = key[:31]
    n = 2
    while name in used:
        name = f"{key[:28]}-{n}"
        n += 1
    used.add(name)
    return name
